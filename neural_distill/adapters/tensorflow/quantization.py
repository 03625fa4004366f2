"""Quantization-aware training (QAT) for Keras 3 models, on Keras' own int8 scheme.

What ``model.quantize("int8")`` does in Keras 3.15 (read from keras/src/layers/core/ and
keras/src/quantizers/quantizers.py), and therefore what is simulated here:

- it covers ``Dense``, ``EinsumDense`` and ``Embedding`` (exactly those classes, not their
  subclasses: ``quantize`` checks ``type(self)``); convolutions have no int8 path and stay float;
- weights: symmetric abs-max int8, one scale per output channel — ``scale = 127 / (max|w| +
  epsilon)`` over the contracted axes (axis 0 of a Dense kernel, the reduced einsum axes of an
  EinsumDense kernel, the last axis of an Embedding table), ``q = clip(round(w·scale), -127,
  127)``;
- inputs of Dense and EinsumDense: quantized *dynamically* at every call with the same abs-max
  formula, one scale per row (the contracted axes: the last axis of a Dense input); the int8
  matmul/einsum accumulates in int32 and is divided by ``input_scale · kernel_scale``. Embedding
  lookups are weight-only.

So there are no observers and no learned ranges: every scale is a function of the current
tensor. Fake quantization is ``dequantize(quantize(x))`` with ``keras.quantizers.
abs_max_quantize`` (the function the export calls) and a straight-through gradient
(``x + stop_gradient(q(x) - x)``; abs-max never clips, so identity is the exact STE).

The layers are switched to fake quantization *in place*: each covered layer gets an instance
attribute ``call`` that fake-quantizes its input and weight and then computes what the layer's own
``call`` computes. The model object, its variables, layer names and graph stay the user's, so an
optimizer built on ``model.trainable_variables`` and intermediate-layer features by layer name
work unchanged. ``export`` quantizes a rebuilt copy with ``model.quantize("int8")``, restricted to
the layers that were simulated.
"""

import contextlib
import os
import statistics
import time

import keras
import numpy as np
from keras import ops

from neural_distill.errors import ConfigError, ModelError
from neural_distill.core.exports import ExportInfo
from neural_distill.adapters.tensorflow.cloning import clone_model
from neural_distill.adapters.tensorflow.features import model_kind

# The export's defaults (value range and epsilon) come from the quantizer Keras itself uses.
_KERAS_DEFAULT = keras.quantizers.AbsMaxQuantizer()
_COVERED = {keras.layers.Dense: "Dense", keras.layers.EinsumDense: "EinsumDense",
            keras.layers.Embedding: "Embedding"}


def fake_quantize(x, axis):
    """``x`` rounded to Keras' int8 abs-max grid along ``axis`` (kept dims), as float, with a
    straight-through gradient."""
    x = ops.convert_to_tensor(x)
    quantized, scale = keras.quantizers.abs_max_quantize(
        x, axis, value_range=_KERAS_DEFAULT.value_range, dtype=x.dtype,
        epsilon=_KERAS_DEFAULT.epsilon)
    return x + ops.stop_gradient(ops.divide(quantized, scale) - x)


def _einsum_reduced_axes(equation):
    """(input axes, kernel axes) that an EinsumDense equation contracts, as Keras' int8 path
    reduces them for its scales. Input axes count from the end when the equation elides leading
    input axes (``...b,bc->...c``)."""
    left, output = equation.replace(" ", "").split("->")
    inputs, kernel = left.split(",")
    output = output.replace("...", "")
    if inputs.startswith("..."):
        spec = inputs[3:]
        input_axes = [i - len(spec) for i, label in enumerate(spec) if label not in output]
    else:
        spec = inputs.replace("...", "")
        input_axes = [i for i, label in enumerate(spec) if label not in output]
    kernel_axes = [i for i, label in enumerate(kernel) if label not in output]
    return tuple(input_axes), tuple(kernel_axes)


def _finish(layer, x):
    if getattr(layer, "bias", None) is not None:
        x = ops.add(x, layer.bias)
    if layer.activation is not None:
        x = layer.activation(x)
    return x


def _fake_call(layer):
    """The fake-quantized ``call`` for one covered layer (same signature as the class's)."""
    kind = _COVERED[type(layer)]
    if kind == "Dense":
        def call(inputs, training=None):
            return _finish(layer, ops.matmul(fake_quantize(inputs, -1),
                                             fake_quantize(layer.kernel, 0)))
    elif kind == "EinsumDense":
        input_axes, kernel_axes = _einsum_reduced_axes(layer.equation)

        def call(inputs, training=None):
            return _finish(layer, ops.einsum(layer.equation, fake_quantize(inputs, input_axes),
                                             fake_quantize(layer.kernel, kernel_axes)))
    else:
        def call(inputs):
            if keras.backend.standardize_dtype(inputs.dtype) not in ("int32", "int64"):
                inputs = ops.cast(inputs, "int32")
            table = fake_quantize(layer.embeddings, -1)
            return ops.cast(ops.take(table, inputs, axis=0), layer.compute_dtype)
    call.neural_distill_fake_quant = kind
    return call


