"""Content keys: which cached teacher output belongs to which training sample.

A cache entry is keyed by the bytes of one *sample* (one row of every input array), not of a
whole batch: a shuffled loader puts samples into different batches every epoch, and a batch key
would then never hit. The key also covers each row's dtype and shape, so the same bytes read as
another type are another sample.

Token inputs padded per batch (a dict with a 0/1 ``attention_mask``, as Hugging Face data
collators make them) are keyed by each row's *real* tokens: every array shaped like the mask
(``input_ids``, ``token_type_ids``, the mask itself) is trimmed to the positions the mask keeps,
so the same sentence has one key whatever its batch padded it to. This assumes one padding side
(a tokenizer's is fixed): a sentence padded on the left and on the right gets one key.
"""

import hashlib

import numpy as np

from ..errors import DataError

KEY_BYTES = 16


def _flat_arrays(inputs, where):
    """The input arrays of a batch in a fixed order (dict inputs by sorted key)."""
    if isinstance(inputs, dict):
        return [array for _, array in sorted(inputs.items())]
    if isinstance(inputs, (tuple, list)):
        return list(inputs)
    return [inputs]


# Per-position keys of the row hash, from a fixed seed: keys must be the same in every process,
# run and machine, or an offline cache would never hit. PCG64's stream is stable across NumPy
# versions and platforms.
_KEY_SEED = 0x6E645F6B6579
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_position_keys = {}


def _keys_for(words):
    keys = _position_keys.get(words)
    if keys is None:
        rng = np.random.default_rng(_KEY_SEED + words)
        keys = rng.integers(0, 2 ** 64 - 1, size=(2, words), dtype=np.uint64, endpoint=True)
        keys[1] |= np.uint64(1)  # odd multipliers: a bijection on each mixed word
        _position_keys[words] = keys
    return keys


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_headers = {}


class Scratch:
    """Reused work arrays of the row hash, by shape. The cache keeps one for its run: the hash
    runs on every training step, and a fresh temporary per pass (hundreds of KB for an image
    batch) is a page-faulting allocation each time. Not shared between threads."""

    def __init__(self, shapes=4):
        self.shapes = shapes
        self._arrays = {}

    def arrays(self, shape):
        arrays = self._arrays.get(shape)
        if arrays is None:
            if len(self._arrays) >= self.shapes:
                self._arrays.clear()
            arrays = self._arrays[shape] = (np.empty(shape, np.uint64),
                                            np.empty(shape, np.uint64))
        return arrays


def _row_hashes(rows, out, scratch):
    """Two 64-bit hashes per row of a (rows, bytes) uint8 array, written to ``out`` (rows, 2).

    Each 8-byte word, XORed with a key of its position, goes through SplitMix64's finalizer (a
    bijection on 64 bits); the first hash sums the mixed words, the second sums them weighted
    by odd per-position multipliers. Two rows that differ anywhere have different mixed words
    there, so each sum collides with probability about 2**-64, and the two together about
    2**-128. Vectorised over the batch, one mixing pass in place in two ``scratch`` arrays:
    several times cheaper than a per-row BLAKE2b loop. Not cryptographic: a cache key only
    has to tell real samples apart.
    """
    count, width = rows.shape
    padded = -width % 8
    if padded:
        rows = np.concatenate([rows, np.zeros((count, padded), np.uint8)], axis=1)
    words = rows.view(np.uint64)  # rows of a C-contiguous array (sample_key_array)
    keys, weights = _keys_for(words.shape[1])
    z, shifted = scratch.arrays(words.shape)
    np.bitwise_xor(words, keys, out=z)
    for shift, multiplier in ((_S30, _MIX1), (_S27, _MIX2)):
        np.right_shift(z, shift, out=shifted)
        z ^= shifted
        z *= multiplier  # wraps modulo 2**64 (unsigned integers never warn)
    np.right_shift(z, _S31, out=shifted)
    z ^= shifted
    np.sum(z, axis=1, dtype=np.uint64, out=out[:, 0])
    np.multiply(z, weights, out=shifted)
    np.sum(shifted, axis=1, dtype=np.uint64, out=out[:, 1])
    return out


