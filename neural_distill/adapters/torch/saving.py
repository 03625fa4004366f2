"""``save(path)`` on the PyTorch models we hand back (``neural_distill.run.saving``)."""

import os

import torch

TORCH_FILE = "best_model.pt"  # what model.save(folder) writes in the folder


def save_model(model, root):
    return save_state_dict(model, root)


def save_state_dict(model, root):
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, TORCH_FILE)
    torch.save(model.state_dict(), path)
    return path


class _Save:
    """``model.save(root)``: a callable object, not a bound method, so that the model still
    deep-copies (the copy's ``save`` saves the copy) and pickles (a bound method pickles as
    ``getattr(model, 'save')``, which fails while the model is being unpickled)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, root):
        """Write ``root/best_model.pt`` (the state_dict); returns its path."""
        return save_state_dict(self.model, os.fspath(root))

    def __repr__(self):
        return f"<save(path) of {type(self.model).__qualname__}: writes path/{TORCH_FILE}>"


def bind_save(model):
    """Give ``model`` (an instance) a ``save`` unless its class, or the instance, has one."""
    if hasattr(model, "save"):
        return model
    # nn.Module.__setattr__ stores a plain callable in the instance __dict__: it is neither a
    # parameter, a buffer nor a submodule, so state_dict() and the module tree are unchanged.
    model.save = _Save(model)
    return model
