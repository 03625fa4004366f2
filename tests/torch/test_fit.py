"""The built-in PyTorch loop end to end, on a small separable synthetic problem."""

import copy
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import (accuracy, assert_states_identical, base_config, make_blobs,  # noqa: E402
                     make_teacher_bn, make_tiny_cnn, state_arrays, tensor_loader, tiny_mlp,
                     train_plain, trained_teacher)
from neural_distill import Distillation  # noqa: E402

nn = torch.nn


@pytest.fixture(scope="module")
def data():
    # Overlapping blobs: learnable (~90% for the teacher) but not trivially, so eval scores
    # differ between epochs and picking the best epoch means something.
    x, y = make_blobs(n=192, seed=0, spread=2.5)
    x_eval, y_eval = make_blobs(n=96, seed=5, spread=2.5)
    return x, y, x_eval, y_eval


@pytest.fixture(scope="module")
def good_teacher(data):
    x, y, x_eval, y_eval = data
    teacher = trained_teacher(x, y)
    assert accuracy(teacher, x_eval, y_eval) > 0.85
    return teacher


def make_distiller(workspace, data, teacher=None, student=None, shuffle=True, **overrides):
    x, y, x_eval, y_eval = data
    distiller = Distillation(base_config(workspace, **overrides))
    distiller.student_model = student if student is not None else tiny_mlp(seed=0)
    distiller.teacher_model = teacher if teacher is not None else tiny_mlp(hidden=32, seed=1)
    distiller.train_dataloader = tensor_loader(x, y, batch_size=32, shuffle=shuffle)
    distiller.eval_dataloader = tensor_loader(x_eval, y_eval, batch_size=96)
    return distiller


