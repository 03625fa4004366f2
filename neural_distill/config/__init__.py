"""Experiment configuration: YAML schema, loader, ``DistillationConf``, and the Python config API
(``DistillationConfig``, the criterion configs, ``QuantizationAwareTrainingConfig``)."""

from .conf import DistillationConf
from .criterion import Criterion
from .loader import DotDict, load_config, read_yaml, validate
from .python_api import (DistillationConfig, IntermediateLayersKnowledgeDistillationLossConfig,
                         KnowledgeDistillationLossConfig, QuantizationAwareTrainingConfig,
                         SelfKnowledgeDistillationLossConfig)

__all__ = ["DistillationConf", "DotDict", "load_config", "read_yaml", "validate",
           "DistillationConfig", "KnowledgeDistillationLossConfig",
           "IntermediateLayersKnowledgeDistillationLossConfig",
           "SelfKnowledgeDistillationLossConfig", "QuantizationAwareTrainingConfig",
           "Criterion"]
