"""The PyTorch side of ``neural_distill.training.prepare_compression``.

The compression manager itself is framework-neutral; what needs torch lives here: preparing a
model for QAT, generating layer mappings from module names, saving and exporting.
"""

import os

import torch

from neural_distill.errors import ConfigError
from neural_distill.core.exports import require_teachers, same_name_mappings


def prepare_qat(model, config):
    from neural_distill.adapters.torch.quantization import prepare_qat as prepare

    return prepare(model, config)


def pending_parts(qat, build):
    """Stands for the manager's parts until a QAT model given without example inputs is
    captured on its first batch; ``build()`` makes the real ones then."""
    from neural_distill.adapters.torch.quantization.deferred import PendingParts

    return PendingParts(qat, build)


def _leaf_layers_with_weights(model):
    return [name for name, module in model.named_modules()
            if name and not any(True for _ in module.children())
            and any(True for _ in module.parameters(recurse=False))]


def auto_layer_mappings(student, teachers, qat=None):
    """``[[name], ...]``: the layers with weights that the student and the (first) teacher share.

    For a QAT student these are the layers of the float model whose outputs can still be
    observed on the prepared graph; the teacher is usually the float copy, so every such layer
    is matched with its own float version (layer-by-layer distillation).
    """
    require_teachers(teachers)
    candidates = qat.parametrized_layers() if qat is not None else \
        _leaf_layers_with_weights(student)
    return same_name_mappings(candidates, [name for name, _ in teachers[0].named_modules()])


def quiet_copies():
    from neural_distill.adapters.torch.quantization import quiet_copies as quiet

    return quiet()


def module_paths(model):
    return {name for name, _ in model.named_modules()}


def save_weights(model, path):
    torch.save(model.state_dict(), path)


def export_float(model, path, example_inputs):
    """A float model as a ``torch.export`` program (``.pt2``)."""
    from neural_distill.adapters.torch.quantization import (
        _at_least_two, _batch_dynamic, normalize_example_inputs, save_exported)

    if example_inputs is None:
        raise ConfigError("export: example_inputs: expected one batch of model inputs, got None. "
                          "torch.export traces the model on them: call "
                          "manager.export(path, example_inputs=batch_inputs).")
    args, kwargs = _at_least_two(*normalize_example_inputs(example_inputs,
                                                            "export: example_inputs"))
    was_training = model.training
    model.eval()
    try:
        return save_exported(model, os.fspath(path), args, kwargs, _batch_dynamic(args, kwargs),
                             float_model=model)
    finally:
        model.train(was_training)


def build_pruner(model, groups, where):
    from neural_distill.adapters.torch.pruning import Pruner

    return Pruner(model, groups, where)
