"""Optimizers and learning-rate schedules from the ``distillation.train`` config section."""

import torch

from neural_distill.run.loop_common import LearningRateSchedule as SharedSchedule


def build_optimizer(optimizer_config, parameters):
    (name, p), = optimizer_config.items()
    if name == "SGD":
        return torch.optim.SGD(parameters, lr=p["learning_rate"], momentum=p["momentum"],
                               nesterov=p["nesterov"], weight_decay=p["weight_decay"])
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[name]
    return cls(parameters, lr=p["learning_rate"], betas=(p["beta_1"], p["beta_2"]),
               eps=p["epsilon"], weight_decay=p["weight_decay"], amsgrad=p["amsgrad"])


class LearningRateSchedule:
    """Sets each param group's learning rate from the training progress in epochs."""

    def __init__(self, schedule_config, optimizer, total_epochs):
        self.schedule = SharedSchedule(schedule_config, total_epochs)
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

    def step(self, progress):
        if self.schedule.constant:
            return
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.schedule.learning_rate(base, progress)

    @property
    def current(self):
        return self.optimizer.param_groups[0]["lr"]
