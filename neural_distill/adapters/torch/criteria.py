"""PyTorch distillation criteria (modules, so that trainable parts join optimizers)."""

import torch

from ...criterion.specs import validated_criterion_args
from ...errors import ModelError
from . import losses
from .outputs import logits_of


class PyTorchKnowledgeDistillationLoss(torch.nn.Module):
    """Logit distillation: ``w0 * student_loss + w1 * D(z_s, z_t)`` (DESIGN.md section 2).

    Args:
        temperature: softens both distributions; the KL and CE terms are scaled by T^2 so
            their gradients keep the same magnitude as T changes.
        loss_types: ``[student_type, kd_type]``: student_type in {CE, MSE} compares the student
            with the labels, kd_type in {CE, KL, MSE} compares it with the teacher.
        loss_weights: ``[w0, w1]``.
        from_logits: False when the models output probabilities.
    """

    yaml_name = "KnowledgeDistillationLoss"

    def __init__(self, temperature=1.0, loss_types=("CE", "CE"), loss_weights=(0.5, 0.5),
                 from_logits=True):
        super().__init__()
        args = validated_criterion_args(
            self.yaml_name, type(self).__name__, temperature=temperature,
            loss_types=loss_types, loss_weights=loss_weights, from_logits=from_logits)
        self.temperature = float(args["temperature"])
        self.loss_types = list(args["loss_types"])
        self.loss_weights = [float(w) for w in args["loss_weights"]]
        self.from_logits = args["from_logits"]
        self._student_fn = losses.STUDENT_LOSSES[self.loss_types[0]]
        self._kd_fn = losses.KD_LOSSES[self.loss_types[1]]

    def student_loss(self, student_output, labels):
        """The student's own loss against ``labels``; None when the batch has no labels."""
        if labels is None:
            return None
        logits = logits_of(student_output, "student output")
        if not labels.is_floating_point() and labels.dtype != torch.long:
            labels = labels.long()
        return self._student_fn(logits, labels, from_logits=self.from_logits)

    def distillation_loss(self, student_output, teacher_output):
        student = logits_of(student_output, "student output")
        teacher = logits_of(teacher_output, "teacher output")
        if student.shape != teacher.shape:
            raise ModelError(
                f"student output shape {tuple(student.shape)} and teacher output shape "
                f"{tuple(teacher.shape)} disagree: logit distillation needs both models to "
                f"predict the same classes. Check the models' last layers (or pass the right "
                f"teacher_output to on_after_compute_loss).")
        return self._kd_fn(student, teacher.detach(), self.temperature, self.from_logits)

    def combine(self, student_loss, distillation_loss):
        """w0 * student_loss + w1 * distillation_loss; without a student loss, w1 * kd alone."""
        weighted = self.loss_weights[1] * distillation_loss
        if student_loss is None:
            return weighted
        return self.loss_weights[0] * student_loss + weighted

    def forward(self, student_output, teacher_output, labels=None):
        return self.combine(self.student_loss(student_output, labels),
                            self.distillation_loss(student_output, teacher_output))

    def extra_repr(self):
        return (f"temperature={self.temperature}, loss_types={self.loss_types}, "
                f"loss_weights={self.loss_weights}, from_logits={self.from_logits}")


CRITERION_CLASSES = {PyTorchKnowledgeDistillationLoss.yaml_name: PyTorchKnowledgeDistillationLoss}


def build_criterion(name, args):
    return CRITERION_CLASSES[name](**args)
