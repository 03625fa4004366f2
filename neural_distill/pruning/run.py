"""The pruner of an experiment whose config has a ``pruning:`` section (``Distillation``).

The framework's pruner is reached by name, so this package imports no framework.
"""

from neural_distill.config.loader import to_plain
from neural_distill.config.pruning_configs import groups_from_section
from neural_distill.errors import ModelError
from neural_distill.core.backends import backend

def pruner_for(groups, framework, model, where):
    """The hooks that prune ``model`` as ``groups`` say (a ``Pruner``)."""
    if not backend(framework).has_module("pruning"):
        # Keras 3 has no supported way to re-zero a variable after each optimizer step inside
        # a compiled train step without owning the step; refused instead of half done.
        raise ModelError(f"{where}: pruning during training is implemented for PyTorch "
                         f"models; the student is a {framework} model. Remove the pruning "
                         f"section, or prune a PyTorch student (docs/pruning.md).")
    module = backend(framework).module("pruning")
    return module.Pruner(model, groups, where)


def run_pruner(conf, framework, student):
    """The pruner of a run's config, or None when it has no ``pruning:`` section."""
    section = conf.get("pruning") if hasattr(conf, "get") else None
    if not section:
        return None
    return pruner_for(groups_from_section(to_plain(section), "pruning"), framework, student,
                      "pruning")
