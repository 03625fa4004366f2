"""Reading logits out of whatever a Keras model returns, and turning batches into tensors."""

import numpy as np
import tensorflow as tf

from neural_distill.errors import ModelError
from neural_distill.core.outputs import find_logits


def is_tensor(value):
    return tf.is_tensor(value) or isinstance(value, tf.Variable)


def _foreign_to_numpy(value):
    """A tensor of another framework (a torch tensor from a shared dataset) as NumPy, else None."""
    module = type(value).__module__ or ""
    if module.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return None


def to_tensor(value):
    """Batches (possibly nested in tuples, lists and dicts) as TensorFlow tensors.

    NumPy arrays and torch tensors are converted so that a compiled step sees tensors (one
    trace) instead of Python objects; anything else is left as it is.
    """
    if is_tensor(value):
        return value
    if isinstance(value, np.ndarray):
        return tf.convert_to_tensor(value)
    foreign = _foreign_to_numpy(value)
    if foreign is not None:
        return tf.convert_to_tensor(foreign)
    if isinstance(value, dict):
        return {k: to_tensor(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        converted = [to_tensor(v) for v in value]
        return type(value)(*converted) if hasattr(value, "_fields") else type(value)(converted)
    return value


def logits_of(output, what):
    """The logits tensor inside a model output.

    Accepts a tensor, a NumPy array, an object with ``.logits``, a dict with a ``"logits"``
    key or a single tensor value, or a tuple/list whose first item is the logits.
    """
    if _foreign_to_numpy(output) is not None:
        # Converting would cut the PyTorch autograd graph: the student would silently not
        # learn from this loss.
        raise ModelError(f"{what}: got a PyTorch tensor, but this is a TensorFlow criterion. "
                         f"With PyTorch models use the PyTorch criterion of the same name "
                         f"(e.g. PyTorchKnowledgeDistillationLoss).")
    return find_logits(output, what, is_tensor, tf.convert_to_tensor)


def model_input(inputs):
    """Inputs in the form Keras models take: one structure (a list for several inputs).

    Keras passes several inputs as one list (``model([a, b])``), not as positional arguments
    like PyTorch; a tuple of inputs from a batch becomes that list.
    """
    if isinstance(inputs, tuple) and not hasattr(inputs, "_fields"):
        return list(inputs)
    return inputs


def call_model(model, inputs, training):
    return model(model_input(inputs), training=training)


def static_shape(tensor):
    """The static shape as a tuple (None where unknown)."""
    shape = tensor.shape
    return tuple(shape.as_list()) if hasattr(shape, "as_list") else tuple(shape)
