"""TensorBoard event files written without TensorBoard, read back by TensorFlow's own parser."""

import os

import pytest

from neural_distill.core.tensorboard_events import ScalarWriter, crc32c


def test_crc32c_check_value():
    # The standard check value of CRC-32C (Castagnoli) for the ASCII digits 1..9.
    assert crc32c(b"123456789") == 0xE3069283


def test_scalars_parse_with_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from tensorflow.core.util import event_pb2

    writer = ScalarWriter(str(tmp_path))
    writer.add_scalars({"loss": 0.5, "top1": 0.75, "best": True, "note": "x"}, step=3)
    writer.add_scalars({"loss": 0.25}, step=4)
    (name,) = os.listdir(tmp_path)
    assert name.startswith("events.out.tfevents.")
    # TFRecordDataset checks the length and data CRCs of every record.
    events = [event_pb2.Event.FromString(r.numpy())
              for r in tf.data.TFRecordDataset(str(tmp_path / name))]
    assert events[0].file_version == "brain.Event:2"
    scalars = [(e.step, v.tag, v.simple_value) for e in events[1:] for v in e.summary.value]
    assert scalars == [(3, "loss", 0.5), (3, "top1", 0.75), (4, "loss", 0.25)]
