"""Reading logits out of whatever a PyTorch model returns, and moving batches to a device."""

import numpy as np
import torch

from neural_distill.core.outputs import find_logits


def logits_of(output, what):
    """The logits tensor inside a model output.

    Accepts a tensor, an object with ``.logits`` (Hugging Face outputs), a dict with a
    ``"logits"`` key or a single tensor value, or a tuple/list whose first item is the logits.
    """
    return find_logits(output, what, lambda v: isinstance(v, torch.Tensor), torch.from_numpy)


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
