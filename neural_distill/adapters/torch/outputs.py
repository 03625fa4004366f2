"""Reading logits out of whatever a PyTorch model returns, and moving batches to a device."""

import numpy as np
import torch

from ...errors import ModelError


def logits_of(output, what):
    """The logits tensor inside a model output.

    Accepts a tensor, an object with ``.logits`` (Hugging Face outputs), a dict with a
    ``"logits"`` key or a single tensor value, or a tuple/list whose first item is the logits.
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, dict):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise ModelError(f"{what}: got a dict with keys {sorted(output)}; expected a 'logits' "
                         f"key or exactly one tensor. Return the logits under 'logits'.")
    if isinstance(output, (tuple, list)) and output:
        return logits_of(output[0], what)
    if isinstance(output, np.ndarray):
        return torch.from_numpy(output)
    raise ModelError(f"{what}: expected a tensor, a tuple/list starting with the logits, a dict "
                     f"with 'logits' or an object with .logits; got {type(output).__name__}")


def to_device(value, device):
    """Move tensors (possibly nested in tuples, lists and dicts) to ``device``."""
    if isinstance(value, torch.Tensor):
        return value if value.device == device else value.to(device, non_blocking=True)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value).to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value) if not hasattr(value, "_fields") \
            else type(value)(*(to_device(v, device) for v in value))
    return value


def call_model(model, inputs):
    """Run ``model`` on inputs given as a tensor, a tuple/list (positional) or a dict (kwargs)."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)
