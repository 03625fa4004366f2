"""`neural-distill validate` and `run` on the shipped MNIST-1D experiment (shortened)."""

import os
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("mnist1d")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "mnist1d")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "neural_distill.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO))


def _short_copy(tmp_path):
    """The shipped config with a tiny budget; factories point back at the example folder."""
    with open(os.path.join(EXAMPLE, "distill.yaml"), encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    model = config["model"]
    model["student"] = os.path.join(EXAMPLE, model["student"])
    model["teacher"]["factory"] = os.path.join(EXAMPLE, model["teacher"]["factory"])
    model["teacher"]["kwargs"] = {"seed": 0, "epochs": 2}
    train = config["distillation"]["train"]
    train["epoch"] = 1
    train["iteration"] = 20
    train["progress_bar"] = False
    dataset = train["dataloader"]["dataset"]["factory"]
    dataset["name"] = os.path.join(EXAMPLE, dataset["name"])
    dataset["kwargs"] = {"num_transfer": 200, "seed": 1000}
    evaluation = config["evaluation"]["accuracy"]["dataloader"]["dataset"]["factory"]
    evaluation["name"] = os.path.join(EXAMPLE, evaluation["name"])
    config["tuning"]["workspace"]["path"] = str(tmp_path / "ws")
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_validate_accepts_the_shipped_config():
    result = _cli("validate", os.path.join(EXAMPLE, "distill.yaml"), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_validate_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distillation:\n  train:\n    epoch: 0\n    optimzer: {}\n", encoding="utf-8")
    result = _cli("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{bad}: distillation.train.epoch: expected an int >= 1, got 0" in result.stderr
    assert "distillation.train.optimzer: unknown key. Did you mean 'optimizer'?" in result.stderr


def test_run_trains_from_factories(tmp_path):
    result = _cli("run", str(_short_copy(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert 0.1 < float(lines["best score"]) <= 1.0
    assert os.path.isfile(os.path.join(lines["workspace"], "best_student.pt"))


def test_run_reports_a_missing_factory(tmp_path):
    path = _short_copy(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["model"]["student"] = "no_such_module:build"
    path.write_text(yaml.safe_dump(config))
    result = _cli("run", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "model.student.factory: cannot import module 'no_such_module'" in result.stderr
