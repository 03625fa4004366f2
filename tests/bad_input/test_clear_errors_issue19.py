"""Clear errors and accepted inputs of issue 19 (PyTorch)."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from neural_distill import Distillation  # noqa: E402
from neural_distill.errors import ConfigError, DataError, ModelError  # noqa: E402

SELF_KD = {"SelfKnowledgeDistillationLoss": {"layer_mappings": [[["aux_logits", "logits"]]],
                                             "temperature": 2.0}}


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.block1 = nn.Linear(8, 16)
        self.aux = nn.Linear(16, 3)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        a = torch.relu(self.block1(x))
        return {"logits": self.head(a), "aux_logits": self.aux(a)}


def _data(n=32, classes=3, label_offset=0):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator) + label_offset
    return [(x[i:i + 8], y[i:i + 8]) for i in range(0, n, 8)]


def _config(workspace, criterion=None, **train):
    settings = {"epoch": 1, "progress_bar": False, **train}
    if criterion:
        settings["criterion"] = criterion
    return {"distillation": {"train": settings}, "tuning": {"workspace": {"path": workspace}}}


# ------------------------------------------------------------------ self-distillation
def test_self_distillation_accepts_the_student_as_its_teacher_and_runs_no_teacher(workspace):
    distiller = Distillation(_config(workspace, SELF_KD))
    model = Heads()
    distiller.student_model = model
    distiller.teacher_model = model  # as INC 1.x's own self-distillation test does
    distiller.train_dataloader = [(x, y) for x, y in _data()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    distiller.fit()
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # trained
    assert distiller.teachers == [model]  # as assigned, after the run


def test_a_criterion_that_runs_a_teacher_still_refuses_the_student_as_teacher(workspace):
    distiller = Distillation(_config(workspace))
    model = nn.Linear(8, 3)
    distiller.student_model = model
    with pytest.raises(ModelError, match="same object"):
        distiller.teacher_model = model
    distiller = Distillation(_config(workspace, SELF_KD))
    distiller.student_model = model = Heads()
    distiller.teacher_model = model
    distiller.criterion = distiller.adapter.build_criterion(
        "KnowledgeDistillationLoss", {"temperature": 1.0, "loss_types": ["CE", "CE"],
                                      "loss_weights": [0.5, 0.5]})
    distiller.train_dataloader = _data()
    with pytest.raises(ModelError, match="same object"):
        distiller.fit()


# ------------------------------------------------------------------ best-student copy
class KeepsLastOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 3)
        self.last = None

    def forward(self, x):
        self.last = self.linear(x)  # a non-leaf tensor, kept on the module
        return self.last


def test_the_best_student_is_copied_although_it_keeps_autograd_state(workspace):
    distiller = Distillation(_config(workspace))
    distiller.student_model = KeepsLastOutput()
    distiller.teacher_model = nn.Linear(8, 3)
    distiller.train_dataloader = _data()
    distiller.eval_func = lambda model: 0.5  # never calls the model: its last forward had grad
    best = distiller.fit()
    assert best.last is not None and best.last.grad_fn is None
    assert torch.equal(best.linear.weight, distiller.student_model.linear.weight)


# ------------------------------------------------------------------ config spellings
@pytest.mark.parametrize("train, suggestion", [
    ({"optimizer": {"Adam": {"lr": 0.1}}}, "learning_rate"),
    ({"epochs": 3}, "'epoch'"),
    ({"optimizer": {"SGD": {"learning_rate": 0.1, "wd": 0.1}}}, "weight_decay"),
    ({"optimizer": {"AdamW": {"weightDecay": 0.1}}}, "weight_decay"),
])
def test_spellings_of_other_frameworks_get_our_key_suggested(train, suggestion):
    with pytest.raises(ConfigError, match=f"Did you mean '?{suggestion}"):
        Distillation({"distillation": {"train": train}})


# ------------------------------------------------------------------ disk full, read-only
@pytest.mark.parametrize("probe, expected", [
    ("full", "No space left on device.*Free some disk space"),
    ("read-only", "Read-only file system.*Choose a folder you can write to"),
])
def test_a_failed_best_student_write_is_a_clear_error(workspace, monkeypatch, probe, expected):
    import errno

    from neural_distill.run import checkpoints
    from neural_distill.adapters.torch.adapter import ADAPTER

    def zip_writer_fails(model, path):  # what torch.save raises when the write fails
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(ADAPTER, "save_weights", zip_writer_fails)
    monkeypatch.setattr(checkpoints, "_probe_folder", lambda folder: {
        "full": errno.ENOSPC, "read-only": errno.EROFS}[probe])
    distiller = Distillation(_config(workspace, **{"epoch": 1}))
    distiller.student_model = nn.Linear(8, 3)
    distiller.teacher_model = nn.Linear(8, 3)
    distiller.train_dataloader = _data()
    distiller.eval_func = lambda model: 0.5
    with pytest.raises(ConfigError, match=expected) as info:
        distiller.fit()
    assert "best_student.pt" in str(info.value)


def test_the_folder_probe_names_a_folder_without_space_or_write_access(tmp_path, monkeypatch):
    import errno
    from types import SimpleNamespace

    from neural_distill.run import checkpoints

    stats = SimpleNamespace(f_flag=0, f_bavail=0, f_frsize=4096)
    monkeypatch.setattr(checkpoints.os, "statvfs", lambda folder: stats)
    assert checkpoints._probe_folder(str(tmp_path)) == errno.ENOSPC
    stats.f_flag = checkpoints.os.ST_RDONLY
    assert checkpoints._probe_folder(str(tmp_path)) == errno.EROFS
    monkeypatch.setattr(checkpoints.os, "access", lambda folder, mode: False)
    assert checkpoints._probe_folder(str(tmp_path)) == errno.EACCES


# ------------------------------------------------------------------ evaluation labels
@pytest.mark.parametrize("metric", [{"topk": 1}, "Loss"])
def test_evaluation_labels_outside_the_students_classes_are_refused(workspace, metric):
    config = _config(workspace)
    config["evaluation"] = {"accuracy": {"metric": metric}}
    distiller = Distillation(config)
    distiller.student_model = nn.Linear(8, 3)
    distiller.teacher_model = nn.Linear(8, 3)
    distiller.train_dataloader = _data()
    distiller.eval_dataloader = _data(label_offset=2)  # labels 2..4 for 3 classes
    with pytest.raises(DataError, match="eval_dataloader: a label is [34], but the student "
                                        "predicts 3 classes"):
        distiller.fit()


# ------------------------------------------------------------------ third-party import noise
def test_known_import_notices_of_other_packages_are_dropped_and_others_kept(caplog):
    import logging

    import neural_distill.distillation  # noqa: F401 - installs the filters

    with caplog.at_level(logging.DEBUG):
        logging.getLogger("torchao").warning("Failed to load /x/_C_mxfp8.so: Could not load")
        logging.getLogger("torch.utils._pytree").warning(
            "%s is an Enum subclass and is now natively supported by torch.compile", "<enum>")
        logging.getLogger("torchao").warning("something the user should see")
    assert [r.getMessage() for r in caplog.records] == ["something the user should see"]



# ------------------------------------------------------------------ CLI
def test_a_student_factory_returning_none_is_named_by_the_cli(tmp_path, capsys, monkeypatch):
    import sys

    import yaml

    from neural_distill import cli

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    threads = torch.get_num_threads()
    (tmp_path / "factories.py").write_text(
        "import torch\n\ndef student():\n    model = torch.nn.Linear(4, 3)\n\n"
        "def teacher():\n    return torch.nn.Linear(4, 3)\n", encoding="utf-8")
    config = tmp_path / "distill.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"student": "factories.py:student", "teacher": "factories.py:teacher"},
        "distillation": {"train": {"epoch": 1, "dataloader": {"batch_size": 4, "dataset": {
            "dummy": {"shape": [8, 4], "label": True}}}}},
        "tuning": {"workspace": {"path": "ws"}}}), encoding="utf-8")
    try:
        status = cli.main(["run", str(config), "--quiet"])
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("factories", None)
    error = capsys.readouterr().err
    assert status == 1, error
    assert "model.student: the factory factories.py:student returned None" in error
    assert "Set distiller.student_model" not in error
