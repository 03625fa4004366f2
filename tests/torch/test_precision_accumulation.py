"""Gradient accumulation and autocast precision in the PyTorch built-in loop."""

import numpy as np
import pytest
import torch

from neural_distill import Distillation
from neural_distill.errors import ConfigError
from neural_distill.core.process import cpu_threads
from tests.helpers import (assert_states_identical, base_config, make_blobs, state_arrays,
                           tensor_loader, tiny_mlp, trained_teacher)


def _fit(workspace, batch_size, **train):
    x, y = make_blobs(n=64)
    teacher = trained_teacher(x, y)
    before = state_arrays(teacher)
    config = base_config(workspace, distillation={"train": {
        "optimizer": {"SGD": {"learning_rate": 0.1}}, "epoch": 2, **train}})
    distiller = Distillation(config)
    distiller.student_model = tiny_mlp()
    distiller.teacher_model = teacher
    distiller.train_dataloader = tensor_loader(x, y, batch_size=batch_size)
    student = distiller.fit()
    assert_states_identical(before, state_arrays(teacher))
    return student, distiller


def test_two_accumulated_batches_of_b_step_like_one_batch_of_2b(workspace):
    big, _ = _fit(workspace, batch_size=16)
    accumulated, distiller = _fit(workspace, batch_size=8, gradient_accumulation_steps=2)
    plain_small, _ = _fit(workspace, batch_size=8)
    for a, b, c in zip(accumulated.parameters(), big.parameters(), plain_small.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert not torch.allclose(c, b, atol=1e-4)  # the comparison can tell them apart
    assert distiller.history[-1]["step"] == 16       # steps count batches, as before


def test_leftover_batches_of_an_epoch_still_get_their_step(workspace):
    # 64 samples / 8 = 8 batches per epoch in groups of 3: steps after batches 3, 6 and 8.
    x, y = make_blobs(n=64)
    student = tiny_mlp()
    steps = []

    class CountingSGD(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(1)
            return super().step(closure)

    distiller = Distillation(base_config(workspace, distillation={"train": {
        "gradient_accumulation_steps": 3}}))
    distiller.student_model = student
    distiller.teacher_model = trained_teacher(x, y)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=8)
    distiller.optimizer = CountingSGD(student.parameters(), lr=0.1)
    distiller.fit()
    assert len(steps) == 2 * 3


def test_bf16_autocast_trains_and_leaves_the_teacher_in_float32(workspace):
    student, distiller = _fit(workspace, batch_size=16, precision="bf16")
    losses = [record["loss"] for record in distiller.history if "loss" in record]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(p.dtype == torch.float32 for p in student.parameters())


def test_precision_and_threads_are_validated():
    with pytest.raises(ConfigError, match="precision"):
        Distillation({"distillation": {"train": {"precision": "fp8"}}})
    with pytest.raises(ConfigError, match="threads"):
        Distillation({"threads": 0})
    assert cpu_threads(3) == 3 and cpu_threads("auto") >= 1


def test_threads_setting_applies_to_the_built_in_loop(workspace, monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    _fit(workspace, batch_size=32)
    assert seen == []                 # unset: the user's own torch setting is left alone
    x, y = make_blobs(n=32)
    distiller = Distillation(base_config(workspace, threads=1))
    distiller.student_model, distiller.teacher_model = tiny_mlp(), trained_teacher(x, y)
    distiller.train_dataloader = tensor_loader(x, y)
    distiller.fit()
    assert seen == [1]
