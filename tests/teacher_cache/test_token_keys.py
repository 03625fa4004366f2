"""Keys of token inputs padded per batch, and per-token teacher outputs (NumPy only)."""

import logging

import numpy as np
import pytest

from neural_distill.errors import DataError
from neural_distill.teacher_cache import DenseCodec, TeacherCache, TopKCodec, sample_keys

SENTENCES = [[101, 7, 8, 9, 102], [101, 5, 102], [101, 4, 4, 4, 4, 4, 102]]


def padded(sentences, width, side="right", extra=()):
    """A collator's batch: input_ids, token_type_ids and attention_mask padded to ``width``."""
    ids = np.zeros((len(sentences), width), np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(sentences):
        where = slice(0, len(tokens)) if side == "right" else slice(width - len(tokens), width)
        ids[row, where] = tokens
        mask[row, where] = 1
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": mask,
            **dict(extra)}


def test_the_same_sentence_padded_two_ways_has_one_key():
    narrow = sample_keys(padded(SENTENCES, 7))
    wide = sample_keys(padded(SENTENCES, 16))
    assert narrow == wide
    assert len(set(narrow)) == 3
    # A sentence in another batch, with other neighbours and another width: the same key.
    alone = sample_keys(padded([SENTENCES[1]], 3))
    assert alone == [narrow[1]]
    # Left padding (a tokenizer's other side) keys the real tokens too.
    assert sample_keys(padded(SENTENCES, 9, side="left")) == narrow


def test_real_tokens_and_other_inputs_still_tell_samples_apart():
    keys = sample_keys(padded(SENTENCES, 8))
    # A changed real token, a changed segment id, one token more: other samples.
    changed = padded([[101, 7, 8, 3, 102]] + SENTENCES[1:], 8)
    assert sample_keys(changed)[0] != keys[0] and sample_keys(changed)[1:] == keys[1:]
    segments = padded(SENTENCES, 8)
    segments["token_type_ids"][0, 3] = 1
    assert sample_keys(segments)[0] != keys[0]
    assert sample_keys(padded([SENTENCES[0] + [0]], 8))[0] != keys[0]
    # What sits at padded positions is not part of the sample.
    junk = padded(SENTENCES, 8)
    junk["input_ids"][1, 5] = 77
    assert sample_keys(junk) == keys
    # An input that is not per token (a per-sample feature) is keyed whole.
    feature = np.arange(3, dtype=np.float32)[:, None]
    with_feature = sample_keys(padded(SENTENCES, 8, extra={"z": feature}))
    assert with_feature != keys
    assert sample_keys(padded(SENTENCES, 11, extra={"z": feature})) == with_feature


def test_keys_of_ordinary_arrays_are_unchanged():
    # Pinned values: token keys leave the keys of other inputs as they were.
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert [k.hex() for k in sample_keys(x)] == [
        "150715da8b5ac79a67c5b789b90d8c71", "63d1473a2f60ee665f60cce5e0fc484a",
        "cea316ab36f7d8f2dccb6035baf0a049"]
    # A dict without an attention_mask, and one whose mask is not 0/1, are keyed whole.
    ids = np.arange(6).reshape(2, 3)
    assert [k.hex() for k in sample_keys({"input_ids": ids, "mask": np.ones((2, 3), np.int64)})
            ] == ["44a1003f0de06d8a017ff37a63c56b7b", "6a9725eda62639c4f9e1e6daac953aa2"]
    # An additive float mask says nothing about which positions are real: rows keyed whole,
    # so what sits under its "padding" still counts.
    additive = {"input_ids": ids, "attention_mask": np.array([[0, 0, -1e4]] * 2, np.float32)}
    other = {**additive, "input_ids": ids + np.array([0, 0, 1])}
    assert sample_keys(additive) != sample_keys(other)


def test_per_token_teacher_outputs_switch_the_cache_off_with_a_reason(caplog, tmp_path):
    cache = TeacherCache(DenseCodec(), "teacher")
    batch = padded(SENTENCES, 8)
    assert cache.lookup(batch) is None
    logits = np.ones((3, 8, 5), np.float32)
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        np.testing.assert_array_equal(cache.add(logits), logits)
    assert not cache.active and cache.store is None
    assert "per token" in caplog.text and "padded per batch" in caplog.text
    assert cache.lookup(batch) is None  # off: the teacher runs on every batch
    with pytest.raises(DataError, match="per token"):
        cache.save(str(tmp_path / "offline"))


def test_per_token_teacher_features_switch_a_features_cache_off(caplog):
    cache = TeacherCache(DenseCodec(), "teacher", features=True)
    assert cache.lookup(padded(SENTENCES, 8)) is None
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        cache.add(np.ones((3, 2), np.float32), [np.ones((3, 8, 4), np.float32)])
    assert not cache.active and "the teachers' features are per token" in caplog.text
    # Per-sample features (a pooled vector) are kept.
    pooled = TeacherCache(DenseCodec(), "teacher", features=True)
    pooled.lookup(padded(SENTENCES, 8))
    pooled.add(np.ones((3, 2), np.float32), [np.ones((3, 4), np.float32)])
    assert pooled.active and len(pooled.store) == 3


def test_per_sample_outputs_of_token_inputs_hit_across_paddings():
    cache = TeacherCache(DenseCodec(), "teacher")
    logits = np.array([[1.0, -1.0], [0.5, 0.25], [-2.0, 3.0]], np.float32)
    assert cache.lookup(padded(SENTENCES, 7)) is None
    cache.add(logits)
    order = [2, 0, 1]
    served = cache.lookup(padded([SENTENCES[i] for i in order], 12))
    np.testing.assert_array_equal(served, logits[order])


def test_top1_of_two_classes_keeps_the_whole_distribution():
    # With C = 2 the rest mass is the other class's probability: k=1 loses nothing but float32
    # rounding of the stored log-probabilities.
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(64, 2)).astype(np.float32)
    temperature = 2.0
    codec = TopKCodec(1, temperature)
    decoded = codec.decode(codec.encode(logits), 2)

    def tempered(z):
        z = z.astype(np.float64) / temperature
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    np.testing.assert_allclose(tempered(decoded), tempered(logits), rtol=0, atol=1e-6)
    assert codec.bytes_per_sample((2,)) == 12 and DenseCodec().bytes_per_sample((2,)) == 8


def test_topk_that_stores_more_than_the_logits_says_so(caplog):
    cache = TeacherCache(TopKCodec(1, 2.0), "teacher")
    assert cache.lookup(np.arange(6, dtype=np.float32).reshape(3, 2)) is None
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        cache.add(np.array([[1.0, -1.0], [0.5, 0.25], [-2.0, 3.0]], np.float32))
    assert "stores 12 bytes per sample, the dense logits take 8" in caplog.text
    caplog.clear()
    wide = TeacherCache(TopKCodec(1, 2.0), "teacher")
    wide.lookup(np.arange(6, dtype=np.float32).reshape(3, 2))
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        wide.add(np.zeros((3, 10), np.float32))
    assert "bytes per sample" not in caplog.text
