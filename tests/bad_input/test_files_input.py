"""Files that are not what they should be (issue 11, item 10, the file part): configuration files
that are not UTF-8 text, and ``.npz`` datasets that are not numeric arrays. Each gets a
NeuralDistillError that names the file and says how to save it instead; nothing is unpickled."""

import os
import pickle

import numpy as np
import pytest

from neural_distill import ConfigError, DataError, DistillationConf
from neural_distill.run.loop_common import read_npz

TEMPLATE = "model:\n  name: café\ndistillation:\n  train:\n    epoch: 2\n"
WHERE = "distillation.train.dataloader"


def config_error(tmp_path, data):
    path = tmp_path / "distill.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        DistillationConf(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# --------------------------------------------------------------------------- config encodings
def test_binary_config_file(tmp_path):
    message = config_error(tmp_path, bytes(range(256)) * 4)
    assert "the file is binary (it contains NUL bytes), not YAML text" in message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_utf16_or_utf32_config_with_byte_order_mark(tmp_path, encoding):
    message = config_error(tmp_path, TEMPLATE.encode(encoding))
    assert "saved as UTF-16 or UTF-32; save it as UTF-8" in message


def test_utf16_config_without_byte_order_mark(tmp_path):
    message = config_error(tmp_path, TEMPLATE.encode("utf-16-le"))
    assert "binary" in message and "If it is UTF-16 or UTF-32 text, save it as UTF-8" in message


def test_latin1_config(tmp_path):
    message = config_error(tmp_path, TEMPLATE.encode("latin-1"))
    assert "not UTF-8 text (line 2, column 12: byte 0xe9)" in message
    assert "Latin-1 or Windows-1252. Save it as UTF-8." in message


def test_utf8_config_with_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "distill.yaml"
    path.write_bytes(TEMPLATE.encode("utf-8-sig"))
    conf = DistillationConf(str(path))
    assert conf.usr_cfg.model.name == "café"


def test_config_path_is_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        DistillationConf(str(tmp_path))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads any file")
def test_unreadable_config(tmp_path):
    path = tmp_path / "distill.yaml"
    path.write_text(TEMPLATE, encoding="utf-8")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        DistillationConf(str(path))


# --------------------------------------------------------------------------- npz datasets
def npz_params(name):
    return {"path": name, "input_key": "x", "label_key": "y"}


def test_npz_with_object_arrays(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1.0], [1.0, 2.0]
    np.savez(tmp_path / "ragged.npz", x=ragged, y=np.arange(2))
    with pytest.raises(DataError) as info:
        read_npz(npz_params("ragged.npz"), WHERE, str(tmp_path))
    message = str(info.value)
    assert f"{WHERE}.dataset.npz: array 'x' of" in message
    assert "object array (dtype=object)" in message and "unpickling can run code" in message
    assert "np.asarray(values, dtype=np.float32)" in message


def test_npy_file_named_npz(tmp_path):
    np.save(tmp_path / "inputs.npy", np.zeros((4, 3), np.float32))
    os.rename(tmp_path / "inputs.npy", tmp_path / "inputs.npz")
    with pytest.raises(DataError) as info:
        read_npz(npz_params("inputs.npz"), WHERE, str(tmp_path))
    message = str(info.value)
    assert f"{WHERE}.dataset.npz.path:" in message
    assert "holds a single array (a .npy file), not an .npz archive" in message
    assert "np.savez(path, x=inputs, y=labels)" in message


class _Payload:
    """Unpickling this would create the marker file: the test proves nothing is unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_named_npz_is_not_unpickled(tmp_path):
    marker = str(tmp_path / "unpickled")
    with open(tmp_path / "data.npz", "wb") as handle:
        pickle.dump({"x": _Payload(marker)}, handle)
    with pytest.raises(DataError, match="is not a NumPy .npz file .*unpickling it, which can run "
                                        "code"):
        read_npz(npz_params("data.npz"), WHERE, str(tmp_path))
    assert not os.path.exists(marker)


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "full.npz", x=np.zeros((64, 8), np.float32), y=np.arange(64))
    data = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match="is not a NumPy .npz file"):
        read_npz(npz_params("cut.npz"), WHERE, str(tmp_path))


def test_npz_with_text_arrays(tmp_path):
    np.savez(tmp_path / "text.npz", x=np.array(["a", "b"]), y=np.arange(2))
    with pytest.raises(DataError, match="array 'x' of .* has dtype <U1; expected numbers"):
        read_npz(npz_params("text.npz"), WHERE, str(tmp_path))


def test_npz_with_a_single_number(tmp_path):
    np.savez(tmp_path / "scalar.npz", x=np.float32(3.0), y=np.arange(4))
    with pytest.raises(DataError, match="array 'x' of .* is a single number; expected one entry "
                                        "per sample"):
        read_npz(npz_params("scalar.npz"), WHERE, str(tmp_path))


def test_good_npz_still_reads(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.ones((4, 3), np.float32), y=np.arange(4))
    inputs, labels = read_npz(npz_params("ok.npz"), WHERE, str(tmp_path))
    assert inputs.shape == (4, 3) and labels.tolist() == [0, 1, 2, 3]
