"""Training feature matchers that were created after the user's optimizer.

A user loop of the reference documents' shape builds its optimizer from the student's
parameters, calls ``on_train_begin()`` without a dataloader, and then only
``on_after_compute_loss`` and ``on_epoch_end``. The feature matchers of an
IntermediateLayersKnowledgeDistillationLoss are then created inside the first
``on_after_compute_loss`` (their shapes come from that batch's features), after the optimizer
exists, so that optimizer never holds them.

Such matchers get an optimizer of their own, built from ``distillation.train.optimizer``. It
steps when the matchers hold a gradient that nobody has applied yet: at the next
``on_after_compute_loss`` (the previous step's ``backward()`` is done by then), or earlier at
``on_after_optimizer_step`` / ``on_step_end`` / ``on_epoch_end`` when the loop calls them; the
gradient is cleared after each step, so no backward pass is applied twice. If the user's own
optimizer updates the matchers (they added ``criterion.parameters()`` to it), that is seen
(the parameters changed though we did not step) and the private optimizer is dropped for good:
the matchers are then stepped exactly once per step, by the user's optimizer.

TensorFlow: a Keras loop differentiates only the variables it names, so the matchers are
never in it unless the user adds ``criterion.trainable_variables``, whenever they were
created. In eager execution their gradient is taken in ``on_after_compute_loss`` and applied
the same way (``adapters/tensorflow/matcher_optimizer.py``).
"""

from neural_distill.core.backends import backend_module



class MatcherTraining:
    """The distillation term of one criterion, making sure its matchers are trained (module
    doc). Lives as long as the experiment keeps the criterion: a second run of the same
    criterion keeps training the matchers with the same optimizer."""

    def __init__(self, framework, criterion, optimizer_config):
        self.framework = framework
        self.criterion = criterion
        self.optimizer_config = optimizer_config
        self.trainer = None  # the backend's MatcherOptimizer, once one is needed

    def _backend(self):
        return backend_module(self.framework, "matcher_optimizer")

    def distillation_loss(self, student_output, teacher_output):
        self.step_pending()
        loss, self.trainer = self._backend().distillation_loss(
            self.trainer, self.criterion, student_output, teacher_output, self.optimizer_config)
        return loss

    def step_pending(self):
        """Apply the matchers' pending gradient, if they have their own optimizer."""
        if self.trainer is not None:
            self.trainer.step_if_due()
