"""The criterion catalog: one module per criterion, each holding a ``SPEC``
(``config.criterion_args.CriterionSpec``); every other table of criteria is derived from it.

Adding a criterion is adding a module here plus its class in each backend, named
``PyTorch<name>`` in ``adapters/torch/criteria.py`` and ``Tensorflow<name>`` in
``adapters/tensorflow/criteria.py`` (docs/ARCHITECTURE.md, "Add a criterion"). The modules are
found by listing this folder, so no table names them.

This package is pure data (layer "config" in docs/ARCHITECTURE.md): it imports no framework and
nothing above the config layer, so the YAML schema can be built from it.
"""

import importlib
import pkgutil

from neural_distill.core.backends import BACKENDS

# What an experiment file without a criterion section gets.
DEFAULT_CRITERION = "KnowledgeDistillationLoss"


def _discover():
    specs = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is not None:
            specs.append(spec)
    specs.sort(key=lambda s: (s.order, s.name))
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:  # a developer's mistake, found at import
        raise RuntimeError(f"criterion catalog: {duplicates} declared by more than one module")
    return {spec.name: spec for spec in specs}


# Criterion name -> CriterionSpec, in the order messages list them.
CATALOG = _discover()


def backend_class_name(name, framework):
    """``PyTorch<name>`` / ``Tensorflow<name>``: where a backend defines criterion ``name``."""
    return BACKENDS[framework].criterion_prefix + name
