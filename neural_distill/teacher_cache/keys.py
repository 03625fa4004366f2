"""Content keys: which cached teacher output belongs to which training sample.

A cache entry is keyed by the bytes of one *sample* (one row of every input array), not of a
whole batch: a shuffled loader puts samples into different batches every epoch, and a batch key
would then never hit. The key also covers each row's dtype and shape, so the same bytes read as
another type are another sample.
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


def sample_keys(inputs, where="teacher_cache"):
    """One ``KEY_BYTES`` digest per sample of a batch of NumPy inputs.

    ``inputs`` is an array, a tuple/list of arrays, or a dict of arrays, all with the batch on
    the first axis.
    """
    arrays = [np.ascontiguousarray(a) for a in _flat_arrays(inputs, where)]
    if not arrays or any(a.ndim == 0 for a in arrays):
        raise DataError(f"{where}: cannot key a batch whose inputs have no batch axis; the cache "
                        f"needs arrays with the samples on the first axis")
    count = arrays[0].shape[0]
    if any(a.shape[0] != count for a in arrays):
        raise DataError(f"{where}: the batch's input arrays disagree on the number of samples "
                        f"({[a.shape[0] for a in arrays]})")
    headers = [f"{a.dtype.str}{a.shape[1:]}".encode() for a in arrays]
    rows = [a.reshape(count, -1).view(np.uint8) if a.size else a.reshape(count, 0)
            for a in arrays]
    keys = []
    for index in range(count):
        digest = hashlib.blake2b(digest_size=KEY_BYTES)
        for header, row in zip(headers, rows):
            digest.update(header)
            digest.update(row[index])
        keys.append(digest.digest())
    return keys


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
