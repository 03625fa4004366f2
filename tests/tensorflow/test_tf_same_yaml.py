"""One experiment file runs with PyTorch models and with Keras models, changing only the
model objects; the CLI runs Keras factories; the Keras template validates."""

import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers import make_blobs  # noqa: E402
from neural_distill import Distillation  # noqa: E402
from tf_helpers import accuracy, mlp, train_plain  # noqa: E402

EXPERIMENT = """\
version: 1.0
model:
  name: same_file_both_frameworks
device: cpu
distillation:
  train:
    epoch: 3
    progress_bar: false
    optimizer:
      SGD:
        learning_rate: 0.1
        momentum: 0.9
    lr_schedule:
      cosine: {}
    criterion:
      KnowledgeDistillationLoss:
        temperature: 2.0
        loss_types: ['CE', 'KL']
        loss_weights: [0.5, 0.5]
    dataloader:
      batch_size: 32
      dataset:
        npz: {path: train.npz}
evaluation:
  accuracy:
    metric:
      topk: 1
    dataloader:
      batch_size: 96
      dataset:
        npz: {path: eval.npz}
tuning:
  random_seed: 3
  workspace:
    path: WORKSPACE
"""


@pytest.fixture
def experiment(tmp_path, workspace):
    x, y = make_blobs(n=192, seed=0)
    x_eval, y_eval = make_blobs(n=96, seed=5)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "eval.npz", x=x_eval, y=y_eval)
    path = tmp_path / "distill.yaml"
    path.write_text(EXPERIMENT.replace("WORKSPACE", workspace), encoding="utf-8")
    return str(path), (x, y, x_eval, y_eval)


def _run(path, student, teacher):
    distiller = Distillation(path)
    distiller.student_model = student
    distiller.teacher_model = teacher
    return distiller, distiller.fit()


def test_one_file_both_frameworks(experiment):
    torch = pytest.importorskip("torch")
    from helpers import accuracy as torch_accuracy
    from helpers import tiny_mlp, trained_teacher

    path, (x, y, x_eval, y_eval) = experiment
    torch_run, torch_best = _run(path, tiny_mlp(seed=0), trained_teacher(x, y))
    keras_run, keras_best = _run(path, mlp(seed=0), train_plain(mlp(hidden=32, seed=1), x, y))

    assert torch_run.framework == "torch" and keras_run.framework == "tensorflow"
    assert isinstance(torch_best, torch.nn.Module) and isinstance(keras_best, keras.Model)
    for run in (torch_run, keras_run):
        assert [r["epoch"] for r in run.history] == [1, 2, 3]
        assert [r["step"] for r in run.history] == [6, 12, 18]
        assert all({"loss", "student_loss", "distillation_loss", "top1"} <= r.keys()
                   for r in run.history)
        assert run.best_score > 0.9
    assert torch_accuracy(torch_best, x_eval, y_eval) == pytest.approx(torch_run.best_score)
    assert accuracy(keras_best, x_eval, y_eval) == pytest.approx(keras_run.best_score)
    assert os.path.isfile(os.path.join(torch_run.workspace.path, "best_student.pt"))
    assert os.path.isfile(os.path.join(keras_run.workspace.path, "best_student.weights.h5"))


FACTORIES = '''
import keras

def student():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(3)])

def teacher(hidden=32):
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(hidden, activation="relu"),
                             keras.layers.Dense(3)])
'''


def test_cli_runs_keras_factories(experiment, tmp_path, capsys):
    from neural_distill.cli import main

    path, data = experiment
    (tmp_path / "keras_models.py").write_text(FACTORIES, encoding="utf-8")
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(3)])
    train_plain(teacher, data[0], data[1])
    teacher.save_weights(str(tmp_path / "teacher.weights.h5"))
    text = open(path, encoding="utf-8").read().replace(
        "  name: same_file_both_frameworks\n",
        "  name: same_file_both_frameworks\n"
        "  student: keras_models.py:student\n"
        "  teacher:\n"
        "    factory: keras_models.py:teacher\n"
        "    kwargs: {hidden: 32}\n"
        "    checkpoint: teacher.weights.h5\n")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    assert main(["run", path]) == 0
    out = capsys.readouterr().out
    score = float(out.split("best student: ")[1].split(" = ")[1].split()[0])
    assert score > 0.9


def test_keras_template_validates(repo_root):
    from neural_distill.cli import main

    assert main(["validate", os.path.join(repo_root, "conf_templates", "kd_keras.yaml")]) == 0
