"""How the student's own loss and the distillation term become the training loss.

A criterion (or the Trainer algorithm's ``kd_loss_fn``) computes its term only; the weighting
of the two losses lives here, in one object, so every path that makes a loss (the
``DistillationStep`` of a run, the ``Distillation`` Trainer algorithm, a criterion called on
its own) weighs them the same way::

    loss = student_weight * student_loss + distillation_weight * distillation_loss

A missing student loss (an unlabeled batch: None) leaves the weighted term alone; a missing term
(None: its weight is 0, so no teacher ran) leaves the weighted student loss alone; with
neither, the result is None. A weight of
exactly 1 is not multiplied in, so an unweighted sum is the same graph as before the balancer.
"""

import math

from neural_distill.errors import ConfigError


def _checked(value, owner, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise ConfigError(f"{owner}: expected {name} to be a number >= 0, got {value!r}")
    return float(value)


class LossBalancer:
    """``student_weight * student_loss + distillation_weight * distillation_loss``.

    Args:
        student_weight, distillation_weight: numbers >= 0.
        use_student_loss: False leaves the student's loss out even when one is given (a
            feature criterion without ``add_origin_loss``).
        owner: names the object whose weights these are, in error messages.
    """

    __slots__ = ("student_weight", "distillation_weight", "use_student_loss")

    def __init__(self, student_weight=1.0, distillation_weight=1.0, use_student_loss=True,
                 owner="LossBalancer"):
        self.student_weight = _checked(student_weight, owner, "the student loss weight")
        self.distillation_weight = _checked(distillation_weight, owner,
                                            "the distillation loss weight")
        self.use_student_loss = bool(use_student_loss)

    @property
    def needs_distillation(self):
        """False when the term has no weight: the caller may skip the teachers' forward."""
        return self.distillation_weight != 0.0

    def __call__(self, student_loss, distillation_loss):
        # Runs every step: the weighting is written out rather than split into helpers.
        if student_loss is not None and self.use_student_loss:
            w = self.student_weight
            student_loss = student_loss if w == 1.0 else w * student_loss
        else:
            student_loss = None
        if distillation_loss is None:
            return student_loss  # None with neither: the caller reports it (scalar_loss)
        w = self.distillation_weight
        term = distillation_loss if w == 1.0 else w * distillation_loss
        return term if student_loss is None else student_loss + term

    def __repr__(self):
        return (f"LossBalancer(student_weight={self.student_weight}, "
                f"distillation_weight={self.distillation_weight}, "
                f"use_student_loss={self.use_student_loss})")
