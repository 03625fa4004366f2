"""TensorFlow side of ``neural_distill.checks``: the checks that need tensors or variables."""

import math

import keras
import numpy as np
import tensorflow as tf

from ... import checks
from ...errors import DataError, ModelError
from .outputs import call_model, logits_of, static_shape, to_tensor


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
def peek(loader):
    """The first batch (a tf.data pipeline draws its shuffle seeds per iterator)."""
    return next(iter(loader))


def first_outputs(distiller, batch, inputs):
    """(student logits, [teacher logits]) as NumPy for the first batch, training=False."""
    inputs = to_tensor(inputs)
    expected = getattr(distiller._student, "inputs", None)
    if isinstance(batch, (tuple, list)) and len(batch) > 2 and expected is not None and len(
            expected) != len(batch) - 1:
        # Keras only warns when a model gets more inputs than it has, and uses the first.
        _batch_structure_error(batch, f"the student has {len(expected)} input(s)")
    try:
        student_output = call_model(distiller._student, inputs, training=False)
    except (TypeError, ValueError) as exc:
        _batch_structure_error(batch, exc)
        raise
    teacher_outputs = [distiller._adapter.teacher_forward(t, inputs)
                       for t in distiller._teachers]
    if not hasattr(distiller.criterion, "from_logits"):
        return None  # feature criteria: logits need not match
    as_numpy = distiller._adapter.to_numpy
    return (np.asarray(as_numpy(logits_of(student_output, "student output")), np.float32),
            [np.asarray(as_numpy(logits_of(t, "teacher output")), np.float32)
             for t in teacher_outputs])


def _batch_structure_error(batch, exc):
    cause = exc if isinstance(exc, BaseException) else None
    if isinstance(batch, dict):
        raise DataError(
            f"train_dataloader: the student could not be called with the batch's entries "
            f"{sorted(k for k in batch if k not in ('labels', 'label'))} as its inputs ({exc}). "
            f"Dict batches give their 'labels' (or 'label') entry as labels and pass the rest "
            f"to the model: rename the label key to 'labels', or yield (inputs, labels) "
            f"tuples.") from cause
    if isinstance(batch, (tuple, list)) and len(batch) > 2:
        raise DataError(
            f"train_dataloader: batches have {len(batch)} items, read as {len(batch) - 1} "
            f"inputs and the labels (last item), but the student cannot take {len(batch) - 1} "
            f"inputs ({exc}). Yield (inputs, labels) pairs, or a dict with a 'labels' "
            f"key.") from cause


def dtype_problem(distiller, exc):
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

    Eagerly the loss is read at once. Traced, ``observe`` adds two ops to the step: the first
    non-finite loss is written to a variable (kept there afterwards), which ``poll`` reads at
    each ``on_step_end``: one small read of a variable the step has just finished writing.
    """

    def __init__(self):
        with tf.init_scope():  # created eagerly even when the first hook runs in a trace
            self.value = tf.Variable(0.0, trainable=False, name="nd_first_non_finite_loss")

    def observe(self, loss, where):
        loss = tf.cast(tf.reduce_sum(loss), tf.float32)
        if tf.executing_eagerly():
            value = float(loss.numpy())
            return None if math.isfinite(value) else (value, where)
        first = tf.logical_and(tf.math.is_finite(self.value),
                               tf.logical_not(tf.math.is_finite(loss)))
        self.value.assign(tf.where(first, loss, self.value))
        return None

    def poll(self, where, wait=False):
        with tf.init_scope():
            value = float(self.value.numpy())
            if math.isfinite(value):
                return None
            self.value.assign(0.0)
        return value, where