def _leaf_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if not list(layer._flatten_layers(include_self=False))]


def _why_not(layer):
    """Why ``layer`` (a leaf with weights) cannot be simulated, or None when it can."""
    if type(layer) not in _COVERED:
        for base in _COVERED:
            if isinstance(layer, base):
                return (f"a subclass of {base.__name__}: Keras' quantize() only quantizes the "
                        f"class itself")
        return "Keras 3 has no int8 path for this layer type (it stays float)"
    if getattr(layer, "lora_enabled", False):
        return "LoRA is enabled on it (its int8 path adds the LoRA branch in float)"
    if getattr(layer, "quantization_mode", None) is not None:
        return f"it is already quantized ({layer.quantization_mode})"
    if layer.compute_dtype != "float32":
        return f"its compute dtype is {layer.compute_dtype}; the simulation covers float32"
    return None


def weight_bytes(model):
    """Bytes of every variable of ``model`` (what a ``.keras`` file stores)."""
    return int(sum(np.prod(v.shape, dtype=np.int64) * np.dtype(v.dtype).itemsize
                   for v in model.weights))


def int8_layers(model):
    """Names of the layers of ``model`` that run Keras' int8 path."""
    return [layer.name for layer in _leaf_layers(model)
            if getattr(layer, "quantization_mode", None) == "int8"]


def float_copy(model, where):
    """A separate float copy of ``model`` with its current weights (rebuilt from its config, so
    without fake quantization and without optimizer state)."""
    copy = clone_model(model)
    if copy is None:
        raise ModelError(
            f"{where}: {type(model).__name__} cannot be rebuilt from its config, so no separate "
            f"copy of it can be made (QAT needs one as the float teacher and one to quantize at "
            f"export, while your model keeps its float weights). Use a Functional "
            f"or Sequential model, or implement get_config() on your Model subclass and "
            f"register it with @keras.saving.register_keras_serializable().")
    copy.set_weights(model.get_weights())
    if getattr(copy, "compiled", False):
        # clone_model re-compiles the copy; an optimizer (with slots for the float kernels)
        # does not belong in a quantized or teacher copy, and Keras would save it.
        copy.optimizer = None
        copy.compiled = False
    return copy


def quantize_int8(model, positions=None):
    """A copy of ``model`` with Keras' ``quantize("int8")`` applied (only to the leaf layers at
    ``positions`` of ``_leaf_layers`` order, when given). The model itself is not changed. Plain
    post-training quantization when ``model`` was not trained with QAT.

    Layers are chosen by position, not name: a rebuilt subclassed model names its layers anew
    (``dense_2`` for ``dense``), while its layers come in the same order (``clone_model`` checks it).
    """
    copy = float_copy(model, "quantize_int8")
    if positions is None:
        copy.quantize("int8")
        return copy
    leaves = _leaf_layers(copy)
    wanted = {id(leaves[index]) for index in positions}
    copy.quantize("int8", filters=lambda layer: id(layer) in wanted)
    done = sum(getattr(leaves[index], "quantization_mode", None) == "int8"
               for index in positions)
    if done != len(positions):  # would silently export float layers that were trained as int8
        raise ModelError(f"export: Keras quantized {done} of the {len(positions)} layers "
                         f"trained with fake quantization; the rebuilt copy of "
                         f"{type(model).__name__} does not match the model")
    return copy


