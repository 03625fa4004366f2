"""Distillation criteria.

The framework-specific classes are imported on first use, so importing this package loads no
framework: ``from neural_distill.criterion import PyTorchKnowledgeDistillationLoss`` loads torch,
and only then.
"""

from .registry import backend_class_names
from .specs import criterion_name_and_args, validated_criterion_args

# Public class name -> (module that defines it, framework needed), from the registry.
_LAZY = backend_class_names()


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'neural_distill.criterion' has no attribute '{name}'")
    module_name, extra = _LAZY[name]
    from ..frameworks import import_framework_module

    # The framework itself first: without it, our module would fail on whichever of the
    # framework's own dependencies (h5py, ...) it happens to import first.
    import_framework_module(extra, extra)
    return getattr(import_framework_module(module_name, extra), name)


__all__ = ["criterion_name_and_args", "validated_criterion_args", *_LAZY]
