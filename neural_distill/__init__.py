"""neural_distill: knowledge distillation for PyTorch and TensorFlow.

Importing the package loads no deep-learning framework; a framework is imported the first time
one of its models or criteria is used.
"""

from neural_distill.errors import (ConfigError, DataError, FrameworkNotInstalledError, ModelError,
                     NeuralDistillError)
from neural_distill.events import Event

from neural_distill.version import __version__  # noqa: E402

# The reference documents' top-level names (``from neural_distill import metric, objectives,
# DistillationConfig, Criterion, prepare_compression``), resolved on first use so that importing
# the package stays light; none of them imports a framework.
_LAZY = {
    # The experiment loads its config schema, checks and loop on first use: importing the
    # package costs next to nothing beyond NumPy (tests/test_import_time.py).
    "Distillation": ("neural_distill.distillation", "Distillation"),
    "DistillationConf": ("neural_distill.config", "DistillationConf"),
    "DistillationConfig": ("neural_distill.config.python_api", "DistillationConfig"),
    "KnowledgeDistillationLossConfig": ("neural_distill.config.python_api",
                                        "KnowledgeDistillationLossConfig"),
    "IntermediateLayersKnowledgeDistillationLossConfig": (
        "neural_distill.config.python_api", "IntermediateLayersKnowledgeDistillationLossConfig"),
    "SelfKnowledgeDistillationLossConfig": ("neural_distill.config.python_api",
                                            "SelfKnowledgeDistillationLossConfig"),
    "QuantizationAwareTrainingConfig": ("neural_distill.config.python_api",
                                        "QuantizationAwareTrainingConfig"),
    "WeightPruningConfig": ("neural_distill.config.pruning_configs", "WeightPruningConfig"),
    "PrunerConfig": ("neural_distill.config.pruning_configs", "PrunerConfig"),
    "prepare_compression": ("neural_distill.training", "prepare_compression"),
    "Criterion": ("neural_distill.config.criterion", "Criterion"),
    "metrics": ("neural_distill.metrics", None),
    "metric": ("neural_distill.metrics", None),  # the documents import it under this name too
    "objectives": ("neural_distill.objectives", None),
    "common": ("neural_distill.common", None),  # from neural_distill import Distillation, common
    "write_offline_cache": ("neural_distill.commands.cache_teacher", "write_offline_cache"),
    # INC 1.x's `from neural_compressor import conf` (the same object as neural_distill.config's).
    "conf": ("neural_distill.config.inc_conf", "conf"),
    # ITREX's names (intel_extension_for_transformers.transformers), docs/migrating.md.
    "DistillationCriterionMode": ("neural_distill.compat.itrex", "DistillationCriterionMode"),
    "OptimizedModel": ("neural_distill.compat.itrex", "OptimizedModel"),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'neural_distill' has no attribute '{name}'")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = ["Event", "ConfigError", "DataError",
           "FrameworkNotInstalledError", "ModelError", "NeuralDistillError", "__version__",
           *_LAZY]
