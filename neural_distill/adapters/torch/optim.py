"""Optimizers and learning-rate schedules from the ``distillation.train`` config section."""

import math

import torch


def build_optimizer(optimizer_config, parameters):
    (name, p), = optimizer_config.items()
    if name == "SGD":
        return torch.optim.SGD(parameters, lr=p["learning_rate"], momentum=p["momentum"],
                               nesterov=p["nesterov"], weight_decay=p["weight_decay"])
    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[name]
    return cls(parameters, lr=p["learning_rate"], betas=(p["beta_1"], p["beta_2"]),
               eps=p["epsilon"], weight_decay=p["weight_decay"], amsgrad=p["amsgrad"])


class LearningRateSchedule:
    """Sets each param group's learning rate from the training progress in epochs.

    Cosine decays per step (smooth even over few epochs) after an optional linear warm-up,
    down to ``min_learning_rate``; step multiplies by ``gamma`` every ``step_size`` epochs.
    Progress is given explicitly, so resuming or stopping early never desynchronises it.
    """

    def __init__(self, schedule_config, optimizer, total_epochs):
        (self.name, self.params), = schedule_config.items()
        self.optimizer = optimizer
        self.total_epochs = total_epochs
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

    def factor(self, progress):
        p = self.params
        if self.name == "step":
            return p["gamma"] ** int(progress // p["step_size"])
        if self.name == "cosine":
            warmup = p["warmup_epochs"]
            if warmup and progress < warmup:
                return max(progress, 1e-3) / warmup
            span = max(self.total_epochs - warmup, 1e-9)
            done = min(max(progress - warmup, 0.0) / span, 1.0)
            return 0.5 * (1 + math.cos(math.pi * done))
        return 1.0

    def step(self, progress):
        if self.name == "constant":
            return
        factor = self.factor(progress)
        floor = self.params.get("min_learning_rate", 0.0) if self.name == "cosine" else 0.0
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = floor + (base - floor) * factor if base > floor else base * factor

    @property
    def current(self):
        return self.optimizer.param_groups[0]["lr"]
