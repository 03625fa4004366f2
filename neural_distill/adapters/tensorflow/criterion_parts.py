"""What every TensorFlow criterion shares (``adapters/tensorflow/criteria.py`` and
``logit_criteria.py``): weights I/O, the shape check of logits, the student's cross-entropy."""

import h5py
import numpy as np
import tensorflow as tf

from neural_distill.errors import ModelError
from neural_distill.adapters.tensorflow import losses
from neural_distill.adapters.tensorflow.outputs import logits_of, static_shape


def check_same_shape(student, teacher):
    """Shapes that are known and differ are a user error, reported before any math."""
    s, t = static_shape(student), static_shape(teacher)
    differ = len(s) != len(t) or any(a is not None and b is not None and a != b
                                     for a, b in zip(s, t))
    if differ:
        raise ModelError(
            f"student output shape {s} and teacher output shape {t} disagree: logit "
            f"distillation needs both models to predict the same classes. Check the models' "
            f"last layers (or pass the right teacher_output to on_after_compute_loss).")


class CriterionBase:
    """What every TensorFlow criterion shares: weights I/O and the trainable variables."""

    framework = "tensorflow"
    needs_teacher = True

    def save_weights(self, path):
        """The trainable state (matchers) as HDF5, one dataset per variable path."""
        with h5py.File(path, "w") as handle:
            for variable in self.trainable_variables:
                handle.create_dataset(variable.path, data=np.asarray(variable.numpy()))

    def load_weights(self, path):
        with h5py.File(path, "r") as handle:
            for variable in self.trainable_variables:
                if variable.path not in handle:
                    raise ModelError(f"{path}: no weights for criterion variable "
                                     f"'{variable.path}' (it holds {sorted(handle)})")
                variable.assign(handle[variable.path][()])


def label_cross_entropy(student_output, labels):
    """The student's own loss of the logit and feature criteria: cross-entropy of its logits
    with class labels; None without labels."""
    if labels is None:
        return None
    return losses.label_cross_entropy(logits_of(student_output, "student output"),
                                      tf.convert_to_tensor(labels))
