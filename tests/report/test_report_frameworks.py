"""``distiller.report()`` after ``fit()``, the end-of-run summary and TensorBoard scalars, for
PyTorch and Keras models (tiny models: a few seconds each)."""

import json
import os

import numpy as np
import pytest

from neural_distill import Distillation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    rule = np.random.default_rng(7).normal(size=(8, 3)).astype(np.float32)
    return x, np.argmax(x @ rule, axis=1).astype(np.int64), rule


def _config(workspace):
    return {"distillation": {"train": {
                "epoch": 2, "progress_bar": False,
                "optimizer": {"Adam": {"learning_rate": 0.02}},
                "criterion": {"KnowledgeDistillationLoss": {
                    "temperature": 2.0, "loss_types": ["CE", "KL"]}}}},
            "evaluation": {"accuracy": {"metric": {"topk": 1}}},
            "tuning": {"workspace": {"path": workspace, "tensorboard": True}}}


def _check(distiller, run_dir):
    assert distiller.summary.startswith("best student: top1 = ")
    assert "(teacher: 1.0000)" in distiller.summary
    assert "next: distiller.report()" in distiller.summary
    figures = distiller.report(latency_batch=8, repeats=2, echo=False)
    assert figures["teacher"]["top1"] == 1.0
    assert figures["student"]["top1"] == pytest.approx(distiller.best_score)
    assert 0.0 <= figures["agreement"] <= 1.0 and figures["mean_kl_teacher_student"] >= 0
    assert figures["teacher"]["parameters"] == 8 * 3 + 3
    assert figures["student"]["parameters"] == 8 * 16 + 16 + 16 * 3 + 3
    assert figures["student"]["latency_batch_8_s"] > 0
    for name in ("training_curves.png", "reliability.png"):
        with open(os.path.join(run_dir, name), "rb") as handle:
            assert handle.read(8) == PNG_MAGIC
    with open(os.path.join(run_dir, "report.json"), encoding="utf-8") as handle:
        assert json.load(handle)["agreement"] == figures["agreement"]
    (events,) = os.listdir(os.path.join(run_dir, "tensorboard"))
    assert events.startswith("events.out.tfevents.")


def test_torch_report_after_fit(workspace):
    torch = pytest.importorskip("torch")
    x, y, rule = _data(192, 0)
    ex, ey, _ = _data(96, 1)
    teacher = torch.nn.Linear(8, 3)
    with torch.no_grad():
        teacher.weight.copy_(torch.from_numpy(rule.T * 3))
        teacher.bias.zero_()
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    distiller = Distillation(_config(workspace))
    distiller.student_model, distiller.teacher_model = student, teacher
    data = torch.utils.data
    distiller.train_dataloader = data.DataLoader(
        data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=32)
    distiller.eval_dataloader = data.DataLoader(
        data.TensorDataset(torch.from_numpy(ex), torch.from_numpy(ey)), batch_size=32)
    distiller.fit()
    _check(distiller, distiller.workspace.path)


def test_report_without_matplotlib_says_how_to_get_plots(workspace, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    from neural_distill.report import plots

    x, y, _ = _data(64, 0)
    data = torch.utils.data
    loader = data.DataLoader(data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                             batch_size=32)
    distiller = Distillation(_config(workspace))
    distiller.student_model, distiller.teacher_model = torch.nn.Linear(8, 3), torch.nn.Linear(8, 3)
    distiller.train_dataloader = distiller.eval_dataloader = loader
    distiller.fit()
    monkeypatch.setattr(plots, "available", lambda: False)
    figures = distiller.report(latency_batch=4, repeats=1)
    assert "pip install 'neural_distill[report]'" in capsys.readouterr().out
    with open(os.path.join(distiller.workspace.path, "report.html"), encoding="utf-8") as handle:
        page = handle.read()
    assert "pip install &#x27;neural_distill[report]&#x27;" in page and "<img" not in page
    assert not os.path.exists(os.path.join(distiller.workspace.path, "reliability.png"))
    assert 0.0 <= figures["agreement"] <= 1.0


def test_keras_report_after_fit(workspace):
    tf = pytest.importorskip("tensorflow")
    import keras
    from tensorflow.core.util import event_pb2

    x, y, rule = _data(192, 0)
    ex, ey, _ = _data(96, 1)
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    teacher.set_weights([rule * 3, np.zeros(3, np.float32)])
    keras.utils.set_random_seed(0)
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(3)])
    distiller = Distillation(_config(workspace))
    distiller.student_model, distiller.teacher_model = student, teacher
    distiller.train_dataloader = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    distiller.eval_dataloader = tf.data.Dataset.from_tensor_slices((ex, ey)).batch(32)
    distiller.fit()
    run_dir = distiller.workspace.path
    _check(distiller, run_dir)
    folder = os.path.join(run_dir, "tensorboard")
    records = tf.data.TFRecordDataset(os.path.join(folder, os.listdir(folder)[0]))
    tags = {(e.step, v.tag) for e in map(event_pb2.Event.FromString,
                                         (r.numpy() for r in records)) for v in e.summary.value}
    assert {(1, "loss"), (1, "top1"), (2, "loss"), (2, "top1")} <= tags


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_report_data_without_labels_or_batches_is_a_clear_error(framework):
    from neural_distill.errors import DataError
    x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    if framework == "torch":
        import torch
        from neural_distill.adapters.torch.report import outputs_and_labels
        model = torch.nn.Linear(8, 3)
    else:
        import keras
        from neural_distill.adapters.tensorflow.report import outputs_and_labels
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    logits, labels = outputs_and_labels(model, [(x[:4], np.arange(4) % 3), (x[4:], [1, 2])],
                                        "student")
    assert logits.shape == (6, 3) and labels.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(DataError, match="needs labelled batches"):
        outputs_and_labels(model, [(x,)], "student")
    with pytest.raises(DataError, match="no batches"):
        outputs_and_labels(model, [], "student")