def save_keras(model, path, where, float_model=None, int8=False):
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ConfigError(f"{where}: path: expected a file name ending in .keras (Keras' own "
                          f"format, which keras.saving.load_model reads), got {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    model.save(path)
    return ExportInfo(path=path, file_bytes=os.path.getsize(path),
                      weight_bytes=weight_bytes(model),
                      float_weight_bytes=weight_bytes(float_model if float_model is not None
                                                      else model),
                      int8=int8, int8_layers=int8_layers(model))


class QATModel:
    """A Keras model switched to fake quantization, with what is needed to train, distill from
    and export it.

    Attributes:
        model: the user's model itself, its covered layers fake-quantized (train this one).
        float_model: a frozen float copy taken before the switch: the default teacher.
        quantized: ``{layer name: layer type}`` of the simulated layers (the ones export makes
            int8).
        not_quantized: ``{layer name: reason}`` for the layers with weights that stay float.
    """

    def __init__(self, model, float_model, quantized, not_quantized, example, config,
                 positions):
        self.model = model
        self.positions = positions  # of the simulated layers, in _leaf_layers order
        self.float_model = float_model
        self.quantized = quantized
        self.not_quantized = not_quantized
        self.example_args = (example,)
        self.example_kwargs = {}
        self.config = config

    def check_layers(self, names, where):
        """Nothing to refuse: the graph and its layer names are the user's own (a missing name
        is reported by the feature capture)."""

    def observers_paused(self):
        # Keras' scheme has no observers: every scale is recomputed from the current tensor.
        return contextlib.nullcontext()

    def freeze_observers(self):
        """No observers to freeze (dynamic abs-max scales); accepted for config parity."""

    def remove(self):
        """Switch the model back to its float layers (the trained weights stay)."""
        for layer in _leaf_layers(self.model):
            if getattr(layer.__dict__.get("call"), "neural_distill_fake_quant", None):
                del layer.call

    def convert(self):
        """The int8 model: a copy with ``quantize("int8")`` on the simulated layers."""
        return quantize_int8(self.model, self.positions)

    def export(self, path):
        """Write the int8 model as a ``.keras`` file; an ExportInfo."""
        if model_kind(self.model) == "subclassed":
            # Checked with Keras 3.15: the file is written, but load_model rebuilds the layers
            # through the subclass's __init__ with float dtype policies and then fails on the
            # int8 variables ("expected 2 variables, but received 0").
            raise ModelError(
                f"export: {type(self.model).__name__} is a subclassed Keras model, and Keras "
                f"cannot load an int8-quantized subclassed model back from a .keras file. Use "
                f"a Functional or Sequential model for a loadable file; manager.qat.convert() "
                f"still gives the int8 model in memory.")
        return save_keras(self.convert(), path, "export", float_model=self.float_model,
                          int8=True)


def _example_batch(model, example_inputs, where):
    if example_inputs is not None:
        return example_inputs
    inputs = getattr(model, "inputs", None)
    if inputs and len(inputs) == 1 and all(d is not None for d in inputs[0].shape[1:]):
        # Only shapes matter for the set-up dry run, and no scale is learned from it.
        return np.zeros((2,) + tuple(inputs[0].shape[1:]), dtype=inputs[0].dtype)
    raise ConfigError(f"{where}: example_inputs: expected one batch of model inputs for "
                      f"{type(model).__name__} (its input shape is not known from the model); "
                      f"pass QuantizationAwareTrainingConfig(example_inputs=x_batch).")


def prepare_qat(model, config, where="QuantizationAwareTrainingConfig"):
    """Switch ``model`` (a ``keras.Model``) to fake quantization; returns a QATModel."""
    if not isinstance(model, keras.Model):
        raise ModelError(f"{where}: expected a keras.Model, got {type(model).__name__}")
    if config.reduce_range:
        raise ConfigError(f"{where}: reduce_range: Keras' int8 export has no 7-bit mode "
                          f"(weights and inputs use -127..127); set reduce_range=False for "
                          f"Keras models")
    example = _example_batch(model, config.example_inputs, where)
    if not model.built:
        try:
            model(example, training=False)
        except Exception as exc:  # noqa: BLE001 - any failure means the batch does not fit
            raise ConfigError(f"{where}: example_inputs: the model could not be built on them "
                              f"({type(exc).__name__}: {exc})") from None
    leaves = _leaf_layers(model)
    names = [layer.name for layer in leaves]
    unknown = [name for name in config.excluded_layers if name not in names]
    if unknown:
        raise ConfigError(f"{where}: excluded_layers: the model has no layer "
                          f"{', '.join(repr(u) for u in unknown)}; expected Keras layer names "
                          f"such as {', '.join(repr(n) for n in names[:5])}")
    float_model = float_copy(model, where)
    float_model.trainable = False

    quantized, not_quantized, switched = {}, {}, []
    for position, layer in enumerate(leaves):
        if not layer.weights:
            continue
        reason = "excluded_layers" if layer.name in config.excluded_layers else _why_not(layer)
        if reason is None:
            quantized[layer.name] = type(layer).__name__
            switched.append((position, layer))
        else:
            not_quantized[layer.name] = reason
    if not quantized:
        raise ModelError(f"{where}: {type(model).__name__} has no layer that Keras' int8 "
                         f"export quantizes (Dense, EinsumDense, Embedding); the layers with "
                         f"weights are: " + "; ".join(f"'{n}': {r}" for n, r in
                                                        not_quantized.items()))
    for _, layer in switched:
        layer.call = _fake_call(layer)
    # Compiled train/predict functions traced before the switch would keep the float layers.
    model.train_function = model.test_function = model.predict_function = None
    return QATModel(model, float_model, quantized, not_quantized, example, config,
                    [position for position, _ in switched])


def measure_latency(model, inputs, repeats=30, warmup=5):
    """Median milliseconds per inference call of ``model`` on ``inputs``."""
    times = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        model(inputs, training=False)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
