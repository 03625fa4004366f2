"""Content keys: which cached teacher output belongs to which training sample.

A cache entry is keyed by the bytes of one *sample* (one row of every input array), not of a
whole batch: a shuffled loader puts samples into different batches every epoch, and a batch key
would then never hit. The key also covers each row's input position, dtype and shape, so the
same bytes read as another type are another sample.

The row hash is XXH3-128 (the ``xxhash`` package): one C call per row, about 20 µs for a batch
of 128 MNIST-sized rows, several times cheaper than any hash written as NumPy passes. It is not
cryptographic; a cache key only has to tell real samples apart (two different rows collide with
probability about 2**-128). Its output is fixed by the XXH3 specification, so keys are the same
in every process, run and machine, as an offline cache needs.

Token inputs padded per batch (a dict with a 0/1 ``attention_mask``, as Hugging Face data
collators make them) are keyed by each row's *real* tokens: every array shaped like the mask
(``input_ids``, ``token_type_ids``, the mask itself) is trimmed to the positions the mask keeps,
so the same sentence has one key whatever its batch padded it to. This assumes one padding side
(a tokenizer's is fixed): a sentence padded on the left and on the right gets one key.
"""

import hashlib

import numpy as np

from neural_distill.errors import DataError, FrameworkNotInstalledError

KEY_BYTES = 16
_seeds = {}


def _xxh3_128():
    """``xxhash.xxh3_128_digest``, imported when a cache first keys a batch."""
    try:
        import xxhash
    except ImportError:
        # the teacher cache's sample keys need it (a dependency of neural_distill itself)
        raise FrameworkNotInstalledError("xxhash") from None
    return xxhash.xxh3_128_digest


def _flat_arrays(inputs):
    """The input arrays of a batch in a fixed order (dict inputs by sorted key)."""
    if isinstance(inputs, dict):
        return [array for _, array in sorted(inputs.items())]
    if isinstance(inputs, (tuple, list)):
        return list(inputs)
    return [inputs]


def _seed(*spec):
    """The 64-bit hash seed that ties a row's key to its input position, dtype and shape."""
    seed = _seeds.get(spec)
    if seed is None:
        text = ":".join(str(part) for part in spec).encode()
        seed = _seeds[spec] = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(),
                                             "little")
    return seed


def token_mask(inputs):
    """The 0/1 ``attention_mask`` of a dict batch of token inputs as booleans, or None."""
    if not isinstance(inputs, dict) or inputs.get("attention_mask") is None:
        return None
    mask = np.asarray(inputs["attention_mask"])
    if mask.ndim != 2 or mask.dtype.kind not in "biu" or not ((mask == 0) | (mask == 1)).all():
        return None  # an additive or 4-D mask: rows are keyed whole (padding-dependent)
    return mask.astype(bool)


def _row_digests(digest, position, array, mask):
    """One 16-byte digest per sample of one input array."""
    if mask is not None and array.shape[:2] == mask.shape:
        # Per token: only the positions the mask keeps, so the padded width is no part of the
        # key (the hash covers the row's length, so lengths never collide).
        seed = _seed(position, "tokens", array.dtype.str, array.shape[2:])
        return [digest(np.ascontiguousarray(row[keep]), seed)
                for row, keep in zip(array, mask)]
    seed = _seed(position, array.dtype.str, array.shape[1:])
    rows = np.ascontiguousarray(array).reshape(array.shape[0], -1)
    return [digest(row, seed) for row in rows]


def sample_keys(inputs, where="teacher_cache"):
    """One ``KEY_BYTES`` key (``bytes``) per sample of a batch of NumPy inputs.

    ``inputs`` is an array, a tuple/list of arrays, or a dict of arrays, all with the batch on
    the first axis. A dict with a 0/1 ``attention_mask`` is keyed by its rows' real tokens
    (module docstring).
    """
    arrays = _flat_arrays(inputs)
    if not arrays or any(np.ndim(a) == 0 for a in arrays):
        raise DataError(f"{where}: cannot key a batch whose inputs have no batch axis; the cache "
                        f"needs arrays with the samples on the first axis")
    count = np.shape(arrays[0])[0]
    if any(np.shape(a)[0] != count for a in arrays):
        raise DataError(f"{where}: the batch's input arrays disagree on the number of samples "
                        f"({[np.shape(a)[0] for a in arrays]})")
    if count == 0:
        return []
    digest = _xxh3_128()
    mask = token_mask(inputs)
    per_input = [_row_digests(digest, position, np.asarray(array), mask)
                 for position, array in enumerate(arrays)]
    if len(per_input) == 1:
        return per_input[0]
    return [digest(b"".join(parts)) for parts in zip(*per_input)]


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


def token_keys(inputs, valid, where="teacher_cache"):
    """Per-sample keys of a per-token cache: the sample's key (its real tokens) joined with
    which of its real tokens count (``valid``: the loss's bool ``[batch, seq]`` rule, or None:
    every position). Records hold one row per counted token, in order, so the same sentence
    with other tokens counted (other labels) is another entry.

    Returns ``(keys, counts)``; raises DataError when a counted position is padding (the
    attention mask's 0): the teacher's output there depends on the batch's padding, which no
    cache can rebuild.
    """
    keys = sample_keys(inputs, where)
    if valid is None:
        return keys, None
    valid = np.asarray(valid, bool)
    mask = token_mask(inputs)
    if mask is not None and mask.shape == valid.shape:
        if (valid & ~mask).any():
            raise DataError(
                f"{where}: the loss counts padded positions (attention_mask 0) of this batch "
                f"(labels other than -100 under the padding?), and the teacher's outputs there "
                f"depend on the batch's padding. Set the labels of padded positions to -100 "
                f"(Hugging Face collators do), or turn the cache off.")
        patterns = [row[keep] for row, keep in zip(valid, mask)]
    else:
        patterns = list(valid)
    digest = _xxh3_128()
    seed = _seed("counted tokens")
    joined = [digest(key + np.packbits(pattern).tobytes()
                     + len(pattern).to_bytes(4, "little"), seed)
              for key, pattern in zip(keys, patterns)]
    return joined, valid.sum(axis=1)
