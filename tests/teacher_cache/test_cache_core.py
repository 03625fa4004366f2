"""The framework-neutral teacher cache: keys, codecs, store, shards (NumPy only)."""

import json
import os

import numpy as np
import pytest

from neural_distill.errors import ConfigError, DataError, FrameworkNotInstalledError
from neural_distill.teacher_cache import TeacherCache, TopKCodec, build_codec, sample_keys
from neural_distill.teacher_cache.codecs import DenseCodec
from neural_distill.teacher_cache.store import CHUNK_ROWS, RowStore
from tests.np_reference import softmax


def test_sample_keys_follow_the_sample_not_the_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, 4)).astype(np.float32)
    keys = sample_keys(x)
    assert len(set(keys)) == 6
    order = rng.permutation(6)
    assert sample_keys(x[order]) == [keys[i] for i in order]
    assert sample_keys(x.astype(np.float64)) != keys          # dtype is part of the key
    assert sample_keys({"b": x, "a": x[:, :1]}) == sample_keys({"a": x[:, :1], "b": x})
    changed = x.copy()
    changed[2, 1, 1] = np.nextafter(changed[2, 1, 1], np.float32(9))
    assert [a == b for a, b in zip(sample_keys(changed), keys)] == [1, 1, 0, 1, 1, 1]


def test_sample_keys_are_pinned_values():
    """Keys name the samples of offline caches on disk: a change of hash must change the cache
    format (shards.FORMAT) too. Values of the XXH3-128 row digests of format 2."""
    x = np.arange(30, dtype=np.float32).reshape(2, 3, 5) / 7
    assert [k.hex() for k in sample_keys(x)] == [
        "5dcf9bda58c4318a9732d8ea2b445be9", "31cb03bec4f3bb772bbfb3f4ef42c42d"]
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert [k.hex() for k in sample_keys({"ids": ids, "x": x})] == [
        "128eb317aa0c7ab0ab7b824acbd271f7", "9d25b9c868f73503a825af916452a8e4"]
    assert [k.hex() for k in sample_keys(np.zeros((1, 0), np.float32))] == [
        "a80f363c44f46d79562e51b5d0d83ec0"]
    assert sample_keys(np.zeros((0, 4), np.float32)) == []


def test_keys_without_xxhash_name_the_package(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "xxhash", None)
    with pytest.raises(FrameworkNotInstalledError, match="pip install xxhash"):
        sample_keys(np.zeros((2, 3), np.float32))


def _reference_topk_distribution(logits, k, temperature):
    """Written from the documented formula: keep the k largest probabilities of softmax(z/T),
    spread the remaining mass evenly over the other classes."""
    p = softmax(np.asarray(logits, np.float64) / temperature)
    out = np.empty_like(p)
    for row in range(p.shape[0]):
        top = np.argsort(-p[row])[:k]
        rest = 1.0 - p[row, top].sum()
        out[row] = rest / (p.shape[1] - k)
        out[row, top] = p[row, top]
    return out


@pytest.mark.parametrize("k,temperature", [(1, 1.0), (2, 4.0), (4, 2.0)])
def test_topk_decodes_to_the_documented_distribution(k, temperature):
    logits = np.random.default_rng(k).normal(scale=3, size=(7, 10)).astype(np.float32)
    codec = TopKCodec(k, temperature)
    records = codec.encode(logits)
    assert records.shape == (7, 2 * k + 1)
    decoded = codec.decode(records, 10)
    rebuilt = softmax(decoded.astype(np.float64) / temperature)
    np.testing.assert_allclose(rebuilt, _reference_topk_distribution(logits, k, temperature),
                               rtol=2e-5, atol=1e-7)
    assert codec.bytes_per_sample((10,)) == (2 * k + 1) * 4


def test_topk_keeps_sequence_positions_apart():
    logits = np.random.default_rng(1).normal(size=(2, 5, 12)).astype(np.float32)
    codec = TopKCodec(3, 2.0)
    decoded = codec.decode(codec.encode(logits), 12)
    expected = _reference_topk_distribution(logits.reshape(10, 12), 3, 2.0).reshape(2, 5, 12)
    np.testing.assert_allclose(softmax(decoded.astype(np.float64) / 2.0), expected, rtol=2e-5,
                               atol=1e-7)


def test_codec_choice_is_checked_against_the_criterion():
    assert isinstance(build_codec({}), DenseCodec)
    assert build_codec({"compression": "float16"}).dtype == np.float16
    with pytest.raises(ConfigError, match="KL and CE on logits only"):
        build_codec({"compression": "topk", "top_k": 2}, temperature=2.0, kd_type="MSE")
    with pytest.raises(ConfigError, match="use compression: none"):
        TopKCodec(10, 1.0).encode(np.zeros((1, 10)))


