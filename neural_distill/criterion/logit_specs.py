"""The framework-neutral part of the logit criteria weighed like KnowledgeDistillationLoss but
built from the catalog alone: DecoupledKnowledgeDistillationLoss and DISTLoss.

``wants_labels`` is how a criterion asks for the batch's labels: the distillation step
(``run/step.py``) passes them to its ``distillation_loss`` as ``labels=``, and to no other.
"""

import warnings

from neural_distill.criterion.balancer import LossBalancer
from neural_distill.criterion.base import CatalogCriterion


class WeightedLogitCriterion(CatalogCriterion):
    """A catalog criterion of logits with ``loss_weights = [w_student, w_distill]`` and the
    student's cross-entropy as its own loss (DKD, DIST). ``wants_labels``: the distillation
    step passes the batch's labels to ``distillation_loss`` (DKD's target class)."""

    wants_labels = False

    @property
    def loss_balancer(self):
        """w0 * student_loss + w1 * distillation_loss; without a student loss, w1 * kd alone."""
        return LossBalancer(self.loss_weights[0], self.loss_weights[1], owner=type(self).__name__)


class DecoupledKDSpec(WeightedLogitCriterion):
    """DKD: the backends give ``distillation_loss(student_output, teacher_output, labels)``.

    Without labels (a user's loop that does not pass ``labels=``) the teacher's top-1 class
    stands in for the true one, with one warning per criterion.
    """

    yaml_name = "DecoupledKnowledgeDistillationLoss"
    wants_labels = True
    _warned_no_labels = False

    def _warn_no_labels_once(self):
        if not self._warned_no_labels:
            object.__setattr__(self, "_warned_no_labels", True)
            warnings.warn("DecoupledKnowledgeDistillationLoss: no labels reached the criterion, "
                          "so the teacher's top-1 class is used as the target class. Pass "
                          "labels=... to on_after_compute_loss for the true class.",
                          stacklevel=4)
