"""The one table of criteria: every other list of criteria is derived from it.

An entry ties together everything a criterion is made of: its YAML name, the schema node that
validates its arguments (the same node for YAML, the Python config and the criterion classes),
its Python config class, the framework-neutral spec its classes mix in, whether it needs a
teacher model, and the public class name of its implementation in each backend. Backend
classes are named, not imported, so reading the table loads no framework.
"""

from dataclasses import dataclass

from ..config.criterion_configs import (IntermediateLayersKnowledgeDistillationLossConfig,
                                        KnowledgeDistillationLossConfig,
                                        SelfKnowledgeDistillationLossConfig, _CriterionConfig)
from ..config.schema import CRITERIA as _NODES
from ..errors import ConfigError
from .base import IntermediateLayersSpec, KnowledgeDistillationSpec, SelfDistillationSpec

# The module holding each backend's criterion classes.
BACKEND_MODULES = {"torch": "neural_distill.adapters.torch.criteria",
                   "tensorflow": "neural_distill.adapters.tensorflow.criteria"}
_PREFIXES = {"torch": "PyTorch", "tensorflow": "Tensorflow"}


@dataclass(frozen=True)
class CriterionEntry:
    name: str
    node: object
    config_class: type
    spec: type
    # The class name without its backend prefix: PyTorch<base>, Tensorflow<base>.
    base_class_name: str

    @property
    def needs_teacher(self):
        return self.spec.needs_teacher

    def class_name(self, framework):
        return _PREFIXES[framework] + self.base_class_name


REGISTRY = {entry.name: entry for entry in (
    CriterionEntry("KnowledgeDistillationLoss", _NODES["KnowledgeDistillationLoss"],
                   KnowledgeDistillationLossConfig, KnowledgeDistillationSpec,
                   "KnowledgeDistillationLoss"),
    CriterionEntry("IntermediateLayersKnowledgeDistillationLoss",
                   _NODES["IntermediateLayersKnowledgeDistillationLoss"],
                   IntermediateLayersKnowledgeDistillationLossConfig, IntermediateLayersSpec,
                   "IntermediateLayersKnowledgeDistillationLoss"),
    CriterionEntry("SelfKnowledgeDistillationLoss", _NODES["SelfKnowledgeDistillationLoss"],
                   SelfKnowledgeDistillationLossConfig, SelfDistillationSpec,
                   "SelfKnowledgeDistillationLoss"),
)}


def entry(name):
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"criterion: expected one of {{{', '.join(REGISTRY)}}}, got "
                          f"{name!r}") from None


def backend_class_names():
    """Public class name -> (module, framework), for every backend class of every criterion."""
    return {e.class_name(fw): (module, fw) for e in REGISTRY.values()
            for fw, module in BACKEND_MODULES.items()}


def build(framework, name, args):
    """The ``framework`` criterion ``name`` built with ``args`` (imports that backend)."""
    from ..frameworks import import_framework_module

    module = import_framework_module(BACKEND_MODULES[framework], framework)
    return getattr(module, entry(name).class_name(framework))(**args)


def needs_teacher(criterion):
    """Whether ``criterion`` needs a teacher model: a criterion object of any backend (or a
    user's own, which needs one unless it says otherwise), a criterion config, or a YAML
    ``{name: arguments}`` section."""
    if isinstance(criterion, _CriterionConfig):
        return REGISTRY[criterion.yaml_name].needs_teacher
    if isinstance(criterion, dict) and len(criterion) == 1 and next(iter(criterion)) in REGISTRY:
        return REGISTRY[next(iter(criterion))].needs_teacher
    return bool(getattr(criterion, "needs_teacher", True))
