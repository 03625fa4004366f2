"""Framework adapters: everything that touches torch or tensorflow lives below this package.

The adapter for a model is chosen when the model is assigned, from the model's type alone:
a framework already has to be imported for one of its models to exist, so detection never
imports a framework itself.
"""

from neural_distill.errors import ModelError
from neural_distill.core.backends import (
    backend_module, detect_framework, framework_of_config_name)
from neural_distill.adapters.base import BackendAdapter

def adapter_for_framework(framework):
    return backend_module(framework, "adapter").ADAPTER


def build_criterion(framework, name, args):
    """The ``framework`` criterion ``name`` of the catalog, built with ``args``."""
    return adapter_for_framework(framework).build_criterion(name, args)


def adapter_for_model(model, role):
    """The adapter for ``model``; ``role`` (e.g. 'student_model') names it in errors."""
    framework = detect_framework(model)
    if framework is None:
        hint = "Assign the model object itself (not a path or a wrapper)."
        if isinstance(model, dict) and model and all(
                type(v).__name__ in ("Tensor", "Parameter", "ndarray") for v in model.values()):
            hint = ("This looks like a state_dict: build the model, then load it with "
                    "model.load_state_dict(...) (or assign {checkpoint_path: model}).")
        raise ModelError(
            f"{role}: expected a torch.nn.Module or a keras.Model, got "
            f"{type(model).__module__}.{type(model).__qualname__}. {hint}")
    return adapter_for_framework(framework)


__all__ = ["BackendAdapter", "adapter_for_framework", "adapter_for_model", "build_criterion",
           "detect_framework",
           "framework_of_config_name"]
