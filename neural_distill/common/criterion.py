"""``neural_distill.common.criterion``: the reference documents' path to the criteria
(``from neural_compressor.experimental.common.criterion import PyTorchKnowledgeDistillationLoss``
with the package name changed). The same lazy names as :mod:`neural_distill.criterion`, plus
INC's ``TensorflowKnowledgeDistillationLossExternal`` (a Keras criterion for teacher outputs
computed by the caller; not a criterion of the catalog, so only this path has it)."""

from neural_distill import criterion as _criterion

_EXTRA = {"TensorflowKnowledgeDistillationLossExternal":
          ("neural_distill.adapters.tensorflow.inc_criteria", "tensorflow")}


def __getattr__(name):
    if name in _EXTRA:
        from neural_distill.frameworks import import_framework_module

        module_name, extra = _EXTRA[name]
        import_framework_module(extra, extra)
        return getattr(import_framework_module(module_name, extra), name)
    return getattr(_criterion, name)


__all__ = list(_criterion.__all__) + list(_EXTRA)
