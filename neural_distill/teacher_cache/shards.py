"""The offline cache on disk: shards of ``.npy`` arrays and one ``index.json``.

Layout of a cache folder (nothing in it is ever unpickled)::

    index.json          {"format": 1, "fingerprint": ..., "codec": {...}, "classes": C,
                         "sample_shape": [...], "record_shape": [...], "dtype": "float32",
                         "shards": [{"keys": "keys_00000.npy", "records": "records_00000.npy",
                                     "count": N, "sha256": {...}}]}
    keys_00000.npy      N x 16 bytes (uint8): the sample keys (``keys.sample_keys``)
    records_00000.npy   N x record_shape: the encoded teacher outputs (``codecs``)

Files are written under a temporary name and renamed, so a crash never leaves a shard that
looks complete.
"""

import hashlib
import json
import os

import numpy as np

from neural_distill.errors import DataError
from neural_distill.teacher_cache.keys import KEY_BYTES

FORMAT = 2  # 2: keys are XXH3-128 row digests (1: a NumPy SplitMix64 row hash)
INDEX = "index.json"


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_array_atomic(path, array):
    """``np.save`` under a temporary name, synced, then renamed into place."""
    temporary = path + ".tmp"
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_shards(folder, keys, records, header, shard_rows=65536):
    """Write ``records`` (one per key) as shards plus index.json; returns the index."""
    os.makedirs(folder, exist_ok=True)
    key_array = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), KEY_BYTES)
    shards = []
    for number, start in enumerate(range(0, max(len(keys), 1), shard_rows)):
        names = {"keys": f"keys_{number:05d}.npy", "records": f"records_{number:05d}.npy"}
        save_array_atomic(os.path.join(folder, names["keys"]),
                          key_array[start:start + shard_rows])
        save_array_atomic(os.path.join(folder, names["records"]),
                          records[start:start + shard_rows])
        shards.append({**names, "count": int(min(shard_rows, len(keys) - start)),
                       "sha256": {kind: file_sha256(os.path.join(folder, name))
                                  for kind, name in names.items()}})
    index = {"format": FORMAT, **header, "shards": shards}
    write_json_atomic(os.path.join(folder, INDEX), index)
    return index


def write_json_atomic(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_json(path):
    """A JSON file's value, or None when it is missing or unreadable (a progress file a crash
    cut short is started over)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def read_index(folder):
    path = os.path.join(folder, INDEX)
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(folder, "progress.json")):  # token_shards.PROGRESS
            raise DataError(f"teacher cache {folder}: its writing was interrupted (progress.json"
                            f" but no {INDEX}). Run `neural-distill cache-teacher CONFIG` again:"
                            f" it resumes from the shards already written.")
        raise DataError(f"teacher cache {folder}: no {INDEX} there. Write the cache first with "
                        f"`neural-distill cache-teacher CONFIG` (or check "
                        f"distillation.train.teacher_cache.path).")
    try:
        with open(path, encoding="utf-8") as handle:
            index = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"teacher cache {path}: unreadable ({exc}). Delete the folder and "
                        f"write the cache again.") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"teacher cache {path}: expected format {FORMAT}, got "
                        f"{index.get('format') if isinstance(index, dict) else index!r}. Write "
                        f"the cache again with this version of neural_distill.")
    return index


def load_checked(folder, shard, kind, mmap=False):
    """The array of ``shard[kind]``, after its SHA-256 is checked against the one recorded;
    ``mmap``: memory-mapped (read from disk as it is used)."""
    path = os.path.join(folder, shard[kind])
    if not os.path.isfile(path) or file_sha256(path) != shard["sha256"][kind]:
        raise DataError(f"teacher cache {folder}: shard {shard[kind]} is missing or corrupt "
                        f"(its checksum differs from the one recorded). Delete the folder and "
                        f"write the cache again.")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        raise DataError(f"teacher cache {path}: not a plain array file ({exc})") from None


def read_shards(folder, index):
    """Yield (keys, records) per shard, each shard checked against its recorded sha256."""
    for shard in index["shards"]:
        key_array, records = (load_checked(folder, shard, kind) for kind in ("keys", "records"))
        yield [bytes(row) for row in key_array], records
