"""Finding the logits in whatever a model returns, for every framework.

A backend passes its test for "this is a tensor" (and how to turn a NumPy array into one).
"""

import numpy as np

from neural_distill.errors import ModelError


def find_logits(output, what, is_tensor, from_numpy):
    """The logits tensor inside a model output.

    Accepts a tensor, a NumPy array, an object with ``.logits`` (Hugging Face outputs), a dict
    with a ``"logits"`` key or a single tensor value, or a tuple/list whose first item is the
    logits.
    """
    if is_tensor(output):
        return output
    if isinstance(output, np.ndarray):
        return from_numpy(output)
    logits = getattr(output, "logits", None)
    if is_tensor(logits):
        return logits
    if isinstance(output, dict):
        if is_tensor(output.get("logits")):
            return output["logits"]
        tensors = [v for v in output.values() if is_tensor(v)]
        if len(tensors) == 1:
            return tensors[0]
        raise ModelError(f"{what}: got a dict with keys {sorted(output)}; expected a 'logits' "
                         f"key or exactly one tensor. Return the logits under 'logits'.")
    if isinstance(output, (tuple, list)) and output:
        return find_logits(output[0], what, is_tensor, from_numpy)
    raise ModelError(f"{what}: expected a tensor, a tuple/list starting with the logits, a dict "
                     f"with 'logits' or an object with .logits; got {type(output).__name__}")
