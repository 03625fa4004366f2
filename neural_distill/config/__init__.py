"""Experiment configuration: YAML schema, loader and ``DistillationConf``."""

from .conf import DistillationConf
from .loader import DotDict, load_config, read_yaml, validate

__all__ = ["DistillationConf", "DotDict", "load_config", "read_yaml", "validate"]
