"""Optimizers and learning-rate schedules from the ``distillation.train`` config section.

The same settings mean the same thing as in the PyTorch loop: ``weight_decay`` of SGD and Adam
is L2 added to the gradient (coupled, as ``torch.optim.SGD``/``Adam`` do), while AdamW decays
the weights directly (decoupled, Keras' and PyTorch's AdamW alike). Keras' own ``weight_decay``
argument is decoupled for every optimizer, so SGD and Adam get theirs from the loop instead.
"""

import keras

from neural_distill.run.loop_common import LearningRateSchedule as SharedSchedule


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

    The learning rate is a variable of the optimizer, so a compiled step reads the new value
    without being traced again.
    """

    def __init__(self, schedule_config, optimizer, total_epochs):
        self.schedule = SharedSchedule(schedule_config, total_epochs)
        self.optimizer = optimizer
        self.base_lr = _read(optimizer.learning_rate)

    def step(self, progress):
        if self.schedule.constant:
            return
        self.optimizer.learning_rate = self.schedule.learning_rate(self.base_lr, progress)

    @property
    def current(self):
        return _read(self.optimizer.learning_rate)


def _read(value):
    """A learning rate as a float; under a tf.distribute strategy it is a mirrored variable,
    which ``float()`` does not take."""
    return float(keras.ops.convert_to_numpy(value))
