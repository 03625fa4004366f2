"""TensorFlow DKD and DIST (``criterion.logit_specs``), weighed like KnowledgeDistillationLoss;
the registry finds them through ``criteria.py``."""

import tensorflow as tf

from neural_distill.criterion.logit_specs import DecoupledKDSpec, WeightedLogitCriterion
from neural_distill.adapters.tensorflow import losses
from neural_distill.adapters.tensorflow.criterion_parts import (
    CriterionBase, check_same_shape, label_cross_entropy)
from neural_distill.adapters.tensorflow.outputs import logits_of


def _same_logits(student_output, teacher_output):
    student = logits_of(student_output, "student output")
    teacher = logits_of(teacher_output, "teacher output")
    check_same_shape(student, teacher)
    return student, tf.stop_gradient(teacher)


class _WeightedLogitLoss(CriterionBase):
    """``student_loss`` (cross-entropy against the labels), ``__call__`` and the repr of the
    logit criteria of ``criterion.logit_specs``."""

    def student_loss(self, student_output, labels):
        return label_cross_entropy(student_output, labels)

    def __call__(self, student_output, teacher_output, labels=None):
        if self.wants_labels:
            distill = self.distillation_loss(student_output, teacher_output, labels)
        else:
            distill = self.distillation_loss(student_output, teacher_output)
        return self.combine(self.student_loss(student_output, labels), distill)

    def __repr__(self):
        return f"{type(self).__name__}({self._settings()})"


# _WeightedLogitLoss first: its student_loss must win over the protocol's default (None).
class TensorflowDecoupledKnowledgeDistillationLoss(_WeightedLogitLoss, DecoupledKDSpec):
    """DKD for Keras models: ``w0 * CE + w1 * (alpha * TCKD + beta * NCKD)``
    (docs/criteria.md); the target class comes from ``labels``."""

    def __init__(self, alpha=None, beta=None, temperature=None, loss_weights=None,
                 logit_standardization=None):
        self._configure_from_spec(alpha=alpha, beta=beta, temperature=temperature,
                                  loss_weights=loss_weights,
                                  logit_standardization=logit_standardization)

    def distillation_loss(self, student_output, teacher_output, labels=None):
        student, teacher = _same_logits(student_output, teacher_output)
        if self.logit_standardization:
            student, teacher = (losses.standardize_logits(student),
                                losses.standardize_logits(teacher))
        classes = teacher.shape[-1]
        top1 = tf.argmax(tf.reshape(teacher, [-1, classes]), axis=-1, output_type=tf.int32)
        if labels is None:
            self._warn_no_labels_once()
            target = top1
        else:
            labels = tf.convert_to_tensor(labels)
            if labels.dtype.is_floating and labels.shape[-1] == classes:  # soft labels
                target = tf.argmax(tf.reshape(labels, [-1, classes]), axis=-1,
                                   output_type=tf.int32)
            else:
                target = tf.reshape(tf.cast(labels, tf.int32), [-1])
            # Unlabeled samples (-100, e.g. a transfer set) take the teacher's top-1 class.
            target = tf.where(target == losses.IGNORE_INDEX, top1, target)
        return losses.decoupled_kd(student, teacher, target, self.alpha, self.beta,
                                   self.temperature)


class TensorflowDISTLoss(_WeightedLogitLoss, WeightedLogitCriterion):
    """DIST for Keras models: ``w0 * CE + w1 * T^2 * (beta * inter + gamma * intra)``
    (docs/criteria.md)."""

    yaml_name = "DISTLoss"

    def __init__(self, beta=None, gamma=None, temperature=None, loss_weights=None):
        self._configure_from_spec(beta=beta, gamma=gamma, temperature=temperature,
                                  loss_weights=loss_weights)

    def distillation_loss(self, student_output, teacher_output):
        student, teacher = _same_logits(student_output, teacher_output)
        return losses.dist_loss(student, teacher, self.beta, self.gamma, self.temperature)
