"""Writing TensorBoard scalars without TensorBoard, TensorFlow or PyTorch installed.

An event file is a sequence of TFRecords, each holding one serialized ``Event`` protocol
buffer. Scalars need only a handful of fields, encoded here by hand, so ``tensorboard: true``
works the same with either framework and adds no dependency; viewing the files needs
``pip install tensorboard`` (``tensorboard --logdir RUN_FOLDER/tensorboard``).
"""

import os
import socket
import struct
import time


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value):
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number, wire_type, payload):
    key = _varint((number << 3) | wire_type)
    if wire_type == 2:  # length-delimited: strings and nested messages
        return key + _varint(len(payload)) + payload
    return key + payload


def _event(step, wall_time, file_version=None, scalars=()):
    """An ``Event``: wall_time (1, double), step (2, int64), file_version (3), summary (5)."""
    message = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if file_version is not None:
        message += _field(3, 2, file_version.encode())
    if scalars:
        # Summary.value (1): Value{tag (1, string), simple_value (2, float)}
        values = b"".join(
            _field(1, 2, _field(1, 2, tag.encode()) + _field(2, 5, struct.pack("<f", value)))
            for tag, value in scalars)
        message += _field(5, 2, values)
    return message


def _record(data):
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + \
        struct.pack("<I", _masked_crc(data))


class ScalarWriter:
    """Appends scalars to one event file in ``folder``; each call is flushed to disk."""

    def __init__(self, folder):
        os.makedirs(folder, exist_ok=True)
        now = time.time()
        self.path = os.path.join(folder, f"events.out.tfevents.{int(now)}.{socket.gethostname()}")
        with open(self.path, "ab") as handle:
            handle.write(_record(_event(0, now, file_version="brain.Event:2")))

    def add_scalars(self, scalars, step):
        """``scalars``: {tag: number}; non-finite values are written too (TensorBoard shows
        them), booleans and non-numbers are skipped."""
        items = [(tag, float(v)) for tag, v in scalars.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not items:
            return
        with open(self.path, "ab") as handle:
            handle.write(_record(_event(int(step), time.time(), scalars=items)))
