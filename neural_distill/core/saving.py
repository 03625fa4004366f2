"""``model.save(path)`` for the models we hand back (see docs/saving.md).

Users of the reference documents' API save what ``fit()`` returns with ``model.save('./saved')``.
A PyTorch module has no ``save``, so the returned copy gets one bound on the instance (never on
the user's class, never replacing a ``save`` the class defines): it writes
``./saved/best_model.pt``, the ``state_dict``. Keras models keep their own ``save`` and its
meaning. This module imports no framework; the PyTorch part lives in
``adapters/torch/saving.py``.
"""

import os

from neural_distill.core.frameworks import detect_framework, import_framework_module

TORCH_FILE = "best_model.pt"
KERAS_FILE = "best_model.keras"


def _torch_saving():
    return import_framework_module("neural_distill.adapters.torch.saving", "torch")


def save_model(model, root):
    """Write ``model`` under ``root`` (a folder, created if needed); returns the file path.

    PyTorch: ``root/best_model.pt``, the state_dict. Keras: ``root`` itself when it ends in
    ``.keras``/``.h5`` (Keras' own ``save``), otherwise ``root/best_model.keras``.
    """
    root = os.fspath(root)
    framework = detect_framework(model)
    if framework == "torch":
        return _torch_saving().save_state_dict(model, root)
    if root.endswith((".keras", ".h5")):
        model.save(root)
        return root
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, KERAS_FILE)
    model.save(path)
    return path


def with_save(model):
    """``model`` itself, given a ``save(path)`` method if its class has none (PyTorch)."""
    if model is not None and detect_framework(model) == "torch":
        _torch_saving().bind_save(model)
    return model
