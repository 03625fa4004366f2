"""Pruning: sparsity during training and width pruning into a smaller dense model.

- Sparsity while distilling: ``neural_distill.config.WeightPruningConfig`` (INC's arguments),
  ``PrunerConfig`` (ITREX's, via ``DistillationConfig(pruner_config=...)``) or the YAML
  ``pruning:`` section; the schedule is :mod:`neural_distill.pruning.schedule`, the masks are
  the framework's (``adapters/torch/pruning.py``).
- :func:`prune_width`: a smaller dense copy of a model (Minitron-style), to start a student.

Importing this package imports no framework. See docs/pruning.md.
"""

from neural_distill.errors import ModelError
from neural_distill.core.backends import backend, detect_framework


def prune_width(model, keep, calibration_data, layers=None):
    """A smaller dense copy of ``model``: hidden neurons, conv channels and attention heads
    removed by their mean activation on ``calibration_data`` (the model is not modified).

    Args:
        model: a ``torch.nn.Module``.
        keep: the fraction of each pruned width to keep, in (0, 1] (at least one unit stays).
        calibration_data: an iterable of batches (a DataLoader, a list of input tensors,
            ``(inputs, labels)`` pairs or dicts of keyword inputs). None: units ranked by
            weight norm instead (only for a copy whose weights are loaded from a checkpoint).
        layers: module paths of the widths to prune (the first layer of a pair, e.g.
            ``"net.0"`` or ``"transformer.h.0.mlp"``); None: every width that can be pruned.

    Returns the copy, of the model's own class where it can be (Hugging Face configs updated).
    """
    framework = detect_framework(model)
    if framework is None or not backend(framework).has_module("pruning_width"):
        raise ModelError(f"prune_width: model: expected a torch.nn.Module, got "
                         f"{type(model).__module__}.{type(model).__qualname__}")
    module = backend(framework).module("pruning_width")
    return module.prune_width(model, keep, calibration_data, layers)


__all__ = ["prune_width"]
