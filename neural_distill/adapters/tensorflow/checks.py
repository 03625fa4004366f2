"""TensorFlow side of ``neural_distill.run.checks``: the checks that need tensors or variables."""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from neural_distill.core import data_checks as checks
from neural_distill.errors import ModelError
from neural_distill.adapters.tensorflow.outputs import static_shape

# How a dict batch's entries reach the model, for core.data_checks.batch_structure_error.
DICT_INPUTS = ("entries", "as its inputs", "the rest to the model")


# ---------------------------------------------------------------------------- models
def check_keras_backend():
    """Before any Keras model is used: our Keras support runs on TensorFlow only."""
    name = keras.backend.backend()
    if name != "tensorflow":
        raise ModelError(
            f"Keras is running on the '{name}' backend, but neural_distill's Keras support "
            f"runs on TensorFlow. Set the environment variable KERAS_BACKEND=tensorflow before "
            f"importing keras.")


def shared_weights(student, teacher):
    """Paths of the student's variables that are also the teacher's (a shared layer)."""
    teacher_variables = {id(v) for v in teacher.weights}
    return [getattr(v, "path", v.name) for v in student.weights if id(v) in teacher_variables]


def check_model(model, role):
    """Nothing framework-specific to check on a Keras model before it runs."""


# ---------------------------------------------------------------------------- first batch
def check_batch(student, batch):
    """Keras only warns when a model gets more inputs than it has, and uses the first: a
    batch of more items than the student's inputs and the labels is refused here."""
    expected = getattr(student, "inputs", None)
    if isinstance(batch, (tuple, list)) and len(batch) > 2 and expected is not None and len(
            expected) != len(batch) - 1:
        checks.batch_structure_error(DICT_INPUTS, batch,
                                     f"the student has {len(expected)} input(s)")


def dtype_problem(student, teachers, exc):
    """Keras casts every layer's inputs to the layer's dtype: no dtype clash to explain."""
    return None


# ---------------------------------------------------------------------------- labels
def check_student_labels(logits, labels, loss_type):
    """Shape and dtype of the labels (static shapes: works inside a traced step)."""
    checks.check_label_shapes(static_shape(logits), static_shape(labels),
                              labels.dtype.is_floating, loss_type)


# ---------------------------------------------------------------------------- losses
def first_non_finite(arrays):
    """Index of the first floating array holding NaN/inf, or None."""
    for index, array in enumerate(arrays):
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return index
    return None


class LossFlag:
    """Finds the first non-finite loss, also inside a compiled step.

    ``observe`` adds a few scalar ops to the step: one float64 variable holds (first
    non-finite loss, the index of its step, steps seen). ``poll`` reads it every ``EVERY`` steps
    and at epoch end: a read costs about 20 us, a tenth of a tiny step, so reading it at every
    step would cost more than the 1% we allow. The step named in the error is still the exact
    first one (its index was recorded in the graph); only the stop comes up to ``EVERY - 1``
    steps later, which is harmless since the diverged weights are never returned.
    """

    EVERY = 8

    def __init__(self):
        with tf.init_scope():  # created eagerly even when the first hook runs in a trace
            self.state = tf.Variable([0.0, -1.0, 0.0], dtype=tf.float64, trainable=False,
                                     name="nd_first_non_finite_loss")
        self._polls = 0
        self._where = collections.deque(maxlen=4 * self.EVERY)

    def observe(self, loss, where):
        loss = tf.cast(tf.reduce_sum(loss), tf.float64)
        old = self.state
        first = tf.logical_and(tf.math.is_finite(old[0]), tf.logical_not(tf.math.is_finite(loss)))
        count = old[2]
        self.state.assign(tf.where(first, tf.stack([loss, count, count + 1.0]),
                                   tf.stack([old[0], old[1], count + 1.0])))
        return None

    def poll(self, where, wait=False):
        if not wait:  # one call per step (on_step_end); epoch and train end wait
            self._where.append((self._polls, where))
            self._polls += 1
            if self._polls % self.EVERY:
                return None
        with tf.init_scope():
            value, at, _ = (float(v) for v in self.state.numpy())
            if math.isfinite(value):
                return None
            self.state.assign([0.0, -1.0, 0.0])
        found = [w for index, w in self._where if index == int(at)]
        return value, found[0] if found else where
