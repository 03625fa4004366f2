"""YAML: ``model.student: {prune_from_teacher: ...}`` with a ``pruning:`` section, through
``neural-distill run`` and ``report`` (sparsity and compressed size next to the teacher's)."""

import logging
import os
import sys
import textwrap

import pytest
import yaml

torch = pytest.importorskip("torch")

from neural_distill import cli  # noqa: E402
from neural_distill.config.loader import read_yaml  # noqa: E402
from neural_distill.errors import ConfigError  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "acceptance"))
import cli_project  # noqa: E402

TEACHER = textwrap.dedent('''
    def wide_teacher():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, 3))
''')


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads, level = torch.get_num_threads(), logging.getLogger("neural_distill").level
    path = cli_project.write(tmp_path, epochs=3)
    with open(tmp_path / "factories.py", "a", encoding="utf-8") as handle:
        handle.write(TEACHER)
    document = read_yaml(str(path))
    document["model"]["teacher"] = "factories.py:wide_teacher"
    document["model"]["student"] = {"prune_from_teacher": {"keep": 0.25,
                                                           "calibration_batches": 2}}
    document["pruning"] = {"target_sparsity": 0.5, "pattern": "unstructured",
                           "pruning_type": "magnitude", "pruning_scope": "local",
                           "end_step": 8}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    yield path
    torch.set_num_threads(threads)
    logging.getLogger("neural_distill").setLevel(level)


def test_run_and_report_a_sparse_student_cut_from_the_teacher(project, capsys):
    assert cli.main(["run", str(project), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    run_dir = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)[
        "run folder"]
    saved = torch.load(os.path.join(run_dir, "best_student.pt"))
    assert saved["0.weight"].shape == (16, 8) and saved["2.weight"].shape == (16, 16)
    assert float((saved["2.weight"] == 0).float().mean()) == pytest.approx(0.5, abs=0.05)
    assert float((saved["4.weight"] == 0).float().mean()) == 0.0  # head dense
    from neural_distill.report.build import report

    figures = report(run_dir, repeats=2, latency_batch=8, echo=False)
    assert figures["student"]["parameters"] < figures["teacher"]["parameters"] / 4
    assert figures["teacher"]["sparsity"] == 0.0
    assert figures["student"]["sparsity"] > 0.3
    assert figures["student"]["compressed_bytes"] < figures["student"]["bytes_on_disk"]
    assert "weight sparsity" in figures.table and "compressed" in figures.table


def test_prune_from_teacher_is_validated(tmp_path):
    from neural_distill import Distillation

    with pytest.raises(ConfigError, match="prune_from_teacher"):
        Distillation({"model": {"student": {"prune_from_teacher": {"keep": 2}}}})
