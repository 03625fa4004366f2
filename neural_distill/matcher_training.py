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

import warnings

from .adapters import import_framework_module

_STATE = "_lazy_matcher_training"


def _backend(framework):
    module = {"torch": "neural_distill.adapters.torch.matcher_optimizer",
              "tensorflow": "neural_distill.adapters.tensorflow.matcher_optimizer"}[framework]
    return import_framework_module(module, framework)


def distillation_loss(distiller, student_output, teacher_output):
    """``criterion.distillation_loss``, making sure its matchers are trained (module doc)."""
    criterion = distiller.criterion
    step_pending(distiller)
    if distiller.framework == "tensorflow":
        if not getattr(criterion, "trainable_variables", None) and \
                not getattr(criterion, "needs_preparation", False):
            return criterion.distillation_loss(student_output, teacher_output)
        with warnings.catch_warnings():
            # Matchers created now are trained from the next step on (see the module doc).
            warnings.filterwarnings("ignore", message="feature matchers were created")
            return _backend("tensorflow").distillation_loss(distiller, student_output,
                                                            teacher_output, _STATE)
    if not getattr(criterion, "needs_preparation", False):
        return criterion.distillation_loss(student_output, teacher_output)
    backend = _backend("torch")
    with warnings.catch_warnings():
        # The criterion's own warning says the matchers will not be trained; here they are.
        warnings.filterwarnings("ignore", message="feature matchers were created")
        loss = criterion.distillation_loss(student_output, teacher_output)
    if not criterion.needs_preparation:
        setattr(distiller, _STATE, backend.MatcherOptimizer(
            criterion, distiller.conf.distillation.train.optimizer))
    return loss


def step_pending(distiller):
    """Apply the matchers' pending gradient, if they have their own optimizer."""
    trainer = getattr(distiller, _STATE, None)
    if trainer is None:
        return
    if trainer.criterion is not distiller.criterion:  # a new criterion: a new run
        setattr(distiller, _STATE, None)
    else:
        trainer.step_if_due()
