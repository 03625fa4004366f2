"""A user's own criterion: a DistillationCriterion subclass defining distillation_loss only
trains in the built-in loop (docs/criteria.md, "Your own criterion"); its term is the loss."""

import numpy as np
import torch

from neural_distill import Distillation
from neural_distill.criterion import DistillationCriterion
from tests.helpers import make_blobs


class MeanSquaredLogits(DistillationCriterion):
    def __init__(self):
        self.calls = 0

    def distillation_loss(self, student_output, teacher_output):
        self.calls += 1
        return ((student_output - teacher_output.detach()) ** 2).mean()


def test_a_subclass_with_distillation_loss_only_trains_toward_the_teacher(workspace):
    torch.manual_seed(0)
    x, y = make_blobs(n=64)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=16)
    student, teacher = torch.nn.Linear(x.shape[1], 3), torch.nn.Linear(x.shape[1], 3)
    distance = lambda: float(((student(torch.tensor(x)) - teacher(torch.tensor(x))) ** 2).mean())
    before = distance()
    distiller = Distillation({"distillation": {"train": {
        "epoch": 3, "progress_bar": False, "optimizer": {"SGD": {"learning_rate": 0.1}}}},
        "tuning": {"workspace": {"path": workspace}}})
    distiller.student_model = student
    distiller.teacher_model = teacher
    distiller.train_dataloader = loader
    distiller.criterion = criterion = MeanSquaredLogits()
    distiller.fit()
    assert criterion.calls == 12  # 4 batches x 3 epochs: one term per step, no extra pass
    assert distance() < 0.5 * before
    # No student loss by default: the recorded loss is the term alone.
    record = distiller.history[-1]
    assert np.isclose(record["loss"], record["distillation_loss"])
