"""Training the feature matchers in a Keras user loop that does not update them.

A Keras loop differentiates the variables it names (``tape.gradient(loss,
student.trainable_variables)``), so the matchers of an IntermediateLayersKnowledgeDistillationLoss
(the criterion's ``trainable_variables``) are not trained unless the user adds them. In eager
execution, ``on_after_compute_loss`` therefore also takes the gradient of the feature term with
respect to the matchers (a second, small tape: only the matchers' own backward) and keeps it;
the kept gradient is applied by an optimizer of their own (``distillation.train.optimizer``) at
the next hook, once the user's step is done. If the matchers changed in between, the user's
optimizer updates them: the kept gradient is dropped and their own optimizer is not used again,
so they are never updated twice for one step. Inside a compiled (``tf.function``) user step
nothing is added: add ``criterion.trainable_variables`` to what your step updates.
"""

import warnings

import numpy as np
import tensorflow as tf

from neural_distill.core.logging_utils import get_logger
from neural_distill.adapters.tensorflow.adapter import _stop_recording
from neural_distill.adapters.tensorflow.optim import build_optimizer


class MatcherOptimizer:
    def __init__(self, criterion, optimizer_config):
        self.criterion = criterion
        self.variables = list(criterion.trainable_variables)
        self.optimizer, _ = build_optimizer(optimizer_config)
        with tf.init_scope():
            self.optimizer.build(self.variables)
        self.handed_over = False
        self.steps = 0
        self._pending = None
        self._snapshot = None
        get_logger().info("feature matchers are trained by their own %s optimizer "
                          "(distillation.train.optimizer) unless your loop updates "
                          "criterion.trainable_variables", type(self.optimizer).__name__)

    def _values(self):
        return [np.array(v) for v in self.variables]

    def step_if_due(self):
        """Apply the kept gradient once; hand over if the user's optimizer moved the matchers."""
        if self._pending is None or self.handed_over:
            return
        grads, self._pending = self._pending, None
        if any(not np.array_equal(a, b) for a, b in zip(self._values(), self._snapshot)):
            self.handed_over = True
            get_logger().info("your loop updates the feature matchers: their own optimizer "
                              "is no longer used")
            return
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, self.variables) if g is not None])
        self.steps += 1

    def loss(self, student_output, teacher_output):
        """The criterion's feature term; keeps its gradient for the matchers."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            # A Keras variable is watched through the tf.Variable that backs it.
            tape.watch([getattr(v, "value", v) for v in self.variables])
            loss = self.criterion.distillation_loss(student_output, teacher_output)
        with _stop_recording():  # not part of the user's tape
            self._pending = tape.gradient(loss, self.variables)
        self._snapshot = self._values()
        return loss


def distillation_loss(trainer, criterion, student_output, teacher_output, optimizer_config):
    """``(loss, trainer)``, the backend's part of ``run.matcher_training.MatcherTraining``:
    ``criterion.distillation_loss``, with the matchers' gradient kept in eager execution by
    ``trainer`` (this criterion's MatcherOptimizer, created when first needed; None before)."""
    if not criterion.trainable_variables and not criterion.needs_preparation:
        return criterion.distillation_loss(student_output, teacher_output), trainer
    with warnings.catch_warnings():
        # Matchers created now are trained from the next step on (see the module doc).
        warnings.filterwarnings("ignore", message="feature matchers were created")
        if trainer is not None and trainer.handed_over:
            return criterion.distillation_loss(student_output, teacher_output), trainer
        if not tf.executing_eagerly() or not criterion.trainable_variables:
            return criterion.distillation_loss(student_output, teacher_output), trainer
        if trainer is None:
            trainer = MatcherOptimizer(criterion, optimizer_config)
        return trainer.loss(student_output, teacher_output), trainer
