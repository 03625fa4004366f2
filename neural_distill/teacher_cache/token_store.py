"""Where a per-token cache keeps its records: one row per counted token, a sample's rows side
by side, ``key -> (first row, count)``.

Rows live in segments: in memory, segments of ``CHUNK_BYTES`` (at least ``CHUNK_ROWS`` rows)
up to ``max_bytes``, then (with a spill folder) ``.npy`` files read back memory-mapped, or
storing stops. An offline cache's shards are opened as segments as they are, memory-mapped
(``from_segments``): a corpus larger than memory is read from disk a batch at a time.
A sample's rows may straddle two segments; a batch is gathered with one ``np.take`` per
segment it touches (usually one).
"""

import os

import numpy as np

from neural_distill.teacher_cache.store import CHUNK_BYTES, CHUNK_ROWS


class TokenStore:
    def __init__(self, row_shape, dtype, max_bytes=float("inf"), spill_dir=None):
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.max_bytes = max_bytes
        self.spill_dir = spill_dir
        self.spans = {}            # key -> (first row, row count)
        self.rows = 0              # rows stored
        self._segments = []        # arrays of rows
        self._starts = []          # first row number of each segment
        self._memory_bytes = 0
        self._fill = 0             # rows written in the last segment
        row_bytes = max(self.row_bytes, 1)
        self.segment_rows = max(CHUNK_ROWS, int(min(CHUNK_BYTES, max_bytes) // row_bytes))
        self.full = False

    @classmethod
    def from_segments(cls, row_shape, dtype, segments):
        """A read-only store over ``(keys, spans, rows)`` per segment (an offline cache's
        shards; ``spans`` are ``[count, 2]`` (first row in the segment, row count))."""
        store = cls(row_shape, dtype)
        for keys, spans, rows in segments:
            base = store.rows
            store._segments.append(rows)
            store._starts.append(base)
            store.rows += len(rows)
            for key, (start, count) in zip(keys, spans.tolist()):
                store.spans[key] = (base + start, count)
        store.full = True
        return store

    @property
    def row_bytes(self):
        return int(np.prod(self.row_shape)) * self.dtype.itemsize

    def __len__(self):
        return len(self.spans)

    def spans_for(self, keys):
        """``(first row, count)`` of each key, or None when any of them is not stored."""
        spans = list(map(self.spans.get, keys))
        return None if None in spans else spans

    def take(self, spans):
        """The rows of ``spans``, one after the other."""
        if not spans:
            return np.empty((0,) + self.row_shape, self.dtype)
        rows = np.concatenate([np.arange(start, start + count) for start, count in spans])
        if len(self._segments) == 1:
            return np.take(self._segments[0], rows, axis=0)
        starts = np.asarray(self._starts)
        segment = np.searchsorted(starts, rows, side="right") - 1
        if (segment == segment[0]).all():
            return np.take(self._segments[segment[0]], rows - starts[segment[0]], axis=0)
        out = np.empty((len(rows),) + self.row_shape, self.dtype)
        for number in np.unique(segment):
            where = np.flatnonzero(segment == number)
            out[where] = np.take(self._segments[number], rows[where] - starts[number], axis=0)
        return out

    def add(self, keys, counts, rows):
        """Store each new key's ``counts[i]`` consecutive rows of ``rows``; False once full
        (nothing of the sample that did not fit is kept)."""
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        for key, begin, end in zip(keys, offsets[:-1], offsets[1:]):
            if key in self.spans:
                continue
            if not self._append(rows[begin:end]):
                self.full = True
                return False
            self.spans[key] = (self.rows - (end - begin), int(end - begin))
        return True

    def _append(self, rows):
        left = len(rows)
        done = 0
        while left:
            if self._segments and self._fill < len(self._segments[-1]):
                segment = self._segments[-1]
                take = min(left, len(segment) - self._fill)
                segment[self._fill:self._fill + take] = rows[done:done + take]
                self._fill += take
                done += take
                left -= take
            elif not self._open_segment():
                self.rows += done  # rows already written stay unreferenced, never read
                return False
        self.rows += done
        return True

    def _open_segment(self):
        segment_bytes = self.segment_rows * self.row_bytes
        shape = (self.segment_rows,) + self.row_shape
        if self._memory_bytes + segment_bytes <= self.max_bytes:
            segment = np.empty(shape, self.dtype)
            self._memory_bytes += segment_bytes
        elif self.spill_dir is not None:
            os.makedirs(self.spill_dir, exist_ok=True)
            path = os.path.join(self.spill_dir, f"tokens_{len(self._segments):05d}.npy")
            segment = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
        else:
            return False
        self._starts.append(self._segments_rows())
        self._segments.append(segment)
        self._fill = 0
        return True

    def _segments_rows(self):
        return sum(len(segment) for segment in self._segments)

    def items(self):
        """``(keys, spans, rows)`` of everything stored, rows renumbered from 0 in key order
        (what a shard writes)."""
        keys = sorted(self.spans, key=lambda key: self.spans[key][0])
        spans = [self.spans[key] for key in keys]
        rows = self.take(spans)
        counts = np.asarray([count for _, count in spans], np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        spans = np.stack([starts, counts], axis=1) if keys else np.zeros((0, 2), np.int64)
        return keys, spans, rows
