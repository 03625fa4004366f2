"""Framework-neutral criterion settings, validated exactly like the YAML.

A criterion class of any framework validates its constructor arguments through the node of its
catalog spec (``criterion/catalog/``), the node that validates the YAML section of the same
name, so a Python user and a YAML user read the same message for the same mistake.
"""

from neural_distill.config.loader import validate
from neural_distill.criterion.catalog import CATALOG


def validated_criterion_args(yaml_name, class_name, **kwargs):
    """The arguments of criterion ``yaml_name`` with defaults filled in, or a ConfigError."""
    given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()
             if v is not None}
    return dict(validate(given, class_name, CATALOG[yaml_name].node))


def criterion_name_and_args(criterion_config):
    """``{"KnowledgeDistillationLoss": {...}}`` -> ("KnowledgeDistillationLoss", {...})."""
    (name, args), = criterion_config.items()
    return name, dict(args)
