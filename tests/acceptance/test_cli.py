"""The command line: `validate`, `run`, `report`, every option, and its error messages.

End-to-end behaviour (exit codes, what reaches stderr, tracebacks) runs `python -m
neural_distill.cli` in a subprocess; the options are checked in-process on the tiny experiment
of ``cli_project.py`` so torch is imported once.
"""

import base64
import json
import logging
import os
import re
import subprocess
import sys

import pytest
import yaml

from neural_distill import __version__, cli

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cli_project  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "mnist1d")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "neural_distill.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"))


def _summary(stdout):
    return dict(line.split(": ", 1) for line in stdout.strip().splitlines() if ": " in line)


def _one_paragraph_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    text = result.stderr.strip()
    assert text.startswith("neural-distill: ") and "\n\n" not in text, result.stderr
    return text


@pytest.fixture
def tiny(tmp_path):
    return cli_project.write(tmp_path)


@pytest.fixture
def in_process(monkeypatch):
    """Runs ``cli.main`` here; leaves torch's thread count and our log level as found."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    logger = logging.getLogger("neural_distill")
    level = logger.level
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    yield cli.main
    torch.set_num_threads(threads)
    logger.setLevel(level)


def _run_folder(capsys, main, *args):
    assert main(["run", *args]) == 0
    out = capsys.readouterr().out
    return _summary(out)["run folder"], out


def _saved_config(run_dir):
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# ---------------------------------------------------------------------- end to end
def test_run_then_report(tiny, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    result = _cli("run", str(tiny), "--threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = _summary(result.stdout)
    match = re.fullmatch(r"top1 = ([0-9.]+) \(teacher: 1\.0000\)", summary["best student"])
    assert match and 0.5 < float(match.group(1)) <= 1.0
    run_dir = summary["run folder"]
    # A relative workspace path starts at the config file's folder.
    assert os.path.dirname(run_dir) == str(tmp_path / "runs")
    assert summary["next"] == f"neural-distill report {run_dir}"
    assert {"best_student.pt", "teacher.pt", "run_info.json"} <= set(summary["files"].split(", "))

    result = _cli("report", run_dir, "--repeats", "3", "--batch-size", "16", cwd=REPO)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert re.search(r"^\s+teacher\s+student$", table, re.M)
    for row in ("top1", "expected calibration error", "parameters", "bytes on disk",
                "latency, batch 1 (ms, median)", "latency, batch 16 (ms, median)",
                "top-1 agreement", "mean KL(teacher||student)"):
        assert re.search(rf"^{re.escape(row)}\s+\S", table, re.M), row
    teacher_top1 = re.search(r"^top1\s+(\S+)\s+(\S+)$", table, re.M).group(1)
    assert teacher_top1 == "1.0000"

    images = []
    for name in ("training_curves.png", "reliability.png"):
        with open(os.path.join(run_dir, name), "rb") as handle:
            data = handle.read()
        assert data[:8] == PNG_MAGIC
        import matplotlib.image

        assert matplotlib.image.imread(os.path.join(run_dir, name)).shape[2] in (3, 4)
        images.append(data)
    with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as handle:
        page = handle.read()
    for data in images:
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in page
    figures = re.findall(r"\s(\d[\d,]*\.?\d*(?:e-?\d+)?)(?=\s|$)", table)
    assert len(figures) >= 14
    for figure in figures:
        assert figure in page, figure


# ---------------------------------------------------------------------- options
def test_version():
    result = _cli("--version", cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == f"neural-distill {__version__}"


def test_help_is_plain_text():
    for args in ([], ["run"], ["validate"], ["report"], ["plan"]):
        result = _cli(*args, "--help", cwd=REPO)
        assert result.returncode == 0
        assert "`" not in result.stdout and "usage: neural-distill" in result.stdout


def test_set_overrides_a_key(tiny, capsys, in_process):
    run_dir, _ = _run_folder(capsys, in_process, str(tiny), "--set", "distillation.train.epoch=1",
                             "--set", "model.student.kwargs={width: 4}")
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as handle:
        assert [json.loads(line)["epoch"] for line in handle] == [1]
    assert _saved_config(run_dir)["model"]["student"]["kwargs"] == {"width": 4}


@pytest.mark.parametrize("setting, message", [
    ("distillation.train.epoch=0", "distillation.train.epoch: expected an int >= 1, got 0"),
    ("distillation.train.optimzer={}",
     "distillation.train.optimzer: unknown key. Did you mean 'optimizer'?"),
    ("distillation.train.epoch.x=1",
     "--set distillation.train.epoch.x: distillation.train.epoch is a value (3), not a section"),
    ("distillation.train.epoch", "--set distillation.train.epoch: expected KEY=VALUE"),
    ("tuning.random_seed=[1", "--set tuning.random_seed: the value '[1' is not valid YAML"),
])
def test_set_errors_name_the_key_path(tiny, tmp_path, setting, message):
    result = _cli("validate", str(tiny), "--set", setting, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_device(tiny, capsys, in_process):
    run_dir, _ = _run_folder(capsys, in_process, str(tiny), "--device", "auto",
                             "--set", "distillation.train.epoch=1")
    assert _saved_config(run_dir)["device"] == "auto"
    result = in_process(["validate", str(tiny), "--device", "tpu"])
    assert result == 1
    assert "device: expected one of cpu, gpu" in capsys.readouterr().err


def test_workspace_is_relative_to_the_current_folder(tiny, tmp_path, capsys, in_process):
    (tmp_path / "here").mkdir()
    os.chdir(tmp_path / "here")
    run_dir, _ = _run_folder(capsys, in_process, str(tiny), "--workspace", "out",
                             "--set", "distillation.train.epoch=1")
    assert os.path.dirname(run_dir) == str(tmp_path / "here" / "out")


def test_threads(tiny, tmp_path, capsys, in_process):
    import torch

    _run_folder(capsys, in_process, str(tiny), "--threads", "2",
                "--set", "distillation.train.epoch=1")
    assert torch.get_num_threads() == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"
    with pytest.raises(SystemExit):
        in_process(["run", str(tiny), "--threads", "0"])
    assert "--threads: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_seed(tiny, capsys, in_process):
    run_dir, _ = _run_folder(capsys, in_process, str(tiny), "--seed", "5",
                             "--set", "distillation.train.epoch=1")
    assert _saved_config(run_dir)["tuning"]["random_seed"] == 5


def test_quiet(tiny, capsys, in_process):
    run_dir, out = _run_folder(capsys, in_process, str(tiny), "--quiet",
                               "--set", "distillation.train.epoch=1")
    assert "epoch=1" not in capsys.readouterr().err
    assert out.startswith("best student: top1 = ")
    assert _saved_config(run_dir)["distillation"]["train"]["progress_bar"] is False


def test_resume_sets_the_workspace_key(tiny, capsys, in_process):
    run_dir, _ = _run_folder(capsys, in_process, str(tiny), "--resume",
                             "--set", "distillation.train.epoch=1")
    assert _saved_config(run_dir)["tuning"]["workspace"]["resume"] == "auto"


def test_tensorboard_key(tiny, capsys, in_process):
    run_dir, _ = _run_folder(capsys, in_process, str(tiny), "--set",
                             "tuning.workspace.tensorboard=true",
                             "--set", "distillation.train.epoch=1")
    (events,) = os.listdir(os.path.join(run_dir, "tensorboard"))
    assert events.startswith("events.out.tfevents.")


# ---------------------------------------------------------------------- validate
def test_validate_accepts_the_shipped_config():
    result = _cli("validate", os.path.join(EXAMPLE, "distill.yaml"), "--for-run", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert ": OK (everything `neural-distill run` needs)" in result.stdout


def test_validate_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distillation:\n  train:\n    epoch: 0\n    optimzer: {}\n", encoding="utf-8")
    result = _cli("validate", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{bad}: distillation.train.epoch: expected an int >= 1, got 0" in result.stderr
    assert "distillation.train.optimzer: unknown key. Did you mean 'optimizer'?" in result.stderr


def test_validate_does_not_import_factories(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\ndef build():\n    return None\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  student: evil.py:build\n  teacher: evil.py:build\n",
                      encoding="utf-8")
    result = _cli("validate", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    result = _cli("validate", str(config), "--import", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker.exists()


def test_validate_finds_missing_factory_files_and_modules(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  student: nowhere.py:build\n  teacher: no_such_module_x:build\n",
                      encoding="utf-8")
    result = _cli("validate", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert f"model.student.factory: file {tmp_path / 'nowhere.py'} not found" in result.stderr
    assert "model.teacher.factory: no module 'no_such_module_x' found" in result.stderr


def test_validate_for_run_checks_what_run_needs(tiny, tmp_path):
    document = yaml.safe_load(tiny.read_text())
    del document["model"]["student"]
    document["distillation"]["train"]["dataloader"] = {"dataset": {"npz": {"path": "gone.npz"}}}
    document["evaluation"]["accuracy"]["dataloader"]["transform"] = {"Resize": {"size": 4}}
    tiny.write_text(yaml.safe_dump(document))
    result = _cli("validate", str(tiny), cwd=tmp_path)  # fine for Python use
    assert result.returncode == 0, result.stderr
    result = _cli("validate", str(tiny), "--for-run", cwd=tmp_path)
    assert result.returncode == 1
    assert "model.student: missing; `neural-distill run` builds the student" in result.stderr
    assert "distillation.train.dataloader.dataset.npz.path: file" in result.stderr
    assert "evaluation.accuracy.dataloader.transform: building transforms from the config is " \
           "not supported" in result.stderr
    result = _cli("run", str(tiny), cwd=tmp_path)  # run refuses the same file before training
    assert "model.student: missing" in _one_paragraph_error(result)


# ---------------------------------------------------------------------- errors
def test_user_errors_are_one_paragraph_without_traceback(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n", encoding="utf-8")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model:\n  name: caf\xe9\n".encode("latin-1"))
    cases = [(("run", str(tmp_path / "missing.yaml")), "configuration file not found"),
             (("validate", str(bad_yaml)), "not valid YAML"),
             (("run", str(latin)), "UTF-8"),
             (("report", str(tmp_path)), "not a run folder")]
    for args, words in cases:
        text = _one_paragraph_error(_cli(*args, cwd=tmp_path))
        assert words in text, (args, text)


def test_run_reports_a_missing_factory(tiny, tmp_path):
    document = yaml.safe_load(tiny.read_text())
    document["model"]["student"] = "no_such_module:build"
    tiny.write_text(yaml.safe_dump(document))
    text = _one_paragraph_error(_cli("run", str(tiny), cwd=tmp_path))
    assert "model.student.factory: no module 'no_such_module' found" in text


def test_a_bug_gives_a_notice_and_the_traceback_only_with_debug(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom in the factory file')\n",
                                        encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  student: broken.py:build\n", encoding="utf-8")
    result = _cli("validate", str(config), "--import", cwd=tmp_path)
    assert result.returncode == 2
    text = _one_paragraph_error(result)
    assert "unexpected RuntimeError: boom in the factory file" in text and "--debug" in text
    result = _cli("validate", str(config), "--import", "--debug", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