def test_dense_cache_returns_exactly_what_the_teacher_gave_in_any_batch_order():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    z = rng.normal(size=(8, 3)).astype(np.float32)
    cache = TeacherCache(DenseCodec(), "fp")
    assert cache.lookup(x[:4]) is None
    cache.add(z[:4])
    assert cache.lookup(x[4:]) is None
    cache.add(z[4:])
    stats = cache.end_epoch()
    assert stats == {"lookups": 2, "hits": 0, "hit_rate": 0.0, "sample_hit_rate": 0.0}
    order = np.array([7, 0, 3, 5])
    np.testing.assert_array_equal(cache.lookup(x[order]), z[order])
    assert cache.end_epoch()["hit_rate"] == 1.0


def test_lossy_codec_gives_the_decoded_targets_on_the_miss_too():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    z = np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32)
    cache = TeacherCache(TopKCodec(2, 2.0), "fp")
    cache.lookup(x)
    first = cache.add(z)
    np.testing.assert_array_equal(first, cache.lookup(x))


def test_changing_inputs_switch_the_cache_off_after_the_second_epoch(caplog):
    rng = np.random.default_rng(4)
    cache = TeacherCache(DenseCodec(), "fp", min_hit_rate=0.05)
    for epoch in range(3):
        for _ in range(3):
            if cache.lookup(rng.normal(size=(4, 2)).astype(np.float32)) is None:
                cache.add(np.zeros((4, 3), np.float32))
        cache.end_epoch()
        assert cache.active == (epoch == 0)
    assert "differ every epoch" in caplog.text
    assert cache.lookup(np.zeros((4, 2), np.float32)) is None


def test_memory_bound_stops_storing_and_spill_goes_to_disk(tmp_path, caplog):
    record_bytes = 4 * 2
    store = RowStore((2,), np.float32, max_bytes=CHUNK_ROWS * record_bytes)
    keys = [i.to_bytes(16, "little") for i in range(CHUNK_ROWS + 5)]
    records = np.arange(2 * len(keys), dtype=np.float32).reshape(-1, 2)
    assert not store.add(keys, records) and len(store) == CHUNK_ROWS
    spilled = RowStore((2,), np.float32, max_bytes=CHUNK_ROWS * record_bytes,
                       spill_dir=str(tmp_path / "spill"))
    assert spilled.add(keys, records) and len(spilled) == len(keys)
    assert os.listdir(tmp_path / "spill") == ["chunk_00001.npy"]
    np.testing.assert_array_equal(spilled.take([0, CHUNK_ROWS + 4]), records[[0, -1]])


def test_gather_across_chunks_keeps_the_batch_order(tmp_path):
    rows = 2 * CHUNK_ROWS + 7                   # three chunks, the last two spilled
    records = np.arange(3 * rows, dtype=np.float32).reshape(rows, 3)
    store = RowStore((3,), np.float32, max_bytes=CHUNK_ROWS * 12,
                     spill_dir=str(tmp_path / "spill"))
    assert store.chunk_rows == CHUNK_ROWS
    assert store.add([i.to_bytes(16, "little") for i in range(rows)], records)
    order = np.random.default_rng(8).permutation(rows)[:300]
    order[:3] = [rows - 1, 0, CHUNK_ROWS]               # ends and a chunk boundary
    np.testing.assert_array_equal(store.take(order), records[order])
    np.testing.assert_array_equal(store.take(list(order[:5])), records[order[:5]])
    assert store.take([]).shape == (0, 3)
    one = RowStore((3,), np.float32, max_bytes=1 << 30)  # the usual case: one big chunk
    assert one.chunk_rows > rows and one.add(
        [i.to_bytes(16, "little") for i in range(rows)], records)
    np.testing.assert_array_equal(one.take(order), records[order])


def test_offline_shards_round_trip_and_refuse_other_teachers_and_corruption(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    z = rng.normal(size=(10, 3)).astype(np.float32)
    writer = TeacherCache(DenseCodec("float16"), "teacher-a")
    writer.lookup(x)
    writer.add(z)
    folder = str(tmp_path / "cache")
    writer.save(folder)
    index = json.load(open(os.path.join(folder, "index.json")))
    assert index["fingerprint"] == "teacher-a" and index["shards"][0]["count"] == 10

    reader = TeacherCache(DenseCodec("float16"), "teacher-a", offline_folder=folder)
    np.testing.assert_array_equal(reader.lookup(x[::-1]), z[::-1].astype(np.float16))
    with pytest.raises(DataError, match="does not have"):
        reader.lookup(x[:2] + 1)
    with pytest.raises(DataError, match="another teacher"):
        TeacherCache(DenseCodec("float16"), "teacher-b", offline_folder=folder)
    with pytest.raises(DataError, match="compression settings"):
        TeacherCache(DenseCodec(), "teacher-a", offline_folder=folder)
    with open(os.path.join(folder, "records_00000.npy"), "r+b") as handle:
        handle.seek(-3, 2)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(DataError, match="corrupt"):
        TeacherCache(DenseCodec("float16"), "teacher-a", offline_folder=folder)
    with pytest.raises(DataError, match="cache-teacher"):
        TeacherCache(DenseCodec(), "x", offline_folder=str(tmp_path / "nothing"))
