"""Where cached records live: a key -> row index, rows in fixed-size chunks.

Chunks stay in memory up to ``max_bytes``; past it they are written as ``.npy`` files under a
spill folder and read back memory-mapped (when a folder is given), or storing stops.
"""

import os

import numpy as np

CHUNK_ROWS = 4096


class RowStore:
    def __init__(self, record_shape, dtype, max_bytes, spill_dir=None):
        self.record_shape = tuple(record_shape)
        self.dtype = np.dtype(dtype)
        self.max_bytes = max_bytes
        self.spill_dir = spill_dir
        self.index = {}
        self._chunks = []          # arrays of CHUNK_ROWS records (the last one filling up)
        self._memory_bytes = 0
        self.full = False

    @property
    def row_bytes(self):
        return int(np.prod(self.record_shape)) * self.dtype.itemsize

    def __len__(self):
        return len(self.index)

    def rows_for(self, keys):
        """Row numbers of ``keys`` (an int64 array), or None when any of them is not stored."""
        rows = list(map(self.index.get, keys))
        if None in rows:
            return None
        return np.array(rows, np.int64)

    def take(self, rows):
        """The records of ``rows``, in that order: one ``np.take`` per chunk they fall in."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return np.empty((0,) + self.record_shape, self.dtype)
        chunk, offset = np.divmod(rows, CHUNK_ROWS)
        if (chunk == chunk[0]).all():
            return np.take(self._chunks[chunk[0]], offset, axis=0)
        out = np.empty((len(rows),) + self.record_shape, self.dtype)
        for number in np.unique(chunk):
            where = np.flatnonzero(chunk == number)
            out[where] = np.take(self._chunks[number], offset[where], axis=0)
        return out

    def add(self, keys, records):
        """Store the records of keys not stored yet; False once the store is full."""
        for key, record in zip(keys, records):
            if key in self.index:
                continue
            row = len(self.index)
            chunk, offset = divmod(row, CHUNK_ROWS)
            if chunk == len(self._chunks):
                if not self._open_chunk():
                    self.full = True
                    return False
            self._chunks[chunk][offset] = record
            self.index[key] = row
        return True

    def _open_chunk(self):
        chunk_bytes = CHUNK_ROWS * self.row_bytes
        if self._memory_bytes + chunk_bytes <= self.max_bytes:
            self._chunks.append(np.empty((CHUNK_ROWS,) + self.record_shape, self.dtype))
            self._memory_bytes += chunk_bytes
            return True
        if self.spill_dir is None:
            return False
        os.makedirs(self.spill_dir, exist_ok=True)
        path = os.path.join(self.spill_dir, f"chunk_{len(self._chunks):05d}.npy")
        self._chunks.append(np.lib.format.open_memmap(
            path, mode="w+", dtype=self.dtype, shape=(CHUNK_ROWS,) + self.record_shape))
        return True

    def items(self):
        """(keys, records) of everything stored, in row order."""
        keys = sorted(self.index, key=self.index.get)
        return keys, (self.take(list(range(len(keys)))) if keys else
                      np.empty((0,) + self.record_shape, self.dtype))
