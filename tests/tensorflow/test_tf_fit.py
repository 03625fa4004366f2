"""The built-in TensorFlow loop end to end, on the small separable problem of the torch tests."""

import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from neural_distill import Distillation  # noqa: E402
from neural_distill.events import HOOK_NAMES  # noqa: E402
from tf_helpers import (accuracy, assert_same_weights, dataset, functional_cnn,  # noqa: E402
                        mlp, tf_config, train_plain, weights_of)


@pytest.fixture(scope="module")
def good_teacher(data):
    x, y, x_eval, y_eval = data
    teacher = train_plain(mlp(hidden=32, seed=1, batchnorm=True, dropout=0.3), x, y)
    assert accuracy(teacher, x_eval, y_eval) > 0.9
    return teacher


def make_distiller(workspace, data, teacher, student=None, **overrides):
    x, y, x_eval, y_eval = data
    distiller = Distillation(tf_config(workspace, **overrides))
    distiller.student_model = student if student is not None else mlp(seed=0)
    distiller.teacher_model = teacher
    distiller.train_dataloader = dataset(x, y, shuffle=True)
    distiller.eval_dataloader = dataset(x_eval, y_eval, batch_size=96)
    return distiller


def read_metrics(distiller):
    with open(os.path.join(distiller.workspace.path, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------- the result
def test_fit_returns_a_trained_copy_and_the_teacher_is_untouched(workspace, data, good_teacher):
    x, y, x_eval, y_eval = data
    student = mlp(seed=0, dropout=0.2)
    teacher_weights = weights_of(good_teacher)
    trainable = good_teacher.trainable
    distiller = make_distiller(workspace, data, good_teacher, student,
                               distillation={"train": {"epoch": 3}},
                               evaluation={"accuracy": {"metric": "Accuracy"}})
    model = distiller.fit()

    assert type(model) is type(student) and model is not student
    assert not {id(v) for v in model.weights} & {id(v) for v in student.weights}
    assert accuracy(model, x_eval, y_eval) > 0.9
    assert accuracy(model, x_eval, y_eval) == pytest.approx(distiller.best_score)
    # Weights and BatchNorm moving statistics of the teacher are bit-identical.
    assert_same_weights(teacher_weights, weights_of(good_teacher))
    assert good_teacher.trainable is trainable
    assert read_metrics(distiller) == distiller.history
    assert [r["step"] for r in distiller.history] == [6, 12, 18]
    assert all({"loss", "student_loss", "distillation_loss"} <= r.keys()
               for r in distiller.history)
    saved = os.path.join(distiller.workspace.path, "best_student.weights.h5")
    fresh = mlp(seed=123, dropout=0.2)
    fresh.load_weights(saved)
    assert_same_weights(weights_of(model), weights_of(fresh))


def test_teacher_batchnorm_statistics_are_non_trivial_and_unchanged(workspace, data):
    x, y, _, _ = data
    teacher = functional_cnn(channels=6, seed=1)
    teacher(x[:64], training=True)  # moving statistics move away from their init
    moving = [w for w in teacher.weights if "moving" in w.path]
    assert moving and not np.allclose(moving[0].numpy(), 0.0)
    before = weights_of(teacher)
    distiller = make_distiller(workspace, data, teacher, student=functional_cnn(seed=0))
    distiller.fit()
    assert_same_weights(before, weights_of(teacher))


def test_teacher_is_called_with_training_false(workspace, data):
    calls = []

    class Spy(keras.Model):
        def __init__(self):
            super().__init__()
            self.body = mlp(hidden=8, seed=1)

        def call(self, x, training=None):
            calls.append(training)
            return self.body(x, training=training)

    make_distiller(workspace, data, Spy()).fit()
    assert calls and set(calls) == {False}


def test_loss_records_match_the_criterion(workspace, data, good_teacher):
    # Without shuffling, one epoch's mean loss can be recomputed from the initial weights.
    x, y, _, _ = data
    student = mlp(seed=0)
    distiller = make_distiller(workspace, data, good_teacher, student,
                               distillation={"train": {"epoch": 1, "iteration": 1}})
    distiller.train_dataloader = dataset(x, y)
    first = x[:32], y[:32]
    crit = distiller._adapter.build_criterion("KnowledgeDistillationLoss", {
        "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.5]})
    expected = float(crit(student(first[0], training=True),
                          good_teacher(first[0], training=False), first[1]))
    distiller.fit()
    assert distiller.history[0]["loss"] == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------- reproducibility
def _fit_weights(workspace, data, teacher, seed):
    # Data from the config: its shuffling is seeded by tuning.random_seed. (A tf.data pipeline
    # or a Dropout layer built before fit() keeps the seed it was built with, as in Keras.)
    distiller = make_distiller(workspace, data, teacher, student=mlp(seed=0, dropout=0.3),
                               tuning={"random_seed": seed}, distillation={"train": {
                                   "dataloader": {"batch_size": 16, "shuffle": True, "dataset": {
                                       "dummy": {"shape": [64, 8], "num_classes": 3}}}}})
    distiller.train_dataloader = None
    distiller.fit()
    return weights_of(distiller.student_model)


def test_same_seed_same_student(tmp_path, data, good_teacher):
    first = _fit_weights(str(tmp_path / "a"), data, good_teacher, seed=11)
    second = _fit_weights(str(tmp_path / "b"), data, good_teacher, seed=11)
    assert_same_weights(first, second)
    other = _fit_weights(str(tmp_path / "c"), data, good_teacher, seed=12)
    assert not np.array_equal(first[0], other[0])


# ---------------------------------------------------------------------------- hooks
def _record_hooks(distiller):
    calls = []
    for name in HOOK_NAMES:
        original = getattr(distiller, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        setattr(distiller, name, wrapper)
    return calls


def _expected(epochs, steps, loss_hook_every_step):
    expected = ["on_train_begin"]
    for epoch in range(epochs):
        expected.append("on_epoch_begin")
        for step in range(steps):
            expected.append("on_step_begin")
            if loss_hook_every_step or (epoch == 0 and step == 0):
                expected.append("on_after_compute_loss")
            expected += ["on_before_optimizer_step", "on_after_optimizer_step", "on_step_end"]
        expected.append("on_epoch_end")
    return expected + ["on_train_end"]


@pytest.mark.parametrize("eager", [False, True], ids=["compiled", "eager"])
def test_hooks_fire_in_the_documented_order(workspace, data, eager):
    x, y, _, _ = data
    distiller = make_distiller(workspace, data, mlp(hidden=8, seed=1),
                               distillation={"train": {"epoch": 2}})
    distiller.train_dataloader = dataset(x[:24], y[:24], batch_size=8)  # 3 full batches
    calls = _record_hooks(distiller)
    tf.config.run_functions_eagerly(eager)
    try:
        distiller.fit()
    finally:
        tf.config.run_functions_eagerly(False)
    # Compiled, on_after_compute_loss is part of the traced step: its Python runs once (per
    # trace), its ops at every step; every other hook is called from Python at every step.
    assert calls == _expected(2, 3, loss_hook_every_step=eager)


def test_execution_mode_eager_runs_the_step_in_python(workspace, data):
    x, y, _, _ = data
    distiller = make_distiller(workspace, data, mlp(hidden=8, seed=1),
                               distillation={"train": {"epoch": 2, "execution_mode": "eager"}})
    distiller.train_dataloader = dataset(x[:24], y[:24], batch_size=8)
    calls = _record_hooks(distiller)
    distiller.fit()
    # Not traced: the loss hook's Python runs at every step, as in a PyTorch loop.
    assert calls == _expected(2, 3, loss_hook_every_step=True)


def test_iteration_and_step_schedule(workspace, data, monkeypatch):
    from neural_distill.adapters.tensorflow import loop

    distiller = make_distiller(workspace, data, mlp(hidden=8, seed=1), distillation={"train": {
        "epoch": 3, "iteration": 2, "optimizer": {"SGD": {"learning_rate": 0.1}},
        "lr_schedule": {"step": {"step_size": 1, "gamma": 0.5}}}})
    built, lrs = [], []
    original_build = loop.build_optimizer

    def keep(config):
        optimizer, decay = original_build(config)
        built.append(optimizer)
        return optimizer, decay

    monkeypatch.setattr(loop, "build_optimizer", keep)
    original_begin = distiller.on_step_begin

    def spy(batch_id):
        lrs.append((batch_id, float(built[0].learning_rate)))
        return original_begin(batch_id)

    distiller.on_step_begin = spy
    distiller.fit()
    assert [b for b, _ in lrs] == [0, 1, 0, 1, 0, 1]
    assert [lr for _, lr in lrs] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert [r["step"] for r in distiller.history] == [2, 4, 6]


@pytest.mark.parametrize("name,params", [
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    ("AdamW", {"learning_rate": 0.05, "weight_decay": 0.05}),
])
def test_configured_optimizers_train(workspace, data, good_teacher, name, params):
    distiller = make_distiller(workspace, data, good_teacher, distillation={"train": {
        "epoch": 2, "optimizer": {name: params}, "max_grad_norm": 5.0,
        "lr_schedule": {"cosine": {"warmup_epochs": 1}}}},
        evaluation={"accuracy": {"metric": "Accuracy"}})
    distiller.fit()
    assert distiller.history[-1]["Accuracy"] > 0.8
    assert distiller.history[-1]["loss"] < distiller.history[0]["loss"]


# ---------------------------------------------------------------------------- data forms
def test_unlabeled_transfer_set_trains_with_the_kd_term_alone(workspace, data, good_teacher):
    x, _, x_eval, y_eval = data
    distiller = make_distiller(workspace, data, good_teacher, distillation={"train": {
        "epoch": 3, "criterion": {"KnowledgeDistillationLoss": {
            "temperature": 2.0, "loss_types": ["CE", "KL"], "loss_weights": [0.5, 0.8]}}}})
    distiller.train_dataloader = dataset(x, shuffle=True)
    model = distiller.fit()
    for record in distiller.history:
        assert "student_loss" not in record
        assert record["loss"] == pytest.approx(0.8 * record["distillation_loss"], rel=1e-5)
    assert accuracy(model, x_eval, y_eval) > 0.8


def test_dict_batches_and_a_two_input_functional_model(workspace, data, good_teacher):
    x, y, x_eval, y_eval = data

    def two_input(hidden, seed):
        keras.utils.set_random_seed(seed)
        a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
        h = keras.layers.Dense(hidden, activation="relu")(keras.layers.Concatenate()([a, b]))
        return keras.Model({"a": a, "b": b}, keras.layers.Dense(3)(h))

    def dicts(xs, ys):
        return tf.data.Dataset.from_tensor_slices(
            {"a": xs[:, :4], "b": xs[:, 4:], "labels": ys}).batch(32)

    teacher = train_plain(two_input(32, 1), {"a": x[:, :4], "b": x[:, 4:]}, y)
    distiller = Distillation(tf_config(workspace, distillation={"train": {"epoch": 3}},
                                       evaluation={"accuracy": {"metric": "Accuracy"}}))
    distiller.student_model = two_input(16, 0)
    distiller.teacher_model = teacher
    distiller.train_dataloader = dicts(x, y)
    distiller.eval_dataloader = dicts(x_eval, y_eval)
    distiller.fit()
    assert distiller.best_score > 0.8


def test_dataset_from_the_config_file(workspace, good_teacher):
    distiller = Distillation(tf_config(workspace, distillation={"train": {
        "epoch": 1, "dataloader": {"batch_size": 16, "dataset": {
            "dummy": {"shape": [48, 8], "num_classes": 3}}}}}))
    distiller.student_model = mlp(seed=0)
    distiller.teacher_model = good_teacher
    distiller.fit()
    assert distiller.history[0]["step"] == 3


# ---------------------------------------------------------------------------- features
def test_intermediate_layers_train_their_matchers(workspace, data):
    x, y, _, _ = data
    teacher, student = functional_cnn(channels=8, seed=1), functional_cnn(channels=4, seed=0)
    distiller = make_distiller(workspace, data, teacher, student, distillation={"train": {
        "epoch": 2, "criterion": {"IntermediateLayersKnowledgeDistillationLoss": {
            "layer_mappings": [["conv"], ["bn", "", "bn", ""], ["", "logits"]],
            "loss_types": ["MSE", "L1", "KL"], "add_origin_loss": True}}}})
    initial = {}
    original = distiller.on_train_begin

    def spy(dataloader=None):
        original(dataloader)
        initial.update({v.path: v.numpy().copy()
                        for v in distiller.criterion.trainable_variables})

    distiller.on_train_begin = spy
    best = distiller.fit()
    criterion = distiller.criterion
    assert [type(m).__name__ for m in criterion.matchers] == ["Dense", "Dense", "_Identity"]
    assert initial and all(not np.array_equal(initial[v.path], v.numpy())
                           for v in criterion.trainable_variables)
    assert len(best.weights) == len(student.weights)
    assert os.path.isfile(os.path.join(distiller.workspace.path, "criterion.weights.h5"))
    assert all(r["distillation_loss"] > 0 for r in distiller.history)


def test_self_distillation_with_a_functional_dict_output(workspace, data):
    keras.utils.set_random_seed(0)
    x_in = keras.Input((8,))
    a = keras.layers.Dense(16, activation="relu", name="block1")(x_in)
    b = keras.layers.Dense(16, activation="relu", name="block2")(a)
    model = keras.Model(x_in, {"logits": keras.layers.Dense(3, name="head")(b),
                               "aux_logits": keras.layers.Dense(3, name="aux")(a)})
    distiller = Distillation(tf_config(workspace, distillation={"train": {
        "epoch": 2, "criterion": {"SelfKnowledgeDistillationLoss": {
            "layer_mappings": [[["aux_logits", "logits"]], [["block1", "block2"]]],
            "temperature": 2.0, "loss_types": ["KL", "L2"], "loss_weights": [0.5, 0.1],
            "add_origin_loss": True}}}}))
    distiller.student_model = model
    distiller.train_dataloader = dataset(*data[:2])
    best = distiller.fit()
    assert isinstance(best, keras.Model) and best is not model
    assert distiller.history[0]["distillation_loss"] > 0


# ---------------------------------------------------------------------------- subclassed
class Subclassed(keras.Model):
    def __init__(self, hidden=16, **kwargs):
        super().__init__(**kwargs)
        self.hidden_layer = keras.layers.Dense(hidden, activation="relu")
        self.out = keras.layers.Dense(3)

    def call(self, x, training=None):
        return self.out(self.hidden_layer(x))


def test_subclassed_student_is_copied_when_its_config_rebuilds_it(workspace, data,
                                                                  good_teacher):
    keras.utils.set_random_seed(0)
    student = Subclassed()
    distiller = make_distiller(workspace, data, good_teacher, student)
    best = distiller.fit()
    assert type(best) is Subclassed and best is not student


def test_subclassed_student_that_cannot_be_rebuilt_gets_the_best_weights(workspace, data,
                                                                         good_teacher):
    # Keras' automatic config of a subclassed Model misses constructor arguments (hidden=12
    # comes back as 16): the copy would be another architecture, so it is refused.
    keras.utils.set_random_seed(0)
    student = Subclassed(hidden=12)
    scores = iter([0.9, 0.1])
    snapshots = []

    def eval_func(model):
        snapshots.append(weights_of(model))
        return next(scores)

    distiller = make_distiller(workspace, data, good_teacher, student,
                               distillation={"train": {"epoch": 2}})
    distiller.eval_func = eval_func
    with pytest.warns(UserWarning, match="cannot be rebuilt from its config"):
        best = distiller.fit()
    assert best is student
    assert_same_weights(snapshots[0], weights_of(best))


def test_feature_of_a_nested_backbone(workspace, data):
    # A nested model's own `.output` is not connected to the outer model's inputs; the
    # criterion uses the outer graph's call of it.
    def with_backbone(width, seed):
        keras.utils.set_random_seed(seed)
        inner_in = keras.Input((8,))
        backbone = keras.Model(inner_in, keras.layers.Dense(width, activation="relu")(inner_in),
                               name="backbone")
        x = keras.Input((8,))
        return keras.Model(x, keras.layers.Dense(3, name="logits")(backbone(x)))

    distiller = make_distiller(workspace, data, with_backbone(12, 1), with_backbone(6, 0),
                               distillation={"train": {"epoch": 1, "criterion": {
                                   "IntermediateLayersKnowledgeDistillationLoss": {
                                       "layer_mappings": [["backbone"]]}}}})
    distiller.fit()
    assert [type(m).__name__ for m in distiller.criterion.matchers] == ["Dense"]
    assert distiller.history[0]["distillation_loss"] > 0
