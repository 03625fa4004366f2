"""The model wrapper of the reference documents' API (``neural_distill.common.Model``), and
unwrapping it: low in the layers, because every part that takes a model unwraps it first.
``common.Model`` adds ``save`` (which reaches the backends) on top of :class:`WrappedModel`."""

from neural_distill.core.backends import detect_framework
from neural_distill.errors import ModelError


class WrappedModel:
    """A PyTorch ``nn.Module`` or a ``keras.Model``, wrapped (``common.Model`` is the public
    class): ``.model`` is the framework model, ``.framework`` its framework; calling the wrapper
    calls the model, and other attributes are read from the model."""

    def __init__(self, root, **kwargs):
        if isinstance(root, WrappedModel):
            root = root.model
        if detect_framework(root) is None:
            hint = (" Load the model in your framework first (a path is not loaded for you)."
                    if isinstance(root, str) else "")
            raise ModelError(f"common.Model: expected a torch.nn.Module or a keras.Model, got "
                             f"{type(root).__module__}.{type(root).__qualname__}.{hint}")
        self._model = root
        self.kwargs = kwargs

    @property
    def model(self):
        return self._model

    @model.setter
    def model(self, model):
        self._model = unwrap(model)

    @property
    def framework(self):
        return detect_framework(self._model)

    def __call__(self, *args, **kwargs):
        return self._model(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name == "_model":
            raise AttributeError(name)
        return getattr(self._model, name)

    def __repr__(self):
        return f"common.Model({type(self._model).__qualname__})"


def unwrap(model):
    """The framework model inside a ``common.Model``; anything else as it is."""
    return model.model if isinstance(model, WrappedModel) else model


def unwrap_all(models):
    """``unwrap`` for one model, a list/tuple of models or a dict of them (teachers)."""
    if isinstance(models, (list, tuple)):
        return type(models)(unwrap(m) for m in models)
    if isinstance(models, dict):
        return {key: unwrap(m) for key, m in models.items()}
    return unwrap(models)


def like(model, given):
    """``model`` wrapped the way the user gave theirs (a common.Model in, a common.Model out)."""
    return type(given)(model) if isinstance(given, WrappedModel) and model is not None else model
