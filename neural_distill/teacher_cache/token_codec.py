"""A compact top-k record per token of a language model's output (format ``token-topk-1``).

What is kept, per token: ``p = softmax(z / T)`` (float64), its ``k`` largest entries sorted
descending, ``x_1 >= ... >= x_k`` (``x_j = log p_(j)``), their class indices, and the tail mass
``r = 1 - sum_j p_(j)`` (at least 1e-12, so ``log r`` is finite).

Record of one token, ``token_bytes`` long, little-endian::

    bytes 0..15   float32 x_1, float32 x_2, float32 log r, float32 step s   (the header)
    bytes 16..    a bit stream: k indices of ``index_bits`` bits, then k - 2 codes of
                  ``value_bits`` bits (ranks 3..k), padded with zero bits to a whole byte

``index_bits = max(1, ceil(log2 V))``; ``value_bits`` defaults to ``min(8, max(3, 20 -
index_bits))``, so an entry costs at most 20 bits (2.5 bytes) while ``V <= 2**17``: k = 64 fits
in 176 bytes a token. Ranks 1 and 2 are stored exactly (an LM's first gap is often several nats
and would otherwise set the step for the whole token).

Values (ranks 3..k): the offsets from the stored ``y_2 = float32(x_2)`` are quantized on one
uniform grid of step ``s``: ``C_j = round((y_2 - x_j) / s)``, and the codes are the increments
``c_j = C_j - C_{j-1}`` (``C_2 = 0``). The reconstruction is ``y_j = y_2 - s * C_j``, so the
rounding error never accumulates: ``|y_j - x_j| <= s / 2`` for every rank (error feedback
against the reconstructed values). Because the ``x_j`` are sorted, the codes are >= 0, and
``c_j <= g_j / s + 1`` for the gap ``g_j = x_{j-1} - x_j``. The step is chosen per token as

    s = max(G / (2**value_bits - 1.5), 4 |y_2 - x_2|, 1e-30),   G = max gap among ranks 3..k

(rounded to float32), so no code ever clips: the step follows the largest *gap*, not the span
of the kept values.

Decoding renormalizes the kept values so that with the stored tail the k + 1 buckets sum to 1
(``sum_j exp(log_probs_j) = 1 - r``; the tail is returned as stored). Each quantized value is
within ``s / 2`` of the truth, ranks 1, 2 and the tail within float32 rounding, so the kept
mass before renormalization is off by a factor in ``[exp(-s/2), exp(s/2)]`` and the shift is at
most ``s / 2`` too. The error bound on a decoded log-probability is therefore

    |log_probs_j - log p_(j)| <= s + float32 rounding (about 2**-23 (1 + |log p_(j)|)),

``s <= G / (2**value_bits - 1.5)`` whenever that exceeds the (tiny) floor; ``error_bound``
returns it per token. The log of the tail is exact to float32.

Everything is vectorized over tokens (no Python loop per token or per rank).
"""

import math

import numpy as np

from neural_distill.errors import ConfigError, DataError

FORMAT = "token-topk-1"
HEADER_BYTES = 16
# Residual mass below this is treated as this: keeps log r finite when the top k hold it all.
_MIN_MASS = 1e-12
_BLOCK_VALUES = 1 << 22
_KEY = "distillation.train.teacher_cache.top_k"


def _check_options(k, temperature, vocab_size, value_bits):
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ConfigError(f"{_KEY}: expected an integer >= 1, got {k!r}; set top_k to the number "
                          "of classes kept per token (e.g. 64)")
    if int(vocab_size) < 2:
        raise ConfigError(f"{_KEY}: the teacher's vocabulary has {vocab_size!r} classes; a top-k "
                          "cache needs at least 2 (use compression: none)")
    if int(k) >= int(vocab_size):
        raise ConfigError(f"{_KEY}: {k} keeps every one of the teacher's {vocab_size} classes, "
                          f"so nothing is compressed; use compression: none, or a top_k below "
                          f"{vocab_size}")
    if not float(temperature) > 0 or not math.isfinite(float(temperature)):
        raise ConfigError(f"distillation.train.temperature: the top-k cache needs a finite "
                          f"temperature > 0, got {temperature!r}")
    if value_bits is not None and not 1 <= int(value_bits) <= 24:
        raise ConfigError(f"{_KEY}: value_bits must be in 1..24, got {value_bits!r}")


