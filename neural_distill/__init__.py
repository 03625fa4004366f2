"""neural_distill: knowledge distillation for PyTorch and TensorFlow.

Importing the package loads no deep-learning framework; a framework is imported the first time
one of its models or criteria is used.
"""

from .config import DistillationConf
from .distillation import Distillation
from .errors import (ConfigError, DataError, FrameworkNotInstalledError, ModelError,
                     NeuralDistillError)
from .events import Event

__version__ = "0.1.0"

__all__ = ["Distillation", "DistillationConf", "Event", "ConfigError", "DataError",
           "FrameworkNotInstalledError", "ModelError", "NeuralDistillError", "__version__"]
