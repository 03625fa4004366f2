"""From a trained QAT graph (or a float model, for PTQ) to an int8 q/dq model."""

import copy

import torch

from neural_distill.errors import DataError, ModelError
from neural_distill.adapters.torch.quantization.backend import _torchao
from neural_distill.adapters.torch.quantization.capture import (
    _at_least_two, _batch_dynamic, _export, normalize_example_inputs)
from neural_distill.adapters.torch.quantization.export import quiet_copies
from neural_distill.adapters.torch.quantization.observers import _unobserved
from neural_distill.adapters.torch.quantization.modes import _set_training
from neural_distill.adapters.torch.quantization.taps import remove_taps


def drop_unused_weights(graph_module):
    """Delete parameters and buffers the graph no longer reads.

    convert_pt2e stores each quantized weight as a new int8 constant but leaves the float
    original attached; torch.export would save both.
    """
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = list(graph_module.named_parameters()) + list(graph_module.named_buffers())
    for name, _ in named:
        if name not in used:
            owner, _, attribute = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attribute)
    graph_module.delete_all_unused_submodules()
    return graph_module



def convert_to_int8(prepared):
    """convert_pt2e on a copy of ``prepared`` without its taps (they would split the patterns
    the int8 lowering fuses, e.g. conv -> relu -> quantize)."""
    ao = _torchao()
    missing = _unobserved(prepared)
    if missing:
        # convert_pt2e would stop on an assert deep inside torchao.
        raise ModelError(
            f"export: the QAT model has not been trained yet: {len(missing)} quantizers "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}) have seen no data, "
            f"so they have no range to choose scales from. Run at least one training step "
            f"(a forward pass of manager.model in your loop) before exporting.")
    with quiet_copies():
        model = copy.deepcopy(prepared)
    remove_taps(model)
    _set_training(model, False)  # BatchNorm folds with its running statistics and own eps
    return drop_unused_weights(ao.quantize_pt2e.convert_pt2e(model))


def quantize_post_training(model, example_inputs, calibration_batches, reduce_range=False):
    """Plain post-training static quantization (PTQ) with the same quantizer: a q/dq model.

    ``calibration_batches`` is an iterable of model inputs (tensors, tuples or dicts).
    """
    ao = _torchao()
    args, kwargs = normalize_example_inputs(example_inputs, "quantize_post_training")
    export_args, export_kwargs = _at_least_two(args, kwargs)
    float_copy = copy.deepcopy(model).eval()
    graph = _export(float_copy, export_args, export_kwargs,
                    _batch_dynamic(export_args, export_kwargs), "quantize_post_training").module()
    quantizer = ao.x86.X86InductorQuantizer()
    quantizer.set_global(ao.x86.get_default_x86_inductor_quantization_config(
        reduce_range=reduce_range))
    prepared = ao.quantize_pt2e.prepare_pt2e(graph, quantizer)
    seen = 0
    with torch.no_grad():
        for batch in calibration_batches:
            b_args, b_kwargs = normalize_example_inputs(batch, "calibration batch")
            prepared(*b_args, **b_kwargs)
            seen += 1
    if not seen:
        raise DataError("quantize_post_training: calibration_batches is empty; the observers "
                        "need at least one batch to choose the scales")
    return drop_unused_weights(ao.quantize_pt2e.convert_pt2e(prepared))

