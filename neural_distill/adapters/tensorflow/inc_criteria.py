"""``TensorflowKnowledgeDistillationLossExternal``: INC's Keras criterion for a loop that
computes the teacher's outputs itself (and for INC scripts that call its methods directly).

It is :class:`TensorflowKnowledgeDistillationLoss` with INC's defaults for this class: the
models output probabilities (a softmax last layer, so ``from_logits=False``) and the targets
may be one-hot rows, as Keras' ``CategoricalCrossentropy`` takes them. Model outputs and
targets may be Python lists or NumPy arrays. The math is the one of docs/criteria.md
(temperature applied as ``p^(1/T)`` renormalised, never ``p / T``).
"""

import tensorflow as tf

from neural_distill.adapters.tensorflow.criteria import TensorflowKnowledgeDistillationLoss
from neural_distill.adapters.tensorflow.outputs import is_tensor, to_tensor


def _as_float(tensor):
    return tensor if tensor is None or tensor.dtype.is_floating else tf.cast(tensor, tf.float32)


class TensorflowKnowledgeDistillationLossExternal(TensorflowKnowledgeDistillationLoss):
    """Logit distillation of probability outputs, teacher outputs given by the caller."""

    def __init__(self, temperature=None, loss_types=None, loss_weights=None,
                 student_model=None, teacher_model=None, from_logits=False):
        super().__init__(temperature=temperature, loss_types=loss_types,
                         loss_weights=loss_weights, from_logits=from_logits,
                         student_model=student_model, teacher_model=teacher_model)

    def _inc_tensor(self, value):
        if value is None or is_tensor(value):
            return value
        converted = to_tensor(value)
        return converted if is_tensor(converted) else tf.convert_to_tensor(value)

    def student_loss(self, student_output, labels):
        """Against class indices, or one-hot / soft rows of the output's shape."""
        student_output, labels = self._inc_tensor(student_output), self._inc_tensor(labels)
        if labels is not None and labels.shape == student_output.shape:
            labels = _as_float(labels)  # one-hot integers are a distribution, not indices
        return super().student_loss(student_output, labels)

    def distillation_loss(self, student_output, teacher_output):
        return super().distillation_loss(_as_float(self._inc_tensor(student_output)),
                                         _as_float(self._inc_tensor(teacher_output)))


__all__ = ["TensorflowKnowledgeDistillationLossExternal"]
