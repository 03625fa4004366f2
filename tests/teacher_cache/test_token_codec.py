"""TokenTopKCodec against an independent NumPy reference of the top k and the tail.

The reference sorts the whole float64 distribution (no selection, no bit packing) and takes the
k largest and the rest's mass; the codec's record must decode to the same classes, values within
the documented bound, the tail exact to float32, and k + 1 buckets that sum to 1.
"""

import numpy as np
import pytest

from neural_distill.errors import ConfigError, DataError
from neural_distill.teacher_cache.token_codec import TokenTopKCodec


def reference_topk(logits, k, temperature):
    """float64 log p of the k largest classes (descending), their classes, and log(rest)."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    order = np.argsort(-log_p, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(log_p, order, axis=1)
    rest = np.sort(np.exp(log_p), axis=1)[:, :-k].sum(axis=1)  # the others, summed directly
    return order, kept, np.log(np.maximum(rest, 1e-12))


def log_bucket_sum(log_probs, log_tail):
    both = np.concatenate([log_probs.astype(np.float64),
                           log_tail.astype(np.float64)[:, None]], axis=1)
    top = both.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(both - top).sum(axis=1))


def lm_like_logits(rng, n, vocab, scale=2.0):
    z = rng.standard_normal((n, vocab)) * scale
    z[np.arange(n), rng.integers(0, vocab, n)] += 6.0  # one likely token, as an LM has
    return z.astype(np.float32)


@pytest.mark.parametrize("vocab,k,temperature", [(100, 8, 1.0), (100, 64, 2.0), (1000, 3, 1.0),
                                                 (3000, 64, 1.0), (5000, 2, 4.0),
                                                 (300, 1, 1.0)])
def test_round_trip_matches_the_reference(vocab, k, temperature):
    rng = np.random.default_rng(vocab + k)
    logits = lm_like_logits(rng, 40, vocab)
    codec = TokenTopKCodec(k, temperature, vocab)
    records = codec.encode(logits)
    assert records.dtype == np.uint8 and records.shape == (40, codec.token_bytes)
    indices, log_probs, log_tail = codec.decode(records)
    assert indices.dtype == np.int64 and indices.shape == (40, k)
    assert log_probs.dtype == np.float32 and log_tail.dtype == np.float32
    assert log_tail.shape == (40,)

    ref_index, ref_kept, ref_tail = reference_topk(logits, k, temperature)
    assert (np.sort(indices, axis=1) == np.sort(ref_index, axis=1)).all()
    # Decoded in the reference's order (descending, no ties in random logits).
    np.testing.assert_array_equal(indices, ref_index)
    error = np.abs(log_probs.astype(np.float64) - ref_kept)
    # The documented bound, from the true values alone: s <= G / (2**b - 1.5), G the largest
    # gap among ranks 3..k; plus float32 rounding of the header and output.
    gaps = -np.diff(ref_kept[:, 1:], axis=1)
    largest = gaps.max(axis=1) if k > 2 else np.zeros(40)
    step = largest / (2.0 ** codec.value_bits - 1.5) * (1 + 1e-6)
    assert (error <= step[:, None] + 1e-6 * (1 + np.abs(ref_kept))).all()
    assert (error.max(axis=1) <= codec.error_bound(records)).all()
    # The parts of the bound: the renormalization is one shift of all kept values, so
    # differences to rank 1 (stored exactly) see the quantization alone, at most s / 2 ...
    rounding = 1e-6 * (1 + np.abs(ref_kept))
    relative = (log_probs - log_probs[:, :1]).astype(np.float64) - (ref_kept - ref_kept[:, :1])
    assert (np.abs(relative) <= step[:, None] / 2 + rounding).all()
    # ... and the shift itself (seen on rank 1) is at most s / 2 too.
    assert (np.abs(log_probs[:, 0] - ref_kept[:, 0]) <= step / 2 + rounding[:, 0]).all()
    if k > 2:  # the bound is not vacuous: quantization error is really there and below it
        assert error.max() > 1e-5
    np.testing.assert_allclose(log_tail, ref_tail.astype(np.float32), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(log_bucket_sum(log_probs, log_tail), 0.0, atol=2e-6)


@pytest.mark.parametrize("vocab", [100, 32000, 50257, 131072])
def test_bytes_per_token_meets_the_budget(vocab):
    codec = TokenTopKCodec(64, 1.0, vocab)
    assert codec.index_bits == int(np.ceil(np.log2(vocab)))
    assert codec.index_bits + codec.value_bits <= 20
    assert codec.token_bytes <= 176
    assert codec.token_bytes == 16 + -(-(64 * codec.index_bits + 62 * codec.value_bits) // 8)
    # The records really are that long.
    logits = np.random.default_rng(1).standard_normal((2, vocab)).astype(np.float32)
    assert codec.encode(logits).shape == (2, codec.token_bytes)


def test_indices_at_the_top_of_the_vocabulary_survive_packing():
    vocab = 131072
    logits = np.zeros((3, vocab), np.float32)
    logits[:, -5:] = np.arange(5) + 10.0  # the five largest class ids hold the mass
    logits[1, 0] = 20.0
    codec = TokenTopKCodec(5, 1.0, vocab)
    indices, _, _ = codec.decode(codec.encode(logits))
    assert list(indices[0]) == [vocab - 1, vocab - 2, vocab - 3, vocab - 4, vocab - 5]
    assert list(indices[1]) == [0, vocab - 1, vocab - 2, vocab - 3, vocab - 4]


def test_ties_peaked_and_flat_distributions_decode_sanely():
    vocab, k = 50, 8
    peaked = np.full((1, vocab), -40.0)
    peaked[0, 7] = 40.0  # one class ~1, the rest ~1e-35 each
    flat = np.zeros((1, vocab))
    ties = np.repeat(np.arange(10.0), 5)[None, ::-1].copy()  # blocks of 5 equal logits
    logits = np.concatenate([peaked, flat, ties]).astype(np.float32)
    codec = TokenTopKCodec(k, 1.0, vocab)
    indices, log_probs, log_tail = codec.decode(codec.encode(logits))
    assert np.isfinite(log_probs).all() and np.isfinite(log_tail).all()
    assert (np.sort(indices, axis=1)[:, 1:] != np.sort(indices, axis=1)[:, :-1]).all()
    np.testing.assert_allclose(log_bucket_sum(log_probs, log_tail), 0.0, atol=2e-6)
    _, ref_kept, ref_tail = reference_topk(logits, k, 1.0)
    # Ties make the kept set ambiguous; the kept values are not.
    records = codec.encode(logits)
    error = np.abs(codec.decode(records)[1] - ref_kept).max(axis=1)
    assert (error <= codec.error_bound(records)).all()
    assert error[:2].max() < 1e-5  # equal gaps (0) in the peaked and flat rows: step ~0
    assert indices[0, 0] == 7
    assert log_tail[0] == np.float32(np.log(1e-12))  # the clamp, not log 0
    np.testing.assert_allclose(log_tail[1:], ref_tail[1:], rtol=1e-6)
    assert set(indices[2]) <= set(range(10))  # only the two top blocks of five


def test_encoding_is_deterministic_and_order_independent():
    rng = np.random.default_rng(3)
    logits = lm_like_logits(rng, 16, 500)
    logits[:, :4] = 9.0  # ties too
    codec = TokenTopKCodec(16, 1.5, 500)
    first = codec.encode(logits)
    assert first.tobytes() == codec.encode(logits.copy()).tobytes()
    # The same tokens in another batch order: the same record each.
    perm = rng.permutation(16)
    assert codec.encode(logits[perm]).tobytes() == first[perm].tobytes()
    # Any float dtype: float64 and float16 give valid records of the same layout.
    for dtype in (np.float64, np.float16):
        records = codec.encode(logits.astype(dtype))
        assert records.shape == first.shape
        assert np.isfinite(codec.decode(records)[1]).all()


def test_encode_selected_matches_encode():
    rng = np.random.default_rng(4)
    logits = lm_like_logits(rng, 10, 200).astype(np.float64)
    codec = TokenTopKCodec(12, 1.0, 200)
    ref_index, ref_kept, _ = reference_topk(logits, 12, 1.0)
    shuffled = rng.permutation(12)
    selected = codec.encode_selected(ref_index[:, shuffled], ref_kept[:, shuffled])
    assert selected.tobytes() == codec.encode(logits).tobytes()


def test_empty_batch():
    codec = TokenTopKCodec(4, 1.0, 10)
    records = codec.encode(np.zeros((0, 10), np.float32))
    assert records.shape == (0, codec.token_bytes)
    indices, log_probs, log_tail = codec.decode(records)
    assert indices.shape == (0, 4) and log_probs.shape == (0, 4) and log_tail.shape == (0,)


@pytest.mark.parametrize("k", [10, 11, 100])
def test_top_k_keeping_the_whole_vocabulary_is_a_config_error(k):
    with pytest.raises(ConfigError) as caught:
        TokenTopKCodec(k, 1.0, 10)
    message = str(caught.value)
    assert "distillation.train.teacher_cache.top_k" in message
    assert str(k) in message and "10" in message
    assert "compression: none" in message


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_top_k_is_a_config_error(k):
    with pytest.raises(ConfigError, match="distillation.train.teacher_cache.top_k"):
        TokenTopKCodec(k, 1.0, 100)


def test_describe_names_everything_the_record_depends_on():
    codec = TokenTopKCodec(64, 2.0, 32000)
    assert codec.describe() == {"compression": "topk", "top_k": 64, "temperature": 2.0,
                                "vocab_size": 32000, "index_bits": 15, "value_bits": 5,
                                "format": "token-topk-1"}
    assert codec.per_token and not codec.lossless and codec.name == "topk"


def test_non_finite_logits_and_foreign_indices_are_data_errors():
    codec = TokenTopKCodec(2, 1.0, 5)
    logits = np.zeros((2, 5), np.float32)
    logits[1, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        codec.encode(logits)
    with pytest.raises(DataError, match=r"\[0, 5\)"):
        codec.encode_selected(np.array([[0, 5]]), np.log([[0.5, 0.25]]))


def test_records_of_another_layout_are_refused():
    codec = TokenTopKCodec(8, 1.0, 100)
    other = TokenTopKCodec(16, 1.0, 100).encode(np.zeros((2, 100), np.float32))
    with pytest.raises(DataError, match="rebuild"):
        codec.decode(other)
