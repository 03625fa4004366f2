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


def _row_hashes(rows):
    """Two 64-bit hashes per row of a (rows, bytes) uint8 array.

    Each 8-byte word, XORed with a key of its position, goes through SplitMix64's finalizer (a
    bijection on 64 bits); the first hash sums the mixed words, the second sums them weighted
    by odd per-position multipliers. Two rows that differ anywhere have different mixed words
    there, so each sum collides with probability about 2**-64, and the two together about
    2**-128. Vectorised over the batch, one mixing pass: several times cheaper than a per-row
    BLAKE2b loop. Not cryptographic: a cache key only has to tell real samples apart.
    """
    count, width = rows.shape
    padded = -width % 8
    if padded:
        rows = np.concatenate([rows, np.zeros((count, padded), np.uint8)], axis=1)
    words = np.ascontiguousarray(rows).view(np.uint64)
    keys, weights = _keys_for(words.shape[1])
    out = np.empty((count, 2), np.uint64)
    with np.errstate(over="ignore"):
        z = words ^ keys
        z ^= z >> np.uint64(30)
        z *= _MIX1
        z ^= z >> np.uint64(27)
        z *= _MIX2
        z ^= z >> np.uint64(31)
        out[:, 0] = z.sum(axis=1, dtype=np.uint64)
        z *= weights
        out[:, 1] = z.sum(axis=1, dtype=np.uint64)
    return out


def token_mask(inputs):
    """The 0/1 ``attention_mask`` of a dict batch of token inputs as booleans, or None."""
    if not isinstance(inputs, dict) or inputs.get("attention_mask") is None:
        return None
    mask = np.asarray(inputs["attention_mask"])
    if mask.ndim != 2 or mask.dtype.kind not in "biu" or not ((mask == 0) | (mask == 1)).all():
        return None  # an additive or 4-D mask: rows are keyed whole (padding-dependent)
    return mask.astype(bool)


def _token_row_hashes(array, mask):
    """Row hashes of a [batch, positions, ...] array over the positions ``mask`` keeps.

    Rows are hashed in groups of equal real length (vectorised per group); the length is
    mixed in, so no padding width ever reaches the hash.
    """
    count = array.shape[0]
    lengths = mask.sum(axis=1)
    out = np.empty((count, 2), np.uint64)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        kept = array[rows][mask[rows]]  # row-major: each row's kept positions, in order
        kept = np.ascontiguousarray(kept).reshape(-1).view(np.uint8).reshape(
            len(rows), kept.nbytes // len(rows))
        salt = np.frombuffer(hashlib.blake2b(f"tokens:{int(length)}".encode(),
                                             digest_size=16).digest(), np.uint64)
        out[rows] = _row_hashes(kept) ^ salt
    return out


def sample_keys(inputs, where="teacher_cache"):
    """One ``KEY_BYTES`` key per sample of a batch of NumPy inputs.

    ``inputs`` is an array, a tuple/list of arrays, or a dict of arrays, all with the batch on
    the first axis. A dict with a 0/1 ``attention_mask`` is keyed by its rows' real tokens
    (module docstring).
    """
    mask = token_mask(inputs)
    arrays = [np.ascontiguousarray(a) for a in _flat_arrays(inputs, where)]
    if not arrays or any(a.ndim == 0 for a in arrays):
        raise DataError(f"{where}: cannot key a batch whose inputs have no batch axis; the cache "
                        f"needs arrays with the samples on the first axis")
    count = arrays[0].shape[0]
    if any(a.shape[0] != count for a in arrays):
        raise DataError(f"{where}: the batch's input arrays disagree on the number of samples "
                        f"({[a.shape[0] for a in arrays]})")
    total = np.zeros((count, 2), np.uint64)
    with np.errstate(over="ignore"):
        for position, array in enumerate(arrays):
            # The array's place, dtype and per-sample shape are part of every key.
            if mask is not None and array.shape[:2] == mask.shape:
                # Per token: the padded width is no part of the key.
                header = hashlib.blake2b(f"{position}:{array.dtype.str}:tokens"
                                         f"{array.shape[2:]}".encode(), digest_size=16).digest()
                hashed = _token_row_hashes(array, mask)
            else:
                header = hashlib.blake2b(
                    f"{position}:{array.dtype.str}{array.shape[1:]}".encode(),
                    digest_size=16).digest()
                hashed = _row_hashes(array.reshape(count, -1).view(np.uint8))
            total = total * np.uint64(0x9E3779B97F4A7C15) + (
                hashed ^ np.frombuffer(header, np.uint64))
    return [row.tobytes() for row in total]


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
