"""``neural_distill.common.criterion``: the reference documents' path to the criteria
(``from neural_compressor.experimental.common.criterion import PyTorchKnowledgeDistillationLoss``
with the package name changed). The same lazy names as :mod:`neural_distill.criterion`."""

from neural_distill import criterion as _criterion


def __getattr__(name):
    return getattr(_criterion, name)


__all__ = list(_criterion.__all__)
