"""The framework-neutral part of the logit criteria: KnowledgeDistillationLoss (its settings,
JSD's beta, the vocabulary-mismatch rule) and the criteria weighed like it but built from the
catalog alone, DecoupledKnowledgeDistillationLoss and DISTLoss.

``wants_labels`` is how a criterion asks for the batch's labels: the distillation step
(``run/step.py``) passes them to its ``distillation_loss`` as ``labels=``, and to no other.
"""

import functools
import warnings

from neural_distill.criterion.balancer import LossBalancer
from neural_distill.criterion.base import CatalogCriterion
from neural_distill.criterion.specs import validated_criterion_args
from neural_distill.language.vocab import mismatch_error, truncation_warning


class KnowledgeDistillationSpec(CatalogCriterion):
    """Logit distillation: ``w0 * student_loss + w1 * D(z_s, z_t)`` (docs/criteria.md).

    Args:
        temperature: softens both distributions; the KL and CE terms are scaled by T^2 so
            their gradients keep the same magnitude as T changes.
        loss_types: ``[student_type, kd_type]``: student_type in {CE, MSE} compares the student
            with the labels, kd_type in {CE, KL, MSE} compares it with the teacher.
        loss_weights: ``[w0, w1]``.
        from_logits: False when the models output probabilities (temperature is then applied
            as p^(1/T) renormalised).
        vocab_mismatch: ``error`` or ``truncate`` when the logits' last dimensions differ
            (``language/vocab.py``).

    Over a sequence axis ([batch, seq, classes]) the term is taken over the batch's valid
    tokens only (``language/tokens.py``): the step passes ``tokens=``.
    """

    yaml_name = "KnowledgeDistillationLoss"
    per_token = True

    def _configure(self, temperature, loss_types, loss_weights, from_logits,
                   logit_standardization=None, beta=None, vocab_mismatch=None):
        args = validated_criterion_args(
            self.yaml_name, type(self).__name__, temperature=temperature,
            loss_types=loss_types, loss_weights=loss_weights, from_logits=from_logits,
            logit_standardization=logit_standardization, beta=beta,
            vocab_mismatch=vocab_mismatch)
        self.temperature = float(args["temperature"])
        self.loss_types = list(args["loss_types"])
        self.loss_weights = [float(w) for w in args["loss_weights"]]
        self.from_logits = args["from_logits"]
        self.logit_standardization = args["logit_standardization"]
        self.beta = float(args["beta"])
        self.vocab_mismatch = args["vocab_mismatch"]
        self._vocab_warned = False

    def _vocabulary_sizes(self, student_shape, teacher_shape, outside_mass):
        """Raise for ``error``; for ``truncate`` warn once, ``outside_mass()`` giving the
        teacher's probability outside the common ids (read only for the warning)."""
        student_size, teacher_size = student_shape[-1], teacher_shape[-1]
        if self.vocab_mismatch != "truncate":
            raise mismatch_error(self.yaml_name, student_shape, teacher_shape)
        if not self._vocab_warned:
            self._vocab_warned = True
            warnings.warn(truncation_warning(self.yaml_name, student_size, teacher_size,
                                             outside_mass()), stacklevel=4)

    def _kd_function(self, kd_losses):
        """The backend's function of ``loss_types[1]``, JSD's ``beta`` bound."""
        fn = kd_losses[self.loss_types[1]]
        if self.loss_types[1] == "JSD":
            return functools.partial(fn, beta=self.beta)
        return fn

    @property
    def loss_balancer(self):
        """w0 * student_loss + w1 * distillation_loss; without a student loss, w1 * kd alone."""
        return LossBalancer(self.loss_weights[0], self.loss_weights[1], owner=type(self).__name__)

    def _settings(self):
        text = (f"temperature={self.temperature}, loss_types={self.loss_types}, "
                f"loss_weights={self.loss_weights}, from_logits={self.from_logits}")
        if self.logit_standardization:
            text += ", logit_standardization=True"
        if self.loss_types[1] == "JSD":
            text += f", beta={self.beta}"
        return text + f", vocab_mismatch={self.vocab_mismatch!r}"


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
