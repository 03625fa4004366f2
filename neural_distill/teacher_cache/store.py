"""Where cached records live: a key -> row index, rows in fixed-size chunks.

Chunks stay in memory up to ``max_bytes``; past it they are written as ``.npy`` files under a
spill folder and read back memory-mapped (when a folder is given), or storing stops. A chunk
holds ``CHUNK_BYTES`` of records (at least ``CHUNK_ROWS`` rows, at most ``max_bytes``): a
training set's logits usually fit in one, and a batch is then gathered with one ``np.take``.
A chunk is allocated whole but its untouched pages cost no memory.
"""

import os

import numpy as np

CHUNK_ROWS = 4096
CHUNK_BYTES = 1 << 24


class RowStore:
    def __init__(self, record_shape, dtype, max_bytes, spill_dir=None):
        self.record_shape = tuple(record_shape)
        self.dtype = np.dtype(dtype)
        self.max_bytes = max_bytes
        self.spill_dir = spill_dir
        self.index = {}
        row_bytes = max(self.row_bytes, 1)
        self.chunk_rows = max(CHUNK_ROWS,
                              int(min(CHUNK_BYTES // row_bytes, max_bytes // row_bytes)))
        self._chunks = []          # arrays of chunk_rows records (the last one filling up)
        self._memory_bytes = 0
        self.full = False

    @property
    def row_bytes(self):
        return int(np.prod(self.record_shape)) * self.dtype.itemsize

    def __len__(self):
        return len(self.index)

    def rows_for(self, keys):
        """Row numbers of ``keys`` (a list), or None when any of them is not stored."""
        rows = list(map(self.index.get, keys))
        return None if None in rows else rows

    def take(self, rows):
        """The records of ``rows``, in that order: one ``np.take`` per chunk they fall in."""
        if len(self._chunks) == 1:
            return np.take(self._chunks[0], rows, axis=0)
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return np.empty((0,) + self.record_shape, self.dtype)
        chunk, offset = np.divmod(rows, self.chunk_rows)
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
            chunk, offset = divmod(row, self.chunk_rows)
            if chunk == len(self._chunks):
                if not self._open_chunk():
                    self.full = True
                    return False
            self._chunks[chunk][offset] = record
            self.index[key] = row
        return True

    def _open_chunk(self):
        chunk_bytes = self.chunk_rows * self.row_bytes
        if self._memory_bytes + chunk_bytes <= self.max_bytes:
            self._chunks.append(np.empty((self.chunk_rows,) + self.record_shape, self.dtype))
            self._memory_bytes += chunk_bytes
            return True
        if self.spill_dir is None:
            return False
        os.makedirs(self.spill_dir, exist_ok=True)
        path = os.path.join(self.spill_dir, f"chunk_{len(self._chunks):05d}.npy")
        self._chunks.append(np.lib.format.open_memmap(
            path, mode="w+", dtype=self.dtype, shape=(self.chunk_rows,) + self.record_shape))
        return True

    def items(self):
        """(keys, records) of everything stored, in row order."""
        keys = sorted(self.index, key=self.index.get)
        return keys, (self.take(list(range(len(keys)))) if keys else
                      np.empty((0,) + self.record_shape, self.dtype))
