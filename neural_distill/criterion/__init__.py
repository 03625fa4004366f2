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
from neural_distill.core.backends import BACKENDS
from neural_distill.criterion.catalog import CATALOG, backend_class_name

# Public class name -> the backend whose ``criteria`` module defines it.
_LAZY = {backend_class_name(name, framework): framework for name in CATALOG
         for framework in BACKENDS}
_HELPERS = ("criterion_name_and_args", "validated_criterion_args")


def __getattr__(name):
    if name == "DistillationCriterion":  # the base class of a user's own criterion
        from neural_distill.criterion.base import DistillationCriterion

        return DistillationCriterion
    if name in _HELPERS:
        from neural_distill.criterion import specs

        return getattr(specs, name)
    if name not in _LAZY:
        raise AttributeError(f"module 'neural_distill.criterion' has no attribute '{name}'")
    framework = _LAZY[name]
    from neural_distill.core.backends import backend

    # The framework itself first: without it, our module would fail on whichever of the
    # framework's own dependencies (h5py, ...) it happens to import first.
    backend(framework).require()
    return getattr(backend(framework).module("criteria"), name)


__all__ = ["DistillationCriterion", *_HELPERS, *_LAZY]
