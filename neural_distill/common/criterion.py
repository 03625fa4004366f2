"""``neural_distill.common.criterion``: the reference documents' path to the criteria
(``from neural_compressor.experimental.common.criterion import PyTorchKnowledgeDistillationLoss``
with the package name changed). The same lazy names as :mod:`neural_distill.criterion`, plus
INC's ``TensorflowKnowledgeDistillationLossExternal`` (a Keras criterion for teacher outputs
computed by the caller; not a criterion of the catalog, so only this path has it)."""

from neural_distill import criterion as _criterion

# name -> the backend whose ``inc_criteria`` module defines it
_EXTRA = {"TensorflowKnowledgeDistillationLossExternal": "tensorflow"}


def __getattr__(name):
    if name in _EXTRA:
        from neural_distill.core.backends import backend

        backend(_EXTRA[name]).require()
        return getattr(backend(_EXTRA[name]).module("inc_criteria"), name)
    return getattr(_criterion, name)


__all__ = list(_criterion.__all__) + list(_EXTRA)
