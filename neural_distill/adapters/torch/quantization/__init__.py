"""Quantization-aware training (QAT) for PyTorch, with torchao's PT2E flow.

Why PT2E from torchao (docs/quantization.md has the measurements): eager and FX QAT in
``torch.ao.quantization`` are deprecated in torch 2.13, and their successor, PT2E, now lives in
``torchao.quantization.pt2e``. On CPU its ``X86InductorQuantizer`` is the only quantizer that is
public (the XNNPACK one moved to ExecuTorch) and its converted model, lowered with
``lower_pt2e_quantized_to_x86``, really runs on oneDNN int8 kernels (``onednn.qconv_pointwise``,
``onednn.qlinear_pointwise``) and stores int8 weights.

The flow, one module per step::

    float model --torch.export (capture)--> graph --prepare_qat_pt2e (prepare)--> fake-quantized
        graph, with LayerTaps at the old module paths (taps) and train()/eval() (modes), trained
        --convert_pt2e (convert)--> int8 q/dq graph --torch.export.save (export)--> .pt2
        --load_int8(path, example_inputs) (runtime)--> lowered to oneDNN int8 kernels

``backend`` imports torchao; ``observers`` pauses and freezes the fake quantizers; ``deferred``
captures a model given without example inputs on its first batch.

This ``__init__`` keeps the names the single ``quantization`` module used to define.
"""

from neural_distill.adapters.torch.quantization.backend import _torchao
from neural_distill.adapters.torch.quantization.capture import (
    _at_least_two, _batch_dynamic, _export, normalize_example_inputs, separate_call_sites)
from neural_distill.adapters.torch.quantization.convert import (
    convert_to_int8, drop_unused_weights, quantize_post_training)
from neural_distill.adapters.torch.quantization.deferred import DeferredQATModule
from neural_distill.adapters.torch.quantization.export import (
    ExportInfo, module_weight_bytes, program_weight_bytes, quiet_copies, save_exported,
    tensor_bytes)
from neural_distill.adapters.torch.quantization.modes import (
    _MODE_META_KEY, _MODE_OP_SETTINGS, _eval, _install_train_eval, _mode, _mode_op_settings,
    _reinstall_after_deepcopy, _restore_mode_op_settings, _set_training, _train, enable_train_eval)
from neural_distill.adapters.torch.quantization.observers import (
    _unobserved, freeze_observers, quantizers_paused)
from neural_distill.adapters.torch.quantization.prepare import QATModel, prepare_qat
from neural_distill.adapters.torch.quantization.runtime import (
    check_archive, int8_kernels, load_int8, lower_to_x86, measure_latency)
from neural_distill.adapters.torch.quantization.taps import (
    LayerTap, _call_output, _faithful, _is_fake_quant, _module_calls, _placeholder_at,
    _swap_module, _tap_paths, _verify_taps, insert_taps, remove_taps)

__all__ = ["DeferredQATModule", "ExportInfo", "LayerTap", "QATModel", "check_archive",
           "convert_to_int8", "drop_unused_weights", "enable_train_eval", "freeze_observers",
           "insert_taps", "int8_kernels", "load_int8", "lower_to_x86", "measure_latency",
           "module_weight_bytes", "normalize_example_inputs", "prepare_qat",
           "program_weight_bytes", "quantize_post_training", "quantizers_paused", "quiet_copies",
           "remove_taps", "save_exported", "separate_call_sites", "tensor_bytes"]
