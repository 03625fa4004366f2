"""INC 1.13/1.14's preview of its "2.0" training API: ``prepare`` and ``fit``.

::

    from neural_distill.training import prepare, fit   # was: neural_compressor.training
    callbacks, model = prepare(conf, model=student, teacher_model=teacher)
    def train_func(model):
        ...  callbacks.on_epoch_begin(epoch) ... callbacks.on_after_compute_loss(x, out, loss)
        return model
    model = fit(model, callbacks, train_func=train_func, eval_func=eval_func)

``prepare`` takes the same configurations as ``Distillation`` (a ``DistillationConf``, a YAML
path, a dict or the module-level ``conf``). The model it returns is the student itself, not a
wrapper; ``fit`` returns the best student by ``eval_func``, a copy of the student's own class.
"""

from neural_distill.distillation import Distillation
from neural_distill.errors import ConfigError, ModelError
from neural_distill.events import Dispatcher


class TrainingCallbacks(Dispatcher):
    """The hooks of one experiment (``callbacks.on_epoch_begin(epoch)`` ...): each one calls the
    same hook of ``component``, the ``Distillation`` that ``prepare`` built."""

    def __init__(self, component):
        self.component = component

    def hook_targets(self):
        return (self.component,)

    def __repr__(self):
        return f"TrainingCallbacks({self.component!r})"


def prepare(confs, model=None, teacher_model=None, features=None):
    """``(callbacks, model)`` for a training loop of the user's that calls the hooks.

    Args:
        confs: a ``DistillationConf``, a YAML path, a dict or ``neural_distill.config.conf``.
        model: the student (``torch.nn.Module`` or ``keras.Model``, or a ``common.Model``).
        teacher_model: the teacher; a YAML ``model.teacher`` factory is not read here.
        features: INC's alternative to a teacher (pre-computed teacher features): not
            supported; pass the teacher's outputs to ``on_after_compute_loss`` instead.
    """
    if isinstance(confs, (list, tuple)):
        raise ConfigError(
            "prepare(confs): a list of configurations orchestrates several compressions in "
            "INC; here each prepare() builds one distillation. Pass one configuration, or use "
            "neural_distill.training.prepare_compression(model, [DistillationConfig(...), "
            "QuantizationAwareTrainingConfig(...)]) to combine distillation with QAT.")
    if features is not None:
        raise ConfigError(
            "prepare(features=...): pre-computed teacher features are not taken here. Pass the "
            "teacher's outputs as callbacks.on_after_compute_loss(input, output, loss, "
            "teacher_output), or configure distillation.train.teacher_cache.")
    distiller = Distillation(confs)
    if teacher_model is not None:
        distiller.teacher_model = teacher_model
    if model is not None:
        distiller.student_model = model
    return TrainingCallbacks(distiller), distiller.student_model


def fit(model, callbacks, train_func=None, eval_func=None):
    """Run ``train_func(model)`` as the experiment of ``callbacks``; returns the best student.

    ``eval_func(model)`` scores the student at each ``callbacks.on_epoch_end()`` (higher is
    better) and the best one is returned; without it, the configuration's metric decides.
    """
    if not isinstance(callbacks, TrainingCallbacks):
        if hasattr(callbacks, "distillers") or hasattr(model, "distillers"):
            hint = ("INC 2.x's fit(compression_manager, ...) tuned quantization accuracy; for "
                    "distillation call your train_func yourself with "
                    "compression_manager.callbacks, as the manager's docs show.")
        else:
            hint = "Build them with: callbacks, model = prepare(conf, model, teacher_model)."
        raise ModelError(f"fit(model, callbacks, ...): callbacks: expected the "
                         f"TrainingCallbacks that prepare() returned, got "
                         f"{type(callbacks).__name__}. {hint}")
    if train_func is None or not callable(train_func):
        raise ConfigError(f"fit(model, callbacks, train_func=...): train_func: expected a "
                          f"function train_func(model) that trains the model and calls the "
                          f"callbacks, got {type(train_func).__name__}.")
    if eval_func is not None and not callable(eval_func):
        raise ConfigError(f"fit(..., eval_func=...): expected a function eval_func(model) -> "
                          f"score, got {type(eval_func).__name__}.")
    distiller = callbacks.component
    if model is not None and model is not distiller.student_model:
        distiller.student_model = model
    distiller.train_func = train_func
    if eval_func is not None:
        distiller.eval_func = eval_func
    return distiller.fit()


__all__ = ["TrainingCallbacks", "prepare", "fit"]
