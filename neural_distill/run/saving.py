"""``model.save(path)`` for the models we hand back (see docs/saving.md).

Users of the reference documents' API save what ``fit()`` returns with ``model.save('./saved')``.
A PyTorch module has no ``save``, so the returned copy gets one bound on the instance (never on
the user's class, never replacing a ``save`` the class defines): it writes
``./saved/best_model.pt``, the ``state_dict``. Keras models keep their own ``save`` and its
meaning. Each backend's part is its ``adapters/<fw>/saving.py`` (``save_model``, ``bind_save``).
"""

import os

from neural_distill.core.backends import backend_module, detect_framework

def save_model(model, root):
    """Write ``model`` under ``root`` (a folder, created if needed); returns the file path.

    PyTorch: ``root/best_model.pt``, the state_dict. Keras: ``root`` itself when it ends in
    ``.keras``/``.h5`` (Keras' own ``save``), otherwise ``root/best_model.keras``.
    """
    return backend_module(detect_framework(model), "saving").save_model(model, os.fspath(root))


def with_save(model):
    """``model`` itself, given a ``save(path)`` method if its class has none (PyTorch)."""
    framework = None if model is None else detect_framework(model)
    if framework is not None:
        backend_module(framework, "saving").bind_save(model)
    return model
