"""Optimizers and learning-rate schedules from the ``distillation.train`` config section.

The same settings mean the same thing as in the PyTorch loop: ``weight_decay`` of SGD and Adam
is L2 added to the gradient (coupled, as ``torch.optim.SGD``/``Adam`` do), while AdamW decays
the weights directly (decoupled, Keras' and PyTorch's AdamW alike). Keras' own ``weight_decay``
argument is decoupled for every optimizer, so SGD and Adam get theirs from the loop instead.
"""

import math

import keras


def build_optimizer(optimizer_config):
    """``(keras optimizer, coupled weight decay)`` for a validated optimizer section."""
    (name, p), = optimizer_config.items()
    if name == "SGD":
        optimizer = keras.optimizers.SGD(learning_rate=p["learning_rate"],
                                         momentum=p["momentum"], nesterov=p["nesterov"])
        return optimizer, float(p["weight_decay"])
    common = dict(learning_rate=p["learning_rate"], beta_1=p["beta_1"], beta_2=p["beta_2"],
                  epsilon=p["epsilon"], amsgrad=p["amsgrad"])
    if name == "Adam":
        return keras.optimizers.Adam(**common), float(p["weight_decay"])
    return keras.optimizers.AdamW(weight_decay=p["weight_decay"], **common), 0.0


class LearningRateSchedule:
    """Sets the optimizer's learning rate from the training progress in epochs.

    Cosine decays per step (smooth even over few epochs) after an optional linear warm-up,
    down to ``min_learning_rate``; step multiplies by ``gamma`` every ``step_size`` epochs.
    The learning rate is a variable of the optimizer, so a compiled step reads the new value
    without being traced again.
    """

    def __init__(self, schedule_config, optimizer, total_epochs):
        (self.name, self.params), = schedule_config.items()
        self.optimizer = optimizer
        self.total_epochs = total_epochs
        self.base_lr = float(optimizer.learning_rate)

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
        base = self.base_lr
        self.optimizer.learning_rate = (floor + (base - floor) * factor if base > floor
                                        else base * factor)

    @property
    def current(self):
        return float(self.optimizer.learning_rate)
