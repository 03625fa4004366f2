"""Sparsity during training as an algorithm of :class:`neural_distill.trainer.Trainer`.

::

    from neural_distill.algorithms.distillation import Distillation, KLDivergence
    from neural_distill.algorithms.pruning import Pruning
    from neural_distill.config import WeightPruningConfig

    trainer = Trainer(model=student, ..., algorithms=[
        Distillation(teachers=teacher, kd_loss_fn=KLDivergence()),
        Pruning(WeightPruningConfig(target_sparsity=0.5, start_step=0, end_step=100))])

The masks are the same as ``prepare_compression``'s (docs/pruning.md).
"""

from neural_distill.algorithms.base import Algorithm
from neural_distill.config.pruning_configs import pruning_groups
from neural_distill.events import Event
from neural_distill.core.backends import detect_framework
from neural_distill.pruning.run import pruner_for


class Pruning(Algorithm):
    """Prunes ``state.model`` as ``config`` says (a WeightPruningConfig, a PrunerConfig or a
    list of them); ``pruner`` is built on the first event and ``.sparsity()`` reads it."""

    def __init__(self, config):
        self.groups = pruning_groups(config, "Pruning")
        self.config = config
        self.pruner = None

    def match(self, event, state):
        return event is not Event.AFTER_COMPUTE_LOSS

    def apply(self, event, state, logger):
        if self.pruner is None:
            self.pruner = pruner_for(self.groups, detect_framework(state.model), state.model,
                                     "Pruning")
        if event is Event.EPOCH_BEGIN:
            self.pruner.on_epoch_begin(state.epoch)
        elif event is Event.STEP_BEGIN:
            self.pruner.on_step_begin(state.batch_in_epoch)
        elif event is Event.TRAIN_BEGIN:
            self.pruner.on_train_begin()
        else:
            getattr(self.pruner, event.value)()

    def sparsity(self):
        return {} if self.pruner is None else self.pruner.sparsity()

    def __repr__(self):
        return f"Pruning({self.config!r})"