class TokenTopKCodec:
    """The k largest tempered log-probabilities of each token, indices and values bit-packed."""

    name = "topk"
    lossless = False
    per_token = True

    def __init__(self, k, temperature, vocab_size, value_bits=None):
        _check_options(k, temperature, vocab_size, value_bits)
        self.k = int(k)
        self.temperature = float(temperature)
        self.vocab_size = int(vocab_size)
        self.index_bits = max(1, math.ceil(math.log2(self.vocab_size)))
        self.value_bits = (min(8, max(3, 20 - self.index_bits)) if value_bits is None
                           else int(value_bits))
        self.codes = max(self.k - 2, 0)
        self.stream_bits = self.k * self.index_bits + self.codes * self.value_bits
        self.token_bytes = HEADER_BYTES + (self.stream_bits + 7) // 8
        # Grid span in steps: < 2**b - 1 so an increment of at most G / s + 1 fits b bits.
        self._levels = 2.0 ** self.value_bits - 1.5
        self._widths = np.concatenate([np.full(self.k, self.index_bits),
                                       np.full(self.codes, self.value_bits)]).astype(np.int64)
        self._layout = _field_layout(self._widths)

    # ------------------------------------------------------------------ encode
    def encode(self, logits):
        """Logits ``[N, V]`` (any float dtype) -> records ``uint8 [N, token_bytes]``."""
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.shape[1] != self.vocab_size:
            raise DataError(f"teacher logits: expected [tokens, {self.vocab_size}] (the cache's "
                            f"vocabulary size), got shape {logits.shape}; a different "
                            "vocabulary needs a new cache")
        if logits.shape[0] == 0:
            return np.zeros((0, self.token_bytes), np.uint8)
        # Blocks of about 2**22 values: the float64 copy stays ~32 MB whatever N is.
        rows = max(1, _BLOCK_VALUES // self.vocab_size)
        if logits.shape[0] > rows:
            return np.concatenate([self.encode(logits[start:start + rows])
                                   for start in range(0, logits.shape[0], rows)])
        # Selection on the raw logits: dividing by T > 0 and normalizing keep the order.
        index = np.argpartition(logits, self.vocab_size - self.k, axis=1)[:, -self.k:]
        scaled = logits.astype(np.float64) / self.temperature
        top = scaled.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(scaled - top).sum(axis=1, keepdims=True))
        if not np.isfinite(log_norm).all():
            raise DataError("teacher logits: a token's logits hold NaN or infinity, so its "
                            "distribution is undefined; check the teacher (its precision, its "
                            "input) before caching it")
        log_p = np.take_along_axis(scaled, index, axis=1) - log_norm
        return self.encode_selected(index, log_p)

    def encode_selected(self, indices, log_probs, log_tail=None):
        """Records from an already selected top k (e.g. ``torch.topk`` on the device, so only
        ``[N, k]`` reaches the host): indices ``[N, k]``, their log-probabilities at the
        codec's temperature (any order), and optionally log r (else ``log(1 - sum p)``)."""
        indices = np.asarray(indices, dtype=np.int64)
        log_p = np.asarray(log_probs, dtype=np.float64)
        n = log_p.shape[0]
        if log_p.shape != (n, self.k) or indices.shape != (n, self.k):
            raise DataError(f"top-k record: expected indices and log-probabilities of shape "
                            f"[tokens, {self.k}], got {indices.shape} and {log_p.shape}")
        if n and (indices.min() < 0 or indices.max() >= self.vocab_size):
            raise DataError(f"top-k record: class indices must lie in [0, {self.vocab_size}), "
                            f"got {indices.min()}..{indices.max()}; the record was selected "
                            "over another vocabulary")
        # Descending by value, ties by lower class index: the record does not depend on the
        # order the selection returned.
        order = np.lexsort((indices, -log_p), axis=1) if n else indices
        log_p = np.take_along_axis(log_p, order, axis=1)
        indices = np.take_along_axis(indices, order, axis=1)
        if log_tail is None:
            kept = np.exp(log_p).sum(axis=1)
            log_tail = np.log1p(-np.minimum(kept, 1.0 - _MIN_MASS))
        log_tail = np.maximum(np.asarray(log_tail, np.float64).reshape(n), math.log(_MIN_MASS))

        header = np.empty((n, 4), np.float32)
        header[:, 0] = log_p[:, 0]
        header[:, 1] = log_p[:, 1] if self.k > 1 else 0.0
        header[:, 2] = log_tail
        codes = np.zeros((n, self.codes), np.uint64)
        step = np.ones(n, np.float32)
        if self.codes:
            anchor = header[:, 1].astype(np.float64)
            gaps = -np.diff(log_p[:, 1:], axis=1)
            floor = np.maximum(4.0 * np.abs(anchor - log_p[:, 1]), 1e-30)
            step = np.maximum(gaps.max(axis=1) / self._levels, floor).astype(np.float32)
            offsets = np.rint((anchor[:, None] - log_p[:, 2:]) / step[:, None].astype(np.float64))
            offsets = np.maximum(offsets, 0.0)
            increments = np.diff(offsets, axis=1, prepend=0.0)
            codes = np.clip(increments, 0, 2 ** self.value_bits - 1).astype(np.uint64)
        header[:, 3] = step
        records = np.zeros((n, self.token_bytes), np.uint8)
        records[:, :HEADER_BYTES] = header.view(np.uint8)
        fields = np.concatenate([indices.astype(np.uint64), codes], axis=1)
        records[:, HEADER_BYTES:] = _pack(fields, self._widths, self.token_bytes - HEADER_BYTES)
        return records

    # ------------------------------------------------------------------ decode
    def decode(self, records):
        """Records -> ``(indices int64 [N, k], log_probs float32 [N, k], log_tail float32 [N])``,
        the k + 1 buckets summing to 1 (module docstring: the bound)."""
        records = self._check_records(records)
        n = records.shape[0]
        header = np.ascontiguousarray(records[:, :HEADER_BYTES]).view(np.float32)
        fields = _unpack(records[:, HEADER_BYTES:], *self._layout)
        indices = fields[:, :self.k].astype(np.int64)
        log_p = np.empty((n, self.k), np.float64)
        log_p[:, 0] = header[:, 0]
        if self.k > 1:
            log_p[:, 1] = header[:, 1]
        if self.codes:
            offsets = np.cumsum(fields[:, self.k:], axis=1, dtype=np.float64)
            log_p[:, 2:] = header[:, 1:2] - header[:, 3:4].astype(np.float64) * offsets
        log_tail = header[:, 2].astype(np.float64)
        # Renormalize the kept values to the stored kept mass 1 - r; the tail stays exact.
        top = log_p[:, :1]
        log_kept = top[:, 0] + np.log(np.exp(log_p - top).sum(axis=1))
        log_p += (np.log(-np.expm1(log_tail)) - log_kept)[:, None]
        return indices, log_p.astype(np.float32), log_tail.astype(np.float32)

    def error_bound(self, records):
        """Per token, the bound on ``|decoded - true|`` of a kept log-probability: the step s
        plus float32 rounding (module docstring)."""
        records = self._check_records(records)
        header = np.ascontiguousarray(records[:, :HEADER_BYTES]).view(np.float32)
        step = header[:, 3].astype(np.float64) if self.codes else np.zeros(len(records))
        _, log_p, _ = self.decode(records)
        return step + 2.0 ** -20 * (1.0 + np.abs(log_p.astype(np.float64)).max(axis=1))

    def bytes_per_token(self):
        return self.token_bytes

    def describe(self):
        return {"compression": "topk", "top_k": self.k, "temperature": self.temperature,
                "vocab_size": self.vocab_size, "index_bits": self.index_bits,
                "value_bits": self.value_bits, "format": FORMAT}

    def _check_records(self, records):
        records = np.asarray(records)
        if records.dtype != np.uint8 or records.ndim != 2 or records.shape[1] != self.token_bytes:
            raise DataError(f"top-k token records: expected uint8 [tokens, {self.token_bytes}] "
                            f"({FORMAT}, k={self.k}, vocab {self.vocab_size}), got "
                            f"{records.dtype} {records.shape}; the cache was written with other "
                            "settings: rebuild it")
        return records


