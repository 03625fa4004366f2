"""Names of Intel Extension for Transformers (ITREX) that its distillation scripts use::

    from neural_distill import DistillationCriterionMode, OptimizedModel
    # was: from intel_extension_for_transformers.transformers import ...
    trainer.distill(distillation_conf, provider="inc", train_func=..., eval_func=...)
    trainer.save_model("./distilled_model")
    loaded_model = OptimizedModel.from_pretrained("./distilled_model")

Nothing here imports torch or transformers at import time.
"""

import enum
import os

from neural_distill.errors import ConfigError, FrameworkNotInstalledError, ModelError


class DistillationCriterionMode(enum.Enum):
    """ITREX's criterion names; ``Criterion(name=...)`` takes a member, its name or its value."""

    KNOWLEDGELOSS = "KnowledgeDistillationLoss"
    INTERMEDIATELAYERSLOSS = "IntermediateLayersKnowledgeDistillationLoss"


SUPPORTED_DISTILLATION_CRITERION_MODE = {mode.name for mode in DistillationCriterionMode}


class Provider(enum.Enum):
    """ITREX's back ends for ``trainer.distill``: INC's distillation, which this package is."""

    INC = "inc"


def check_provider(who, provider):
    value = getattr(provider, "value", provider)
    if not isinstance(value, str) or value.lower() != Provider.INC.value:
        raise ConfigError(f"{who}.distill: provider: expected 'inc' (ITREX's only distillation "
                          f"provider, which neural_distill replaces), got {provider!r}. Leave "
                          f"it out.")


def checked_function(name, function):
    if not callable(function):
        raise ConfigError(f"distill({name}=...): expected a function {name}(model), got "
                          f"{type(function).__name__}.")
    return function


def run_train_func(manager, distiller, train_func, model):
    """``train_func(model)`` as the training of a running ``distill()``.

    A ``train_func`` that calls ``trainer.train()`` ends the run there (the Trainer's
    ``on_train_end``); one that trains otherwise, or not at all, gets the run ended here (the
    student scored once by ``eval_func``), so the best student and the records exist.
    """
    checked_function("train_func", train_func)(model)
    if distiller.run.started:
        manager.on_train_end()  # which evaluates the student if no epoch's end did


# transformers' model files: a float model saved by Trainer.save_model / save_pretrained.
_CONFIG_FILE = "config.json"


class OptimizedModel:
    """ITREX's loader of optimized models; here, of distilled (float) ones.

    ``OptimizedModel.from_pretrained(path)`` returns the transformers model class named in the
    saved ``config.json`` (its ``architectures``), loaded from ``path``: the distilled student
    as ``trainer.save_model(path)`` wrote it. ITREX's int8 models are not this package's to load.
    """

    def __init__(self, *args, **kwargs):
        raise ModelError("OptimizedModel is not built directly: call "
                         "OptimizedModel.from_pretrained(path) on a saved model folder.")

    @classmethod
    def from_pretrained(cls, model_name_or_path, **kwargs):
        try:
            import transformers
        except ImportError as exc:
            raise FrameworkNotInstalledError("Hugging Face transformers (with PyTorch)",
                                             "transformers") from exc
        where = f"OptimizedModel.from_pretrained({model_name_or_path!r})"
        if os.path.isdir(model_name_or_path) and not os.path.isfile(
                os.path.join(model_name_or_path, _CONFIG_FILE)):
            raise ModelError(f"{where}: the folder has no {_CONFIG_FILE}. Save the student with "
                             f"trainer.save_model(path) (or model.save_pretrained(path)).")
        config = transformers.AutoConfig.from_pretrained(model_name_or_path, **kwargs)
        if str(getattr(config, "torch_dtype", "")).endswith("int8"):
            raise ModelError(f"{where}: an int8 model saved by ITREX's quantization; this "
                             f"package loads distilled float models. Load it with ITREX.")
        architectures = getattr(config, "architectures", None) or []
        model_class = getattr(transformers, architectures[0], None) if architectures else None
        if model_class is None:
            raise ModelError(
                f"{where}: {_CONFIG_FILE} names the architectures {architectures!r}, none of "
                f"them a transformers class. Load the model with its own class: "
                f"YourModelClass.from_pretrained(path).")
        return model_class.from_pretrained(model_name_or_path, **kwargs)


__all__ = ["DistillationCriterionMode", "SUPPORTED_DISTILLATION_CRITERION_MODE", "Provider",
           "OptimizedModel", "check_provider", "checked_function", "run_train_func"]