def _header(position, array):
    """The 128-bit value that ties a key to its input's place, dtype and per-sample shape."""
    spec = (position, array.dtype.str, array.shape[1:])
    header = _headers.get(spec)
    if header is None:
        digest = hashlib.blake2b(f"{position}:{array.dtype.str}{array.shape[1:]}".encode(),
                                 digest_size=16).digest()
        header = _headers[spec] = np.frombuffer(digest, np.uint64)
    return header


def token_mask(inputs):
    """The 0/1 ``attention_mask`` of a dict batch of token inputs as booleans, or None."""
    if not isinstance(inputs, dict) or inputs.get("attention_mask") is None:
        return None
    mask = np.asarray(inputs["attention_mask"])
    if mask.ndim != 2 or mask.dtype.kind not in "biu" or not ((mask == 0) | (mask == 1)).all():
        return None  # an additive or 4-D mask: rows are keyed whole (padding-dependent)
    return mask.astype(bool)


def _token_row_hashes(array, mask, scratch):
    """Row hashes of a [batch, positions, ...] array over the positions ``mask`` keeps.

    Rows are hashed in groups of equal real length (vectorised per group); the length is
    mixed in, so no padding width ever reaches the hash.
    """
    count = array.shape[0]
    lengths = mask.sum(axis=1)
    out = np.empty((count, 2), np.uint64)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        kept = np.ascontiguousarray(array[rows][mask[rows]])  # each row's kept positions
        kept = kept.reshape(-1).view(np.uint8).reshape(len(rows), kept.nbytes // len(rows))
        hashed = _row_hashes(kept, np.empty((len(rows), 2), np.uint64), scratch)
        out[rows] = hashed ^ _header(f"tokens:{int(length)}", kept)
    return out


def sample_keys(inputs, where="teacher_cache", scratch=None):
    """One ``KEY_BYTES`` key per sample of a batch of NumPy inputs.

    ``inputs`` is an array, a tuple/list of arrays, or a dict of arrays, all with the batch on
    the first axis. ``scratch``: a ``Scratch`` to reuse between calls (None: a fresh one). A dict
    with a 0/1 ``attention_mask`` is keyed by its rows' real tokens (module docstring).
    """
    return split_keys(sample_key_array(inputs, where, scratch))


def split_keys(key_array):
    """The ``KEY_BYTES`` keys (``bytes``) of the rows of a (samples, 2) uint64 key array."""
    raw = key_array.tobytes()
    return [raw[start:start + KEY_BYTES] for start in range(0, len(raw), KEY_BYTES)]


def sample_key_array(inputs, where="teacher_cache", scratch=None):
    """The keys of ``sample_keys`` as a (samples, 2) uint64 array: its rows' bytes are the keys."""
    mask = token_mask(inputs)
    arrays = _flat_arrays(inputs, where)
    if not arrays or any(np.ndim(a) == 0 for a in arrays):
        raise DataError(f"{where}: cannot key a batch whose inputs have no batch axis; the cache "
                        f"needs arrays with the samples on the first axis")
    arrays = [np.ascontiguousarray(a) for a in arrays]
    count = arrays[0].shape[0]
    if any(a.shape[0] != count for a in arrays):
        raise DataError(f"{where}: the batch's input arrays disagree on the number of samples "
                        f"({[a.shape[0] for a in arrays]})")
    scratch = Scratch() if scratch is None else scratch
    total = None
    with np.errstate(over="ignore"):
        for position, array in enumerate(arrays):
            if mask is not None and array.shape[:2] == mask.shape:
                # Per token: the padded width is no part of the key.
                hashed = _token_row_hashes(array, mask, scratch)
                hashed ^= _header(f"{position}:tokens", array[:, 0])
            else:
                hashed = _row_hashes(array.reshape(count, -1).view(np.uint8),
                                     np.empty((count, 2), np.uint64), scratch)
                hashed ^= _header(position, array)
            if total is None:  # 0 * GOLDEN + hashed: the first array's value as it is
                total = hashed
            else:
                total *= _GOLDEN
                total += hashed
    return total


def fingerprint(named_arrays, extra=""):
    """A hex digest of named arrays (a teacher's weights) and a settings string.

    A cache written for one teacher must never serve another: any changed weight, buffer,
    name or setting changes this value.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(extra.encode())
    for name, array in named_arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.reshape(-1).view(np.uint8))
    return digest.hexdigest()
