"""Distillation criteria.

The framework-specific classes are imported on first use, so importing this package loads no
framework: ``from neural_distill.criterion import PyTorchKnowledgeDistillationLoss`` loads torch,
and only then. Their names come from the catalog (``criterion/catalog/``): ``PyTorch<name>`` and
``Tensorflow<name>`` for every criterion there.

This module imports only the catalog at import time: the config layer builds its schema from
the catalog, and importing the catalog runs this file first.
"""

# The config package first, whichever of the two is imported first: its schema is built from
# the catalog, and the catalog's specs are made of config nodes (the package root, which used
# to import config first, is now lazy).
import neural_distill.config  # noqa: F401,E402  isort: skip
from neural_distill.criterion.catalog import BACKEND_MODULES, CATALOG, backend_class_name

# Public class name -> (module that defines it, framework needed).
_LAZY = {backend_class_name(name, framework): (module, framework) for name in CATALOG
         for framework, module in BACKEND_MODULES.items()}
_HELPERS = ("criterion_name_and_args", "validated_criterion_args")


def __getattr__(name):
    if name in _HELPERS:
        from neural_distill.criterion import specs

        return getattr(specs, name)
    if name not in _LAZY:
        raise AttributeError(f"module 'neural_distill.criterion' has no attribute '{name}'")
    module_name, extra = _LAZY[name]
    from neural_distill.frameworks import import_framework_module

    # The framework itself first: without it, our module would fail on whichever of the
    # framework's own dependencies (h5py, ...) it happens to import first.
    import_framework_module(extra, extra)
    return getattr(import_framework_module(module_name, extra), name)


__all__ = [*_HELPERS, *_LAZY]
