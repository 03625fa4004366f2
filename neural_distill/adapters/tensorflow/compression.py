"""The TensorFlow / Keras side of ``neural_distill.training.prepare_compression``.

Same names as ``adapters/torch/compression.py`` (tests/tensorflow/test_tf_qat.py checks it):
preparing a model for QAT, generating layer mappings from layer names, saving and exporting.
"""

import contextlib

import keras

from neural_distill.errors import ModelError
from neural_distill.core.exports import require_teachers, same_name_mappings
from neural_distill.adapters.tensorflow.features import layer_names


def prepare_qat(model, config):
    from neural_distill.adapters.tensorflow.quantization import prepare_qat as prepare

    return prepare(model, config)


def build_pruner(model, groups, where):
    # Keras 3 has no supported way to re-zero a variable after each optimizer step inside a
    # compiled train step without owning the step: refused rather than half done.
    raise ModelError(f"prepare_compression: {where}: pruning during training is implemented "
                     f"for PyTorch models; this model is a Keras model. Prune a PyTorch "
                     f"student, or leave the pruning config out (docs/pruning.md).")


def _layers_with_weights(model):
    return [layer.name for layer in getattr(model, "layers", [])
            if layer.weights and not isinstance(layer, keras.layers.InputLayer)]


def auto_layer_mappings(student, teachers, qat=None):
    """``[[name], ...]``: the layers with weights that the student and the (first) teacher
    share by name (Keras layer names; a QAT model keeps the user's names, and its float copy is
    the default teacher, so every layer with weights is matched with its float self)."""
    require_teachers(teachers)
    return same_name_mappings(_layers_with_weights(student), layer_names(teachers[0]))


def quiet_copies():
    return contextlib.nullcontext()


def module_paths(model):
    return set(layer_names(model))


def save_weights(model, path):
    model.save_weights(path)


def export_float(model, path, example_inputs=None):
    """A float model as a ``.keras`` file (``example_inputs`` is not needed by Keras).

    The deployable model only: a copy without the optimizer state of a compiled model, when
    Keras can rebuild the model from its config."""
    from neural_distill.adapters.tensorflow.quantization import float_copy, save_keras

    try:
        copy = float_copy(model, "export")
    except ModelError:
        copy = model
    return save_keras(copy, path, "export", float_model=model)


def pending_parts(qat, build_parts):
    """Keras QAT wraps the model's own layers at once: nothing waits for a first batch, so the
    manager's parts are built now (the torch backend defers them until the graph is captured)."""
    return build_parts()