def _field_layout(widths):
    """How to read fields of these bit widths: each as one little-endian word (4 bytes while
    every field fits in 25 bits, else 8) at the field's first byte, shifted and masked."""
    starts = np.cumsum(widths) - widths
    word = 4 if widths.max(initial=1) <= 25 else 8
    dtype = np.dtype(f"<u{word}")
    gather = ((starts // 8)[:, None] + np.arange(word)).ravel()
    masks = ((np.ones(len(widths), np.uint64) << widths.astype(np.uint64)) - np.uint64(1))
    return gather, (starts % 8).astype(dtype), masks.astype(dtype), word


def _unpack(stream, gather, shifts, masks, word):
    """Fields of the little-endian bit streams ``[N, bytes]`` -> ``[N, fields]`` unsigned."""
    # A few zero bytes after the stream let the last fields be read as whole words too.
    padded = np.zeros((stream.shape[0], stream.shape[1] + word - 1), np.uint8)
    padded[:, :stream.shape[1]] = stream
    words = np.take(padded, gather, axis=1).view(shifts.dtype).reshape(len(stream), len(shifts))
    return (words >> shifts) & masks


def _pack(fields, widths, stream_bytes):
    """``uint64 [N, F]`` fields of the given bit widths -> the little-endian stream bytes."""
    n = fields.shape[0]
    if not fields.shape[1]:
        return np.zeros((n, stream_bytes), np.uint8)
    field_of_bit = np.repeat(np.arange(len(widths)), widths)
    bit_in_field = (np.arange(len(field_of_bit))
                    - np.repeat(np.cumsum(widths) - widths, widths)).astype(np.uint64)
    bits = ((fields[:, field_of_bit] >> bit_in_field) & np.uint64(1)).astype(np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")
    out = np.zeros((n, stream_bytes), np.uint8)
    out[:, :packed.shape[1]] = packed
    return out
