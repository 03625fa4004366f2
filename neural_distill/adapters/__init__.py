"""Framework adapters: everything that touches torch or tensorflow lives below this package.

The adapter for a model is chosen when the model is assigned, from the model's type alone:
a framework already has to be imported for one of its models to exist, so detection never
imports a framework itself.
"""

import importlib
import sys

from ..errors import FrameworkNotInstalledError, ModelError

_FRAMEWORK_PACKAGES = {"torch": ("torch", "PyTorch"), "tensorflow": ("tensorflow", "TensorFlow")}
_ADAPTER_MODULES = {"torch": "neural_distill.adapters.torch.adapter",
                    "tensorflow": "neural_distill.adapters.tensorflow.adapter"}
_CONFIG_FRAMEWORKS = {"pytorch": "torch", "pytorch_fx": "torch", "pytorch_ipex": "torch",
                      "tensorflow": "tensorflow", "keras": "tensorflow"}


def import_framework_module(module_name, framework):
    """Import one of our framework-specific modules, naming the pip extra if it is missing."""
    package, pretty = _FRAMEWORK_PACKAGES[framework]
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] in (package, "keras"):
            raise FrameworkNotInstalledError(pretty, framework) from exc
        raise


def detect_framework(model):
    """'torch' or 'tensorflow' for a model object; None if it belongs to neither."""
    # Keras first: on Keras' torch backend a keras.Model is also a torch.nn.Module, and must
    # reach the Keras adapter (which says which backend it needs), not the PyTorch one.
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return "tensorflow"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(model, tf.Module):
        return "tensorflow"
    return None


def framework_of_config_name(name):
    return _CONFIG_FRAMEWORKS.get(name)


def adapter_for_framework(framework):
    module = import_framework_module(_ADAPTER_MODULES[framework], framework)
    return module.ADAPTER


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
