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
