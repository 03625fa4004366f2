"""Objectives: what a compressed model is judged on besides its accuracy.

The reference documents import ``objectives`` next to ``metrics``; here an objective is a name,
a direction and a way to measure it on a model, so an example or a report can print the same
numbers the same way::

    from neural_distill import objectives

    objectives.model_size.measure(student)     # bytes of parameters and buffers
    objectives.performance.measure(lambda: student(batch), repeats=20)   # calls per second

Measuring never changes the model. Nothing here imports a deep-learning framework: models are
read through the methods they already have.
"""

import time

import numpy as np

from neural_distill.errors import ConfigError, ModelError


class Objective:
    """A named quantity to optimise.

    Args:
        name: what is measured (``"model_size"``, ``"performance"``, ...).
        greater_is_better: the direction: True for throughput, False for size or latency.
        weight_ratio: the weight of this objective when several are combined (None: equal).
    """

    def __init__(self, name, greater_is_better=True, weight_ratio=None):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Objective: name: expected a non-empty string, got {name!r}")
        if not isinstance(greater_is_better, bool):
            raise ConfigError(f"Objective: greater_is_better: expected True or False, got "
                              f"{greater_is_better!r}")
        if weight_ratio is not None and (isinstance(weight_ratio, bool) or not isinstance(
                weight_ratio, (int, float)) or not 0 <= weight_ratio <= 1):
            raise ConfigError(f"Objective: weight_ratio: expected a number in [0, 1] or None, "
                              f"got {weight_ratio!r}")
        self.name = name
        self.greater_is_better = greater_is_better
        self.weight_ratio = weight_ratio

    def measure(self, *args, **kwargs):
        raise ModelError(f"objective '{self.name}' has no built-in measurement; measure it "
                         f"yourself, or use objectives.model_size / objectives.performance")

    def __repr__(self):
        return (f"{type(self).__name__}(name={self.name!r}, "
                f"greater_is_better={self.greater_is_better})")


class ModelSize(Objective):
    """Bytes held by a model's parameters and buffers (what its weights file stores)."""

    def __init__(self, weight_ratio=None):
        super().__init__("model_size", greater_is_better=False, weight_ratio=weight_ratio)

    def measure(self, model):
        return sum(size for _, size in _tensor_sizes(model))

    @staticmethod
    def parameters(model):
        """The number of values in the model's parameters (trainable or not)."""
        return sum(count for count, _ in _tensor_sizes(model, parameters_only=True))


class Performance(Objective):
    """Calls per second of a callable (e.g. ``lambda: model(batch)``), after one warm-up call."""

    def __init__(self, weight_ratio=None):
        super().__init__("performance", greater_is_better=True, weight_ratio=weight_ratio)

    def measure(self, run, repeats=10):
        if not callable(run):
            raise ModelError(f"objectives.performance.measure: expected a callable that runs the "
                             f"model once (e.g. lambda: model(batch)), got {type(run).__name__}")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"objectives.performance.measure: repeats: expected an int >= 1, "
                              f"got {repeats!r}")
        run()  # the first call pays for lazy initialisation, not for the model
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        return repeats / max(time.perf_counter() - start, 1e-12)


def _tensor_sizes(model, parameters_only=False):
    """(values, bytes) of each tensor of a torch module or a Keras model."""
    if callable(getattr(model, "parameters", None)) and callable(getattr(model, "buffers", None)):
        tensors = list(model.parameters())
        if not parameters_only:
            tensors += list(model.buffers())
        return [(t.numel(), t.numel() * t.element_size()) for t in tensors]
    weights = getattr(model, "weights", None)
    if isinstance(weights, list):  # Keras: variables with a shape and a dtype
        sizes = []
        for variable in weights:
            count = 1
            for dim in variable.shape:
                count *= int(dim)
            sizes.append((count, count * _dtype_bytes(variable.dtype)))
        return sizes
    raise ModelError(f"objectives.model_size: expected a torch.nn.Module or a keras.Model, got "
                     f"{type(model).__module__}.{type(model).__qualname__}")


def _dtype_bytes(dtype):
    name = str(getattr(dtype, "name", dtype))
    # NumPy has no bfloat16; every other Keras dtype name is a NumPy one.
    return 2 if name == "bfloat16" else np.dtype(name).itemsize


model_size = ModelSize()
performance = Performance()

__all__ = ["Objective", "ModelSize", "Performance", "model_size", "performance"]
