"""An offline per-token cache on disk, written as a stream and read memory-mapped.

Layout (``index.json`` with ``"layout": "tokens"``; nothing is ever unpickled)::

    index.json           {"format": 2, "layout": "tokens", "fingerprint", "codec",
                          "token_codec", "classes": V, "row_shape", "dtype", "samples",
                          "tokens", "bytes_per_token",
                          "shards": [{"keys", "spans", "rows", "samples", "tokens",
                                      "sha256": {...}}]}
    keys_00000.npy       [samples, 16] uint8: the per-token keys (``keys.token_keys``)
    spans_00000.npy      [samples, 2] int64: each sample's first row in the shard, row count
    rows_00000.npy       [tokens, ...]: one record per counted token (``token_codec`` or dense)

Writing streams: records are buffered up to ``shard_bytes`` and then written as a shard (each
file under a temporary name, synced, renamed) and recorded in ``progress.json``. A writer
interrupted (killed, out of disk) and started again on the same folder with the same teacher
and settings keeps the shards ``progress.json`` lists and skips their samples, so at most one
shard of teacher work is lost. ``index.json`` is written last: a folder without it is not a
cache a run will read.
"""

import os

import numpy as np

from neural_distill.errors import DataError
from neural_distill.teacher_cache.keys import KEY_BYTES
from neural_distill.teacher_cache.shards import (
    FORMAT, INDEX, file_sha256, load_checked, read_json, save_array_atomic, write_json_atomic)

PROGRESS = "progress.json"
LAYOUT = "tokens"
SHARD_BYTES = 64 << 20
_KINDS = ("keys", "spans", "rows")


class TokenShardWriter:
    """Streams per-token records into shards under ``folder``.

    Args:
        header: what identifies the cache (fingerprint, codec settings); a ``progress.json``
            left by an interrupted writer is resumed only when its header is the same, else
            its shards are discarded.
        shard_bytes: records buffered before a shard is written.
    """

    def __init__(self, folder, header, shard_bytes=SHARD_BYTES):
        self.folder = folder
        self.header = dict(header)
        self.shard_bytes = shard_bytes
        self.shards = []
        self.done_keys = set()
        self._buffer = []              # (keys, counts, records) not yet written
        self._buffered_bytes = 0
        self._row_layout = None        # (row shape, dtype str) of the records
        os.makedirs(folder, exist_ok=True)
        self._resume()

    def _resume(self):
        progress = read_json(os.path.join(self.folder, PROGRESS))
        if progress is None or progress.get("header") != self.header:
            return
        for shard in progress.get("shards", []):
            try:
                keys = load_checked(self.folder, shard, "keys")
            except DataError:
                break  # the shards after a damaged one are written again
            self.shards.append(shard)
            self.done_keys.update(bytes(row) for row in keys)
        if progress.get("row_layout"):
            shape, dtype = progress["row_layout"]
            self._row_layout = (tuple(shape), dtype)

    def add(self, keys, counts, records):
        """Buffer the records of samples not written yet (``counts[i]`` rows each)."""
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        keep, seen = [], set()
        for i, key in enumerate(keys):  # a sentence twice in one batch is written once
            if key not in self.done_keys and key not in seen:
                keep.append(i)
                seen.add(key)
        if not keep:
            return
        layout = (tuple(records.shape[1:]), records.dtype.str)
        if self._row_layout is None:
            self._row_layout = layout
        elif layout != self._row_layout:
            raise DataError(f"teacher cache {self.folder}: record layout changed from "
                            f"{self._row_layout} to {layout} between batches")
        if len(keep) < len(keys):
            rows = np.concatenate([records[offsets[i]:offsets[i + 1]] for i in keep])
            keys = [keys[i] for i in keep]
            counts = np.asarray(counts)[keep]
        else:
            rows = records
        self.done_keys.update(keys)
        self._buffer.append((keys, np.asarray(counts, np.int64), rows))
        self._buffered_bytes += rows.nbytes
        if self._buffered_bytes >= self.shard_bytes:
            self.flush()

    def flush(self):
        """Write the buffered records as one shard (and record it in progress.json)."""
        if not self._buffer:
            return
        keys = [key for part in self._buffer for key in part[0]]
        counts = np.concatenate([part[1] for part in self._buffer])
        rows = np.concatenate([part[2] for part in self._buffer])
        self._buffer, self._buffered_bytes = [], 0
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        number = len(self.shards)
        names = {kind: f"{kind}_{number:05d}.npy" for kind in _KINDS}
        arrays = {"keys": np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), KEY_BYTES),
                  "spans": np.stack([starts, counts], axis=1), "rows": rows}
        for kind in _KINDS:
            save_array_atomic(os.path.join(self.folder, names[kind]), arrays[kind])
        self.shards.append({**names, "samples": len(keys), "tokens": int(counts.sum()),
                            "sha256": {kind: file_sha256(os.path.join(self.folder, name))
                                       for kind, name in names.items()}})
        write_json_atomic(os.path.join(self.folder, PROGRESS),
                          {"header": self.header, "shards": self.shards,
                           "row_layout": [list(self._row_layout[0]), self._row_layout[1]]})

    @property
    def tokens(self):
        return (sum(shard["tokens"] for shard in self.shards)
                + sum(int(part[1].sum()) for part in self._buffer))

    @property
    def bytes_per_token(self):
        if self._row_layout is None:
            return None
        shape, dtype = self._row_layout
        return int(np.prod(shape)) * np.dtype(dtype).itemsize

    def close(self, classes):
        """Write the last shard and ``index.json``; returns the index."""
        self.flush()
        if not self.shards:
            raise DataError("teacher_cache: nothing to write; the teacher produced no "
                            "per-token outputs")
        shape, dtype = self._row_layout
        index = {"format": FORMAT, "layout": LAYOUT, **self.header, "classes": classes,
                 "row_shape": list(shape), "dtype": dtype,
                 "samples": sum(shard["samples"] for shard in self.shards),
                 "tokens": self.tokens, "bytes_per_token": self.bytes_per_token,
                 "shards": self.shards}
        write_json_atomic(os.path.join(self.folder, INDEX), index)
        os.remove(os.path.join(self.folder, PROGRESS))
        return index


def read_token_shards(folder, index):
    """``(keys, spans, rows)`` per shard, checked against their SHA-256; ``rows`` are
    memory-mapped (read from disk as batches need them)."""
    segments = []
    for shard in index["shards"]:
        keys = load_checked(folder, shard, "keys")
        spans = load_checked(folder, shard, "spans")
        rows = load_checked(folder, shard, "rows", mmap=True)
        segments.append(([bytes(row) for row in keys], np.asarray(spans), rows))
    return segments
