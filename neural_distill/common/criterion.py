"""``neural_distill.common.criterion``: the reference documents' path to the criteria
(``from neural_compressor.experimental.common.criterion import PyTorchKnowledgeDistillationLoss``
with the package name changed). The same lazy names as :mod:`neural_distill.criterion`, plus
INC's ``TensorflowKnowledgeDistillationLossExternal`` (a Keras criterion for teacher outputs
computed by the caller; not a criterion of the catalog, so only this path has it)."""

from neural_distill import criterion as _criterion

# INC's names that are no criterion of the catalog, defined in a backend's ``inc_criteria``
# module; the backend is the one whose criterion prefix the name starts with.
_EXTRA = ("TensorflowKnowledgeDistillationLossExternal",)


def __getattr__(name):
    if name in _EXTRA:
        from neural_distill.core.backends import BACKENDS

        owner = next(b for b in BACKENDS.values() if name.startswith(b.criterion_prefix))
        owner.require()
        return getattr(owner.module("inc_criteria"), name)
    return getattr(_criterion, name)


__all__ = list(_criterion.__all__) + list(_EXTRA)
