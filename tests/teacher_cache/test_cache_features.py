"""The teacher cache with IntermediateLayersKnowledgeDistillationLoss (PyTorch): the teachers'
captured features are cached with their logits, and a hit serves both."""

import logging

import numpy as np
import pytest
import torch

from neural_distill import Distillation
from neural_distill.errors import ConfigError
from neural_distill.teacher_cache import DenseCodec, TeacherCache
from tests.helpers import (assert_states_identical, base_config, state_arrays, tensor_loader,
                           tiny_mlp)
from tests.teacher_cache.test_cache_torch import CountingTeacher

# Hidden features 16 (student) -> 32 (teacher): a learned Linear matcher; logits as they are,
# through a selecting process.
MAPPINGS = [["0", "teacher.0"], ["2", "teacher.2"]]


def _distiller(workspace, teacher, loader, mappings=MAPPINGS, epochs=3, **cache):
    config = base_config(workspace, distillation={"train": {
        "epoch": epochs, "teacher_cache": cache,
        "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": mappings, "loss_types": ["MSE", "L1"][:len(mappings)],
            "add_origin_loss": True}}}})
    distiller = Distillation(config)
    distiller.student_model = tiny_mlp()
    distiller.teacher_model = teacher
    distiller.train_dataloader = loader
    return distiller


def test_feature_kd_cached_trains_bit_identically_and_runs_the_teacher_once(workspace, data):
    x, y, teacher = data
    before = state_arrays(teacher)
    plain_teacher = CountingTeacher(teacher)
    plain = _distiller(workspace, plain_teacher, tensor_loader(x, y)).fit()
    counting = CountingTeacher(teacher)
    distiller = _distiller(workspace, counting, tensor_loader(x, y), enabled=True)
    cached = distiller.fit()
    for a, b in zip(plain.state_dict().values(), cached.state_dict().values()):
        assert torch.equal(a, b)
    # Epoch 1 and the first-batch pass that builds the matchers; epochs 2 and 3 from the cache.
    assert plain_teacher.samples == 3 * len(x) + 32
    assert counting.samples == len(x) + 32
    rates = [r["teacher_cache_hit_rate"] for r in distiller.history if "time_s" in r]
    assert rates == [0.0, 1.0, 1.0]
    cache = distiller.step.cache
    assert cache.features and [shape for shape, _ in cache.parts] == [(3,), (32,), (3,)]
    assert_states_identical(before, state_arrays(teacher))


def test_feature_cache_fingerprint_names_the_captured_layers(workspace, data):
    x, y, teacher = data
    marks = set()
    for mappings in (MAPPINGS, [["0", "teacher.0"]], [["0", "teacher.0"], ["2", "teacher.1"]]):
        d = _distiller(workspace, CountingTeacher(teacher), tensor_loader(x, y), mappings,
                       epochs=1, enabled=True)
        d.fit()
        marks.add(d.step.cache.fingerprint)
    assert len(marks) == 3


def test_feature_cache_settings_that_cannot_serve_are_refused(workspace, data, tmp_path):
    x, y, teacher = data
    with pytest.raises(ConfigError, match="compression: none"):
        _distiller(workspace, CountingTeacher(teacher), tensor_loader(x, y), enabled=True,
                   compression="float16").fit()
    with pytest.raises(ConfigError, match="offline caches hold"):
        _distiller(workspace, CountingTeacher(teacher), tensor_loader(x, y),
                   path=str(tmp_path / "cache")).fit()


def test_parts_round_trip_in_their_own_dtype_and_features_without_batch_axis_stop(caplog):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    half = rng.normal(size=(6, 2, 2)).astype(np.float16)
    wide = rng.normal(size=(6, 5))                                   # float64: kept exact
    cache = TeacherCache(DenseCodec(), "fp", features=True)
    assert cache.lookup(x) is None
    cache.add(logits, [half, wide])
    order = [4, 1, 5]
    got = cache.lookup(x[order])
    assert [part.dtype for part in got] == [np.float32, np.float16, np.float64]
    for part, expected in zip(got, (logits, half, wide)):
        np.testing.assert_array_equal(part, expected[order])
    other = TeacherCache(DenseCodec(), "fp", features=True)
    other.lookup(x)
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        other.add(logits, [np.zeros((2, 6), np.float32)])             # not per sample
    assert "first axis is not the batch" in caplog.text and not other.storing
    assert other.lookup(x) is None


def test_tensorflow_feature_criteria_get_a_features_cache_and_self_distillation_none(caplog):
    from neural_distill.teacher_cache.options import TeacherCacheOptions
    from neural_distill.teacher_cache.run_cache import build_run_cache

    class Adapter:
        name = "tensorflow"

        @staticmethod
        def named_arrays(model):
            return [("w", np.zeros(2, np.float32))]

    class Criterion:
        yaml_name = "IntermediateLayersKnowledgeDistillationLoss"

        @staticmethod
        def teacher_features_key():
            return "['hidden']"

    class SelfCriterion:
        yaml_name = "SelfKnowledgeDistillationLoss"

    settings = TeacherCacheOptions(enabled=True, max_bytes=1 << 20, min_hit_rate=0.05)
    cache = build_run_cache(settings, Adapter(), Criterion(), [object()], None, None)
    assert cache is not None and cache.features
    with caplog.at_level(logging.WARNING, logger="neural_distill"):
        assert build_run_cache(settings, Adapter(), SelfCriterion(), [], None, None) is None
    assert "not served by the cache" in caplog.text and "the cache is off" in caplog.text
