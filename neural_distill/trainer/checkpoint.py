"""Trainer checkpoints: written atomically, read back with tensors-only unpickling.

A checkpoint is a dict ``{"state_dict": model weights, "optimizers": [...], "epoch": int,
"step": int}``: only tensors, numbers, strings and containers, so ``torch.load(path,
weights_only=True)`` reads it without running any code from the file. Loading also accepts a
plain state dict (``torch.save(model.state_dict(), path)``).
"""

import os
import pickle

import torch

from neural_distill.errors import ModelError


def save_checkpoint(path, model, optimizers, epoch, step):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = {"state_dict": model.state_dict(),
               "optimizers": [optimizer.state_dict() for optimizer in optimizers],
               "epoch": epoch, "step": step}
    # Written next to its final name and renamed: a run killed mid-write never leaves a
    # truncated file under the name a later run (or a teacher) will load.
    partial = path + ".partial"
    torch.save(payload, partial)
    os.replace(partial, path)


def _is_state_dict(value):
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def load_weights(model, path, where):
    """Load the model weights of a Trainer checkpoint or a plain state dict into ``model``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelError(f"{where}: checkpoint {path} not found (current folder: "
                         f"{os.getcwd()}). Check the path, or train and save the teacher first "
                         f"(Trainer(..., save_folder=..., save_filename=...)).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{where}: {path} cannot be read as a tensors-only PyTorch checkpoint "
            f"(torch.load(weights_only=True)): {first_line}. Save the weights with "
            f"torch.save(model.state_dict(), path) or our Trainer's save_folder.") from None
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not _is_state_dict(state):
        state = payload
    if not _is_state_dict(state):
        raise ModelError(
            f"{where}: {path} holds a {type(payload).__name__}, not a state dict (a dict of "
            f"parameter names to tensors) nor a Trainer checkpoint with one under "
            f"'state_dict'. Save it with torch.save(model.state_dict(), path).")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"{where}: checkpoint {path} does not match {type(model).__name__}: "
                         f"{str(exc).strip()}\nPass a model of the same architecture (and "
                         f"constructor arguments) as the one that was saved.") from None

