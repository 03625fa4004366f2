"""Which framework a model belongs to, and importing our framework modules by name.

The lowest layer of the package: it imports no framework (detection reads ``sys.modules``: a
framework already has to be imported for one of its models to exist), so the config and
criterion layers can ask it without reaching up into the adapters.
"""

import importlib
import sys

from neural_distill.errors import FrameworkNotInstalledError

_FRAMEWORK_PACKAGES = {"torch": ("torch", "PyTorch"), "tensorflow": ("tensorflow", "TensorFlow")}
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
