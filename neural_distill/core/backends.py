"""The backend table: every framework the package runs on, and the one place its modules are
named.

A backend is a folder ``adapters/<name>/`` with the same module names in each (``adapter``,
``criteria``, ``losses``, ``checks``, ``report``, ...: docs/ARCHITECTURE.md lists them). Every
other module reaches a backend's code by asking this table for a *concern*
(``backend_module("torch", "report")``), never by writing a module path or a framework name, so
adding a backend is adding a folder and a row here. ``tests/architecture/test_layers.py`` reads
those calls as imports of ``adapters.<concern>``, so a low layer that reaches a backend this way
is seen like one that imports it.

The lowest layer of the package: it imports no framework. Detection reads ``sys.modules``: a
framework already has to be imported for one of its models to exist.
"""

import importlib
import importlib.util
import sys
from dataclasses import dataclass

from neural_distill.errors import FrameworkNotInstalledError


@dataclass(frozen=True)
class Backend:
    name: str                # our key, and the folder under adapters/
    packages: tuple          # the top-level packages whose absence means "not installed"
    pretty: str              # how messages name the framework
    config_names: tuple      # the values `model.framework` accepts for it (INC's names too)
    criterion_prefix: str    # backend criterion classes are named <prefix><catalog name>
    weights_suffix: str      # what a saved student's weights file ends with
    detect: object           # model -> bool; reads sys.modules, imports nothing

    def module_name(self, concern):
        return f"neural_distill.adapters.{self.name}.{concern}"

    def require(self):
        """Import the framework itself (before our modules, which would otherwise fail on
        whichever of its dependencies they import first)."""
        try:
            return importlib.import_module(self.packages[0])
        except ImportError as exc:
            raise FrameworkNotInstalledError(self.pretty, self.name) from exc

    def has_module(self, concern):
        """Whether this backend implements ``concern`` (a few, e.g. ``plan``, are not in every
        backend yet); imports nothing."""
        return importlib.util.find_spec(self.module_name(concern)) is not None

    def module(self, concern):
        """Our module ``adapters/<name>/<concern>.py``, naming the pip extra if the framework is
        missing."""
        try:
            return importlib.import_module(self.module_name(concern))
        except ImportError as exc:
            if exc.name is not None and exc.name.split(".")[0] in self.packages:
                raise FrameworkNotInstalledError(self.pretty, self.name) from exc
            raise


def _is_keras_model(model):
    # Keras first: on Keras' torch backend a keras.Model is also a torch.nn.Module, and must
    # reach the Keras adapter (which says which backend it needs), not the PyTorch one.
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(model, tf.Module) and not _is_torch_module(model)


def _is_torch_module(model):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


# In detection order (see _is_keras_model).
BACKENDS = {
    "tensorflow": Backend("tensorflow", ("tensorflow", "keras"), "TensorFlow",
                          ("tensorflow", "keras"), "Tensorflow", ".weights.h5", _is_keras_model),
    "torch": Backend("torch", ("torch",), "PyTorch", ("pytorch", "pytorch_fx", "pytorch_ipex"),
                     "PyTorch", ".pt", _is_torch_module),
}
# Every value `model.framework` accepts, in the order messages list them.
CONFIG_FRAMEWORKS = tuple(n for b in (BACKENDS["torch"], BACKENDS["tensorflow"])
                          for n in b.config_names)


# When a config does not say (`model.framework`), the framework its factories most likely use
# for seeding before they run: the first of these that is installed. PyTorch first: a Keras 3
# factory draws its initial weights from Python's generator, which is seeded either way.
SEEDING_GUESS = ("torch", "tensorflow")


def guess_installed_framework():
    """The first backend of :data:`SEEDING_GUESS` whose framework is installed (nothing is
    imported), or None."""
    for name in SEEDING_GUESS:
        if importlib.util.find_spec(BACKENDS[name].packages[0]) is not None:
            return name
    return None


def backend(name):
    return BACKENDS[name]


def backend_module(framework, concern):
    """``adapters/<framework>/<concern>.py``, imported (see :meth:`Backend.module`)."""
    return BACKENDS[framework].module(concern)


def detect_framework(model):
    """The backend name for a model object ('torch', 'tensorflow'); None if none claims it."""
    for backend_ in BACKENDS.values():
        if backend_.detect(model):
            return backend_.name
    return None


def framework_of_config_name(name):
    for backend_ in BACKENDS.values():
        if name in backend_.config_names:
            return backend_.name
    return None


def imported_backends():
    """The backends whose framework this process has already imported."""
    return [b for b in BACKENDS.values() if b.packages[0] in sys.modules]
