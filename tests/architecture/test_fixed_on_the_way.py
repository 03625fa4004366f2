"""Bugs fixed with the architecture redesign (issue 8), each pinned by a test."""

import glob
import os

import numpy as np
import pytest

from helpers import base_config, make_blobs, make_teacher_bn, tensor_loader, tiny_mlp
from neural_distill import Distillation, ModelError
from neural_distill.config.loader import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _modes(model):
    return [m.training for m in model.modules()]


def _runs(workspace):
    return sorted(glob.glob(os.path.join(workspace, "run-*")))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "conf_templates",
                                                               "*.yaml"))),
                         ids=os.path.basename)
def test_every_conf_template_loads_and_validates(path):
    conf, source = load_config(path)
    assert source == path
    assert "distillation" in conf and "tuning" in conf


def test_framework_is_checked_when_the_teacher_is_assigned_first(workspace):
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras")
    distiller = Distillation(base_config(workspace, model={"framework": None}) |
                             {"model": {"name": "mixed"}})
    distiller.teacher_model = tiny_mlp()
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    with pytest.raises(ModelError, match="student_model model is a tensorflow model but the "
                                         "teacher is a torch model"):
        distiller.student_model = student


def _user_loop(distiller, student, loader, first_hook):
    import torch

    optimizer = torch.optim.SGD(student.parameters(), lr=0.01)
    if first_hook == "on_epoch_begin":
        distiller.on_epoch_begin(0)
    distiller.on_train_begin()
    for x, y in loader:
        out = student(x)
        loss = distiller.on_after_compute_loss(x, out, torch.nn.functional.cross_entropy(out, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        distiller.on_step_end()
    distiller.on_epoch_end()
    distiller.on_train_end()


def test_on_train_begin_after_another_hook_restores_the_teacher(workspace):
    pytest.importorskip("torch")
    x, y = make_blobs(n=64)
    teacher = make_teacher_bn()
    teacher.train()
    before = _modes(teacher)
    distiller = Distillation(base_config(workspace))
    distiller.student_model, distiller.teacher_model = tiny_mlp(), teacher
    _user_loop(distiller, distiller.student_model, tensor_loader(x, y), "on_epoch_begin")
    assert _modes(teacher) == before and all(before)


def test_on_after_compute_loss_after_fit_leaves_the_teacher_as_it_was(workspace):
    torch = pytest.importorskip("torch")
    x, y = make_blobs(n=64)
    teacher = make_teacher_bn()
    teacher.train()
    distiller = Distillation(base_config(workspace, distillation={"train": {"epoch": 1}}))
    distiller.student_model, distiller.teacher_model = tiny_mlp(), teacher
    distiller.train_dataloader = tensor_loader(x, y)
    distiller.fit()
    assert teacher.training
    xt = torch.as_tensor(x[:8])
    out = distiller.student_model(xt)
    loss = distiller.on_after_compute_loss(xt, out, None)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert all(_modes(teacher)), "the teacher was left in eval mode"
    assert len(_runs(workspace)) == 1, "a hook after the run opened a second run folder"


def test_train_func_that_ends_the_run_itself_writes_one_run_folder(workspace):
    pytest.importorskip("torch")
    x, y = make_blobs(n=64)
    distiller = Distillation(base_config(workspace))
    distiller.student_model, distiller.teacher_model = tiny_mlp(), tiny_mlp(seed=3)
    loader = tensor_loader(x, y)
    distiller.train_func = lambda model: _user_loop(distiller, model, loader, None)
    best = distiller.fit()
    assert best is not None
    runs = _runs(workspace)
    assert len(runs) == 1, runs
    with open(os.path.join(runs[0], "metrics.jsonl"), encoding="utf-8") as handle:
        assert handle.read().strip(), "the run's record is empty"


def test_run_state_round_trips_and_restores_the_generators(workspace):
    pytest.importorskip("torch")
    import pickle

    import torch

    from neural_distill.run.state import RunState

    x, y = make_blobs(n=64)
    distiller = Distillation(base_config(workspace))
    distiller.student_model, distiller.teacher_model = tiny_mlp(), tiny_mlp(seed=3)
    distiller.train_dataloader = distiller.eval_dataloader = tensor_loader(x, y)
    distiller.fit()
    state = distiller.state.to_state(distiller.adapter)
    state = pickle.loads(pickle.dumps(state))  # plain data another process can read
    draws = (np.random.rand(), torch.rand(1).item())
    again = RunState.from_state(state, distiller.adapter.new_running_losses(),
                                distiller.adapter)
    assert (np.random.rand(), torch.rand(1).item()) == draws
    assert again.history == distiller.history and again.best_score == distiller.best_score
    assert (again.epochs_done, again.global_step) == (2, 4)
    for key, value in distiller.state.best_weights.items():
        assert torch.equal(again.best_weights[key], value)
