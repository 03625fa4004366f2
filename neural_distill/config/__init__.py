"""Experiment configuration: YAML schema, loader, ``DistillationConf``, and the Python config API
(``DistillationConfig``, the criterion configs, ``QuantizationAwareTrainingConfig``)."""

from neural_distill.config.conf import DistillationConf
from neural_distill.config.criterion import Criterion
from neural_distill.config.loader import DotDict, load_config, read_yaml, validate
from neural_distill.config.python_api import (
    DistillationConfig, IntermediateLayersKnowledgeDistillationLossConfig,
    KnowledgeDistillationLossConfig, QuantizationAwareTrainingConfig,
    SelfKnowledgeDistillationLossConfig)
from neural_distill.config.pruning_configs import PrunerConfig, WeightPruningConfig

__all__ = ["DistillationConf", "DotDict", "load_config", "read_yaml", "validate",
           "DistillationConfig", "KnowledgeDistillationLossConfig",
           "IntermediateLayersKnowledgeDistillationLossConfig",
           "SelfKnowledgeDistillationLossConfig", "QuantizationAwareTrainingConfig",
           "Criterion", "WeightPruningConfig", "PrunerConfig", "conf", "DefaultConf"]

# Last, on purpose: the reference API's ``from neural_compressor.conf.config import conf`` is
# the configuration object, so ``neural_distill.config.conf`` names it, not the module of
# ``DistillationConf`` (still importable as ``from neural_distill.config.conf import ...``).
from neural_distill.config.inc_conf import DefaultConf, conf  # noqa: E402


def __getattr__(name):
    """The config class of a catalog criterion that has no hand-written one (``<name>Config``)."""
    from neural_distill.config.criterion_configs import CRITERION_CONFIGS

    for config_class in CRITERION_CONFIGS.values():
        if config_class.__name__ == name:
            return config_class
    raise AttributeError(f"module 'neural_distill.config' has no attribute '{name}'")
