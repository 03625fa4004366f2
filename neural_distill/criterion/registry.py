"""The criterion registry: one entry per criterion of the catalog, nothing written twice.

An entry ties together everything a criterion is made of: its name and spec
(``criterion/catalog/<module>.py``: arguments, defaults, allowed values, needs_teacher), the
schema node that validates its arguments (the spec's, for YAML, the Python config and the
criterion classes alike), its Python config class (``config.criterion_configs``) and the class
name of its implementation in each backend (``PyTorch<name>``, ``Tensorflow<name>``, found by
that name in each backend's ``criteria`` module, ``core.backends``). Backend classes are named, not imported, so reading the
registry loads no framework.
"""

from dataclasses import dataclass

from neural_distill.config.criterion_configs import CRITERION_CONFIGS, _CriterionConfig
from neural_distill.errors import ConfigError
from neural_distill.core.backends import BACKENDS
from neural_distill.criterion.catalog import CATALOG, backend_class_name


@dataclass(frozen=True)
class CriterionEntry:
    spec: object  # config.criterion_args.CriterionSpec
    config_class: type

    @property
    def name(self):
        return self.spec.name

    @property
    def node(self):
        return self.spec.node

    @property
    def needs_teacher(self):
        return self.spec.needs_teacher

    def class_name(self, framework):
        return backend_class_name(self.name, framework)


REGISTRY = {name: CriterionEntry(spec, CRITERION_CONFIGS[name]) for name, spec in CATALOG.items()}


def entry(name):
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"criterion: expected one of {{{', '.join(REGISTRY)}}}, got "
                          f"{name!r}") from None


def backend_class_names():
    """Public class name -> (module, framework), for every backend class of every criterion."""
    return {e.class_name(fw): (backend.module_name("criteria"), fw) for e in REGISTRY.values()
            for fw, backend in BACKENDS.items()}


def needs_teacher(criterion):
    """Whether ``criterion`` needs a teacher model: a criterion object of any backend (or a
    user's own, which needs one unless it says otherwise), a criterion config, or a YAML
    ``{name: arguments}`` section."""
    if isinstance(criterion, _CriterionConfig):
        return REGISTRY[criterion.yaml_name].needs_teacher
    if isinstance(criterion, dict) and len(criterion) == 1 and next(iter(criterion)) in REGISTRY:
        return REGISTRY[next(iter(criterion))].needs_teacher
    return bool(getattr(criterion, "needs_teacher", True))
