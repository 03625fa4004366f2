"""Training state kept in TensorFlow objects: the running losses, and reading checkpoints."""

import pickle

import tensorflow as tf

from neural_distill.adapters.base import LOSS_KEYS, loss_means
from neural_distill.adapters.tensorflow.distribute import replica_share


class RunningLosses:
    """Per-epoch loss sums in one TensorFlow variable.

    A variable, not Python floats, because ``on_after_compute_loss`` may run inside a user's
    ``tf.function`` (or our compiled step): the Python body runs once per trace, but the
    ``assign_add`` it records runs at every step. For the same reason it is zeroed in place at
    each epoch (a traced function keeps updating the variable it captured). One vector, so a
    step adds one op, not one per sum. Under a ``tf.distribute`` strategy every replica adds its
    terms and the replicas' additions are summed into every copy (aggregation SUM), inside the
    step that all replicas and workers run together: reading it never needs the other workers.
    """

    def __init__(self):
        with tf.init_scope():  # created eagerly even when the first hook runs in a trace
            self.sums = tf.Variable(tf.zeros([len(LOSS_KEYS)]), trainable=False,
                                    name="nd_running_losses",
                                    aggregation=tf.VariableAggregation.SUM)

    def add(self, loss, student_loss, kd_loss, inputs=None):
        # Assignments are not differentiated: no stop_gradient needed on the values.
        if student_loss is None:
            student_loss, has_student = tf.zeros([]), 0.0
        else:
            has_student = 1.0
        values = tf.stack([
            tf.ones([]), tf.cast(loss, tf.float32), tf.cast(student_loss, tf.float32),
            tf.cast(kd_loss, tf.float32), tf.constant(has_student)])
        share = replica_share(inputs)
        if share is not None:
            # Each replica adds its share of the step (they sum to one step, as on one
            # device); a replica without samples (NaN means) adds nothing.
            values = tf.where(share > 0, values * share, tf.zeros_like(values))
        self.sums.assign_add(values)

    def reset(self):
        with tf.init_scope():
            self.sums.assign(tf.zeros_like(self.sums))
        return self

    def to_state(self):
        with tf.init_scope():
            return dict(zip(LOSS_KEYS, (float(v) for v in self.sums.numpy())))

    def load_state(self, state):
        with tf.init_scope():
            self.sums.assign([state[key] for key in LOSS_KEYS])

    def read(self):
        return loss_means(self.to_state())


class ArraysOnly(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays only: a checkpoint file cannot run code."""

    _ALLOWED = {(module, name)
                for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                               "numpy.core.numeric", "numpy._core.numeric")
                for name in ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")
