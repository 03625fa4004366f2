"""Distillation criteria.

The framework-specific classes are imported on first use, so importing this package loads no
framework: ``from neural_distill.criterion import PyTorchKnowledgeDistillationLoss`` loads torch,
and only then.
"""

from .specs import criterion_name_and_args, validated_criterion_args

# Public name -> (module that defines it, framework needed, pip extra that installs it).
_LAZY = {
    "PyTorchKnowledgeDistillationLoss": ("neural_distill.adapters.torch.criteria", "torch"),
    "PyTorchIntermediateLayersKnowledgeDistillationLoss": (
        "neural_distill.adapters.torch.criteria", "torch"),
    "PyTorchSelfKnowledgeDistillationLoss": ("neural_distill.adapters.torch.criteria", "torch"),
    "TensorflowKnowledgeDistillationLoss": (
        "neural_distill.adapters.tensorflow.criteria", "tensorflow"),
    "TensorflowIntermediateLayersKnowledgeDistillationLoss": (
        "neural_distill.adapters.tensorflow.criteria", "tensorflow"),
    "TensorflowSelfKnowledgeDistillationLoss": (
        "neural_distill.adapters.tensorflow.criteria", "tensorflow"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'neural_distill.criterion' has no attribute '{name}'")
    module_name, extra = _LAZY[name]
    from ..adapters import import_framework_module

    # The framework itself first: without it, our module would fail on whichever of the
    # framework's own dependencies (h5py, ...) it happens to import first.
    import_framework_module(extra, extra)
    return getattr(import_framework_module(module_name, extra), name)


__all__ = ["criterion_name_and_args", "validated_criterion_args", *_LAZY]