def read_metrics(distiller):
    runs = os.listdir(distiller.conf.tuning.workspace.path)
    assert len(runs) == 1, runs
    path = os.path.join(distiller.workspace.path, "metrics.jsonl")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def np_cross_entropy(logits, labels):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def record_hook_calls(distiller, name):
    calls = []
    original = getattr(distiller, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    setattr(distiller, name, wrapper)
    return calls


# ---------------------------------------------------------------------------- the result
def test_fit_returns_a_trained_copy_of_the_student(workspace, data, good_teacher):
    x, y, x_eval, y_eval = data
    student = tiny_mlp(seed=0)
    chance = accuracy(student, x_eval, y_eval)
    distiller = make_distiller(workspace, data, teacher=copy.deepcopy(good_teacher),
                               student=student, distillation={"train": {"epoch": 3}},
                               evaluation={"accuracy": {"metric": "Accuracy"}})
    model = distiller.fit()

    assert model is not student
    assert type(model) is type(student)
    assert model is distiller.best_model
    assert not model.training
    own = {p.data_ptr() for p in student.parameters()}
    assert all(p.data_ptr() not in own for p in model.parameters())
    assert accuracy(model, x_eval, y_eval) > max(0.9, chance + 0.2)
    # The saved checkpoint holds the same weights and loads into the user's class.
    saved = torch.load(os.path.join(distiller.workspace.path, "best_student.pt"))
    fresh = tiny_mlp(seed=123)
    fresh.load_state_dict(saved)
    assert_states_identical(state_arrays(model), state_arrays(fresh))


def test_history_best_score_and_metrics_jsonl_agree(workspace, data, good_teacher):
    x, y, x_eval, y_eval = data
    distiller = make_distiller(workspace, data, teacher=copy.deepcopy(good_teacher),
                               distillation={"train": {"epoch": 3}},
                               evaluation={"accuracy": {"metric": "Accuracy"}})
    model = distiller.fit()

    assert distiller.higher_is_better is True
    assert read_metrics(distiller) == distiller.history
    scores = [record["Accuracy"] for record in distiller.history]
    assert len(scores) == 3
    assert distiller.best_score == max(scores)
    assert [r["epoch"] for r in distiller.history] == [1, 2, 3]
    assert [r["step"] for r in distiller.history] == [6, 12, 18]
    running_best = -math.inf
    for record in distiller.history:
        assert record["best"] == (record["Accuracy"] > running_best)
        running_best = max(running_best, record["Accuracy"])
        assert {"loss", "student_loss", "distillation_loss"} <= record.keys()
    assert accuracy(model, x_eval, y_eval) == pytest.approx(distiller.best_score, abs=1e-9)


def test_loss_metric_picks_the_minimum(workspace, data):
    x, y, x_eval, y_eval = data
    # An untrained BatchNorm teacher pulls the student away from the labels, so the eval loss
    # is not monotone and the best epoch is usually not the last one.
    distiller = make_distiller(workspace, data, teacher=make_teacher_bn(),
                               distillation={"train": {"epoch": 4}},
                               evaluation={"accuracy": {"metric": {"Loss": None}}})
    model = distiller.fit()

    assert distiller.higher_is_better is False
    assert read_metrics(distiller) == distiller.history
    losses = [record["Loss"] for record in distiller.history]
    assert len(losses) == 4
    assert distiller.best_score == min(losses)
    best_epochs = [r["epoch"] for r in distiller.history if r["Loss"] == min(losses)]
    assert [r["epoch"] for r in distiller.history if r["best"]][-1] == best_epochs[0]
    with torch.no_grad():
        logits = model(torch.as_tensor(x_eval)).numpy()
    assert np_cross_entropy(logits, y_eval) == pytest.approx(distiller.best_score, rel=1e-5)


@pytest.mark.parametrize("higher_is_better,scores,best_index", [
    (True, [0.3, 0.9, 0.5, 0.7], 1),
    (False, [0.9, 0.2, 0.5, 0.1], 3),
    (False, [0.9, 0.2, 0.5, 0.4], 1),
])
def test_returned_model_is_the_snapshot_of_the_best_epoch(workspace, data, higher_is_better,
                                                          scores, best_index):
    snapshots = []
    pending = list(scores)

    def eval_func(model):
        snapshots.append(state_arrays(model))
        return pending.pop(0)

    distiller = make_distiller(workspace, data, distillation={"train": {"epoch": len(scores)}},
                               evaluation={"accuracy": {"higher_is_better": higher_is_better}})
    distiller.eval_func = eval_func
    model = distiller.fit()

    assert distiller.best_score == scores[best_index]
    assert len(snapshots) == len(scores)
    assert_states_identical(snapshots[best_index], state_arrays(model))
    if best_index != len(scores) - 1:  # and not simply the last weights
        assert not np.array_equal(snapshots[-1]["0.weight"], state_arrays(model)["0.weight"])
    assert [r["score"] for r in distiller.history] == scores


def test_a_nan_score_never_becomes_the_best(workspace, data):
    pending = [float("nan"), 0.5, 0.7]
    distiller = make_distiller(workspace, data, distillation={"train": {"epoch": 3}})
    distiller.eval_func = lambda model: pending.pop(0)
    distiller.fit()
    assert distiller.best_score == 0.7


def test_frequency_evaluates_every_n_epochs_and_once_at_the_end(workspace, data):
    distiller = make_distiller(workspace, data,
                               distillation={"train": {"epoch": 3, "frequency": 2}},
                               evaluation={"accuracy": {"metric": "Accuracy"}})
    distiller.fit()
    evaluated = [r for r in distiller.history if "Accuracy" in r]
    assert [(r["epoch"], r.get("final", False)) for r in evaluated] == [(2, False), (3, True)]
    assert read_metrics(distiller) == distiller.history


# ---------------------------------------------------------------------------- the teacher
@pytest.mark.parametrize("teacher_training", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize("make_teacher", [make_teacher_bn, make_tiny_cnn], ids=["mlp", "cnn"])
def test_teacher_is_bit_identical_and_its_mode_restored(workspace, data, teacher_training,
                                                        make_teacher):
    teacher = make_teacher()
    # Give BatchNorm non-trivial running statistics first, so a change would show.
    x = torch.as_tensor(data[0])
    teacher.train()
    with torch.no_grad():
        teacher(x[:64])
    teacher.train(teacher_training)
    flags = {name: p.requires_grad for name, p in teacher.named_parameters()}
    before = state_arrays(teacher)

    distiller = make_distiller(workspace, data, teacher=teacher,
                               distillation={"train": {"epoch": 2}},
                               evaluation={"accuracy": {"metric": "Accuracy"}})
    distiller.fit()

    assert_states_identical(before, state_arrays(teacher))
    assert all(module.training == teacher_training for module in teacher.modules())
    assert {name: p.requires_grad for name, p in teacher.named_parameters()} == flags
    assert all(p.grad is None for p in teacher.parameters())
    assert distiller.teacher_model is teacher


def test_teacher_runs_in_eval_mode_during_training(workspace, data):
    teacher = make_teacher_bn()
    teacher.train()
    modes = []
    original_forward = teacher.forward

    def spying_forward(x):
        modes.append((teacher.training, teacher.drop.training, torch.is_grad_enabled()))
        return original_forward(x)

    teacher.forward = spying_forward
    make_distiller(workspace, data, teacher=teacher).fit()
    assert modes and set(modes) == {(False, False, False)}


def test_teacher_mixed_module_modes_are_restored(workspace, data):
    teacher = make_teacher_bn()
    teacher.train()
    teacher.bn.eval()  # common practice: frozen BatchNorm inside a model in train mode
    modes = {name: module.training for name, module in teacher.named_modules()}
    make_distiller(workspace, data, teacher=teacher).fit()
    assert {name: module.training for name, module in teacher.named_modules()} == modes


# ---------------------------------------------------------------------------- reproducibility
def _fit_weights(workspace, data, seed):
    distiller = make_distiller(workspace, data, student=tiny_mlp(dropout=0.3, seed=0),
                               teacher=make_teacher_bn(), shuffle=True,
                               tuning={"random_seed": seed})
    distiller.fit()
    return state_arrays(distiller.student_model), state_arrays(distiller.best_model)


def test_same_seed_gives_identical_students(tmp_path, data):
    first = _fit_weights(str(tmp_path / "a"), data, seed=11)
    second = _fit_weights(str(tmp_path / "b"), data, seed=11)
    for a, b in zip(first, second):
        assert_states_identical(a, b)
    # The seed matters (shuffling and dropout draw from it): otherwise the check above is empty.
    other = _fit_weights(str(tmp_path / "c"), data, seed=12)
    assert not np.array_equal(first[0]["0.weight"], other[0]["0.weight"])


# ---------------------------------------------------------------------------- unlabeled data
class _InputsOnlyDataset(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = torch.as_tensor(x)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index]


def _kl_to_teacher(student, teacher, x):
    with torch.no_grad():
        x = torch.as_tensor(x)
        log_p_t = torch.log_softmax(teacher(x), -1)
        log_p_s = torch.log_softmax(student(x), -1)
        return float((log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean())


@pytest.mark.parametrize("batches", ["tensor", "one-tuple"])
def test_unlabeled_transfer_set_trains_with_the_kd_term_alone(workspace, data, good_teacher,
                                                              batches):
    x, _, x_eval, y_eval = data
    teacher = copy.deepcopy(good_teacher)
    student = tiny_mlp(seed=0)
    kl_before = _kl_to_teacher(student, teacher, x_eval)
    distiller = Distillation(base_config(workspace, distillation={"train": {
        "epoch": 3, "criterion": {"KnowledgeDistillationLoss": {
            "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.8]}}}}))
    distiller.student_model = student
    distiller.teacher_model = teacher
    distiller.train_dataloader = (
        torch.utils.data.DataLoader(_InputsOnlyDataset(x), batch_size=32, shuffle=True)
        if batches == "tensor" else tensor_loader(x, None, batch_size=32, shuffle=True))
    student_losses = []
    original = distiller.on_after_compute_loss

    def spy(inputs, output, student_loss, teacher_output=None, labels=None):
        student_losses.append(student_loss)
        return original(inputs, output, student_loss, teacher_output, labels)

    distiller.on_after_compute_loss = spy
    model = distiller.fit()

    assert student_losses and all(loss is None for loss in student_losses)
    for record in distiller.history:
        assert "student_loss" not in record
        assert record["loss"] == pytest.approx(0.8 * record["distillation_loss"], rel=1e-5)
    assert _kl_to_teacher(model, teacher, x_eval) < 0.5 * kl_before
    assert accuracy(model, x_eval, y_eval) > 0.8


# ---------------------------------------------------------------------------- loop settings
def test_iteration_limits_steps_per_epoch(workspace, data):
    distiller = make_distiller(workspace, data,
                               distillation={"train": {"epoch": 2, "iteration": 2}})
    steps = record_hook_calls(distiller, "on_step_begin")
    distiller.fit()
    assert [args[0] for args in steps] == [0, 1, 0, 1]
    assert [r["step"] for r in distiller.history] == [2, 4]


def _lrs_during_fit(workspace, data, schedule, base_lr=0.1, epochs=2):
    distiller = make_distiller(workspace, data, distillation={"train": {
        "epoch": epochs, "iteration": 3, "lr_schedule": schedule}})
    optimizer = torch.optim.SGD(distiller.student_model.parameters(), lr=base_lr)
    distiller.optimizer = optimizer
    lrs = []
    original = distiller.on_step_begin

    def spy(batch_id):
        lrs.append(optimizer.param_groups[0]["lr"])
        return original(batch_id)

    distiller.on_step_begin = spy
    distiller.fit()
    return lrs


def test_constant_schedule_keeps_the_lr(workspace, data):
    assert _lrs_during_fit(workspace, data, {"constant": {}}) == [0.1] * 6


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs(workspace, data):
    lrs = _lrs_during_fit(workspace, data, {"step": {"step_size": 1, "gamma": 0.5}}, epochs=3)
    assert lrs == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025] * 3)


def test_cosine_schedule_decays_the_lr(workspace, data):
    lrs = _lrs_during_fit(workspace, data, {"cosine": {"min_learning_rate": 0.01}}, epochs=2)
    assert len(lrs) == 6
    assert lrs[0] == pytest.approx(0.1)
    assert all(later < earlier for earlier, later in zip(lrs, lrs[1:])), lrs
    assert all(lr >= 0.01 for lr in lrs)
    assert lrs[-1] < 0.05  # most of the way down by the last step


@pytest.mark.parametrize("name,params,expected_type", [
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}, "SGD"),
    ("Adam", {"learning_rate": 0.01}, "Adam"),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05}, "AdamW"),
])
def test_configured_optimizers_run(workspace, data, monkeypatch, name, params, expected_type):
    from neural_distill.adapters.torch import loop

    built = []
    original = loop.build_optimizer

    def spy(config, parameters):
        optimizer = original(config, parameters)
        built.append(optimizer)
        return optimizer

    monkeypatch.setattr(loop, "build_optimizer", spy)
    distiller = make_distiller(workspace, data,
                               distillation={"train": {"optimizer": {name: params}}},
                               evaluation={"accuracy": {"metric": "Accuracy"}})
    before = state_arrays(distiller.student_model)
    distiller.fit()

    assert len(built) == 1 and type(built[0]).__name__ == expected_type
    group = built[0].param_groups[0]
    assert group["lr"] == params["learning_rate"]
    if "momentum" in params:
        assert group["momentum"] == params["momentum"]
    if "weight_decay" in params:
        assert group["weight_decay"] == params["weight_decay"]
    after = state_arrays(distiller.student_model)
    assert not np.array_equal(before["0.weight"], after["0.weight"])
    assert all(math.isfinite(r["loss"]) for r in distiller.history)
    assert distiller.history[-1]["Accuracy"] > 0.6


# ---------------------------------------------------------------------------- batch formats
class TwoInputNet(nn.Module):
    """Takes the features split in two inputs; returns logits in one of several containers."""

    def __init__(self, output_kind, hidden=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.left = nn.Linear(4, hidden)
        self.right = nn.Linear(4, hidden)
        self.head = nn.Linear(hidden, 3)
        self.output_kind = output_kind

    def forward(self, a, b):
        hidden = torch.relu(self.left(a) + self.right(b))
        logits = self.head(hidden)
        if self.output_kind == "dict":
            return {"logits": logits, "hidden": hidden}
        if self.output_kind == "object":
            return _Output(logits, hidden)
        if self.output_kind == "tuple":
            return logits, hidden
        return logits


class _Output:
    def __init__(self, logits, hidden):
        self.logits = logits
        self.hidden_states = hidden


class _DictDataset(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = torch.as_tensor(x), torch.as_tensor(y)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"a": self.x[index, :4], "b": self.x[index, 4:], "labels": self.y[index]}


def _loader(kind, x, y, shuffle):
    if kind == "dict":
        dataset = _DictDataset(x, y)
    else:
        t = torch.as_tensor(x)
        dataset = torch.utils.data.TensorDataset(t[:, :4], t[:, 4:], torch.as_tensor(y))
    return torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=shuffle)


@pytest.mark.parametrize("input_kind", ["tuple", "dict"])
@pytest.mark.parametrize("output_kind", ["tensor", "dict", "object", "tuple"])
def test_input_and_output_formats(workspace, data, input_kind, output_kind):
    x, y, x_eval, y_eval = data
    teacher = TwoInputNet(output_kind, hidden=32, seed=1)
    student = TwoInputNet(output_kind, seed=0)
    distiller = Distillation(base_config(workspace, distillation={"train": {"epoch": 3}},
                                         evaluation={"accuracy": {"metric": "Accuracy"}}))
    distiller.student_model = student
    distiller.teacher_model = teacher
    distiller.train_dataloader = _loader(input_kind, x, y, shuffle=True)
    distiller.eval_dataloader = _loader(input_kind, x_eval, y_eval, shuffle=False)
    inputs_seen = record_hook_calls(distiller, "on_after_compute_loss")
    model = distiller.fit()

    assert type(model) is TwoInputNet
    first_input = inputs_seen[0][0]
    if input_kind == "dict":
        assert isinstance(first_input, dict) and set(first_input) == {"a", "b"}
    else:
        assert isinstance(first_input, tuple) and len(first_input) == 2
    xt = torch.as_tensor(x_eval)
    with torch.no_grad():
        out = model(xt[:, :4], xt[:, 4:])
    logits = {"tensor": lambda o: o, "dict": lambda o: o["logits"],
              "object": lambda o: o.logits, "tuple": lambda o: o[0]}[output_kind](out)
    model_accuracy = float((logits.argmax(-1).numpy() == y_eval).mean())
    assert model_accuracy == pytest.approx(distiller.best_score)
    assert model_accuracy > 0.6  # chance is 1/3; the teacher is untrained, the labels teach
    losses = [r["loss"] for r in distiller.history]
    assert losses[-1] < losses[0]


def test_synthetic_problem_is_learnable_by_the_tiny_models(data):
    # Sanity check of the helpers: the synthetic problem is learnable by the tiny models.
    x, y, x_eval, y_eval = data
    model = train_plain(tiny_mlp(seed=3), x, y, steps=40)
    assert accuracy(model, x_eval, y_eval) > 0.9

