"""The fidelity gate (``neural-distill report RUN --require EXPR``): parsing, verdicts, exit
statuses from the command line in a subprocess, and the same from Python."""

import json
import os
import subprocess
import sys

import pytest

from neural_distill.report import gate
from neural_distill.report.gate import RequirementError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "acceptance"))
import cli_project  # noqa: E402

FIGURES = {"metric": "top1", "agreement": 0.9375, "mean_kl_teacher_student": 0.05,
           "min_class_agreement": 0.9,
           "teacher": {"top1": 1.0, "ece": 0.1, "parameters": 27, "bytes_on_disk": 1941,
                       "latency_batch_1_s": 2e-5, "latency_batch_64_s": 3e-5},
           "student": {"top1": 0.95, "ece": 0.08, "parameters": 195, "bytes_on_disk": 3017,
                       "latency_batch_1_s": 1.5e-5, "latency_batch_64_s": 4e-5}}


def _verdict(text):
    (requirement,) = gate.parse_all([text])
    gate.check_names([requirement], "top1", 64)
    return requirement.check(FIGURES)


@pytest.mark.parametrize("text, value, bound, passed", [
    ("agreement>=0.95", 0.9375, 0.95, False),
    ("agreement >= 0.9", 0.9375, 0.9, True),
    ("top1>=0.98*teacher.top1", 0.95, 0.98, False),
    ("top1>=0.95*teacher.top1", 0.95, 0.95, True),
    ("metric > teacher.metric * 0.9", 0.95, 0.9, True),
    ("latency_b1<=0.5*teacher.latency_b1", 0.015, 0.01, False),  # milliseconds, as printed
    ("teacher.parameters<1e3", 27, 1000, True),
    ("bytes<=2*teacher.bytes", 3017, 3882, True),
    ("kl<0.1", 0.05, 0.1, True),
    ("min_class_agreement>=0.95", 0.9, 0.95, False),
    ("student.latency_b64<teacher.latency_b64", 0.04, 0.03, False),
])
def test_requirements_give_value_bound_and_verdict(text, value, bound, passed):
    verdict = _verdict(text)
    assert verdict["value"] == pytest.approx(value)
    assert verdict["bound"] == pytest.approx(bound)
    assert verdict["passed"] is passed


@pytest.mark.parametrize("text, message", [
    ("agreement=>0.95", "cannot read it"),
    ("agreement>=", "cannot read it"),
    ("agreement>=0.9*", "cannot read it"),
    ("agrement>=0.95", "unknown figure 'agrement' (did you mean 'agreement'?)"),
    ("top5>=0.9", "unknown figure 'top5'"),
    ("teacher.agreement>=0.9", "no teacher.agreement"),
    ("model.top1>=0.9", "must be teacher or student"),
])
def test_malformed_or_unknown_requirements_are_named(text, message):
    with pytest.raises(RequirementError, match="") as info:
        _verdict(text)
    assert message in str(info.value) and repr(text) in str(info.value)


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(RequirementError) as info:
        _verdict("agrement>=0.95")
    for name in gate.figure_names("top1", 64):
        assert name in str(info.value)


def test_a_nan_figure_fails_its_requirement():
    figures = dict(FIGURES, agreement=float("nan"))
    (requirement,) = gate.parse_all(["agreement>=0"])
    assert requirement.check(figures)["passed"] is False


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One finished run of the command line's tiny experiment (trained in this process)."""
    pytest.importorskip("torch")
    import contextlib
    import io

    from neural_distill import cli

    folder = tmp_path_factory.mktemp("gate")
    config = cli_project.write(folder)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["run", str(config), "--threads", "1", "--quiet"]) == 0
    summary = dict(line.split(": ", 1) for line in out.getvalue().splitlines() if ": " in line)
    return summary["run folder"]


def _report(run_dir, *args):
    return subprocess.run([sys.executable, "-m", "neural_distill.cli", "report", run_dir,
                           "--repeats", "2", "--batch-size", "8", *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"))


def test_gate_passes_with_json(run_dir):
    result = _report(run_dir, "--require", "agreement>=0.5", "--require",
                     "top1>=0.5*teacher.top1", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["passed"] is True
    assert [v["requirement"] for v in document["requirements"]] == [
        "agreement>=0.5", "top1>=0.5*teacher.top1"]
    assert document["requirements"][1]["bound"] == pytest.approx(0.5 * document["teacher"]["top1"])
    assert document["agreement"] == document["requirements"][0]["value"]
    assert len(document["worst_classes"]) == 3  # the tiny experiment has 3 classes


def test_gate_fails_naming_the_figure(run_dir):
    result = _report(run_dir, "--require", "agreement>=0.5", "--require", "agreement>1.0",
                     "--require", "parameters<=0.5*teacher.parameters")
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if "requirement failed" in line]
    assert len(failed) == 2, result.stderr
    assert failed[0].startswith("neural-distill: requirement failed: agreement = ")
    assert "needs > 1 (agreement>1.0)" in failed[0]
    assert failed[1].startswith("neural-distill: requirement failed: parameters = 195, "
                                "needs <= 13.5")
    assert "Traceback" not in result.stderr
    assert "requirement: agreement = " in result.stdout  # the verdicts follow the table


@pytest.mark.parametrize("text, named", [("agrement>=0.95", "unknown figure 'agrement'"),
                                         ("agreement=>0.95", "cannot read it")])
def test_gate_rejects_a_typo_without_a_traceback(run_dir, text, named):
    result = _report(run_dir, "--require", text)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("neural-distill: error: --require ") and named in line
    assert "agreement" in line  # the valid names, or the expected form


def test_report_from_python_returns_the_verdicts(run_dir):
    from neural_distill.report import report

    figures = report(run_dir, require=["agreement>=0.5", "kl<0"], repeats=2, latency_batch=8,
                     echo=False)
    first, second = figures.verdicts
    assert first["passed"] and not second["passed"] and figures.passed is False
    assert second["value"] == figures["mean_kl_teacher_student"]
    assert figures.failures() == [gate.verdict_line(second, status=False)]
    with open(os.path.join(run_dir, "report.json"), encoding="utf-8") as handle:
        assert json.load(handle)["requirements"][1]["passed"] is False
    with pytest.raises(RequirementError, match="unknown figure 'kll'"):
        report(run_dir, require=["kll<0.1"], echo=False)
