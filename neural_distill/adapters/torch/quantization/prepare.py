"""Preparing a float model for QAT: capture, annotate with the x86 quantizer, tap, switch modes."""

import copy

import torch
from torch import nn

from neural_distill.core.batches import split_batch
from neural_distill.errors import ConfigError, DataError, ModelError
from neural_distill.adapters.torch.quantization.backend import _torchao
from neural_distill.adapters.torch.quantization.capture import (
    _at_least_two, _batch_dynamic, _export, normalize_example_inputs, restore_call_sites,
    reused_modules, separate_call_sites)
from neural_distill.adapters.torch.quantization.convert import convert_to_int8
from neural_distill.adapters.torch.quantization.deferred import DeferredQATModule, adopt_parameters
from neural_distill.adapters.torch.quantization.export import save_exported
from neural_distill.adapters.torch.quantization.modes import (
    _mode, _mode_op_settings, _restore_mode_op_settings, enable_train_eval)
from neural_distill.adapters.torch.quantization.observers import freeze_observers, quantizers_paused
from neural_distill.adapters.torch.quantization.taps import _verify_taps, insert_taps


class QATModel:
    """A model prepared for QAT, with what is needed to train, distill from and export it.

    Attributes:
        model: the module to train (fake quantization inside): the prepared ``GraphModule``, or,
            for a config without example inputs, a :class:`DeferredQATModule` that becomes that
            graph on its first batch. It shares its parameters with the model given to
            :func:`prepare_qat` (the same ``Parameter`` objects), so an optimizer built on either
            model's parameters trains it.
        graph_module: the prepared ``GraphModule`` (None until captured).
        float_model: a frozen copy of the float model taken before preparation: the default
            teacher.
        observable: ``{module path: module type}`` of the layers whose outputs can be hooked on
            ``model`` under their original names (empty until captured).
        not_observable: ``{module path: reason}`` for the others.
    """

    def __init__(self, source_model, float_model, config, where):
        self.source_model = source_model
        self.float_model = float_model
        self.config = config
        self.where = where
        self.model = None
        self.graph_module = None
        self.observable, self.not_observable = {}, {}
        self.example_args, self.example_kwargs, self.dynamic_shapes = None, None, None
        self._listeners = []

    # -- capture
    @property
    def captured(self):
        return self.graph_module is not None

    def when_captured(self, callback):
        """Call ``callback()`` once the graph exists (at once if it already does)."""
        if self.captured:
            callback()
        else:
            self._listeners.append(callback)

    def capture(self, args, kwargs, what="example_inputs"):
        """Trace the source model on ``(args, kwargs)`` and prepare it for QAT."""
        if self.captured:
            return self
        prepared, observable, skipped, export_args, export_kwargs, dynamic_shapes = \
            _prepare_graph(self.source_model, self.float_model, self.config, args, kwargs,
                           f"{self.where}: {what}")
        adopt_parameters(prepared, self.source_model)
        self.graph_module = prepared
        self.observable, self.not_observable = observable, skipped
        self.example_args, self.example_kwargs = export_args, export_kwargs
        self.dynamic_shapes = dynamic_shapes
        if isinstance(self.model, DeferredQATModule):
            self.model.attach(prepared)
        else:
            self.model = prepared
        listeners, self._listeners = self._listeners, []
        for callback in listeners:
            callback()
        return self

    def capture_batch(self, dataloader):
        """Capture on the inputs of the first batch of ``dataloader`` (a batch is read as
        ``Distillation`` reads it: a tensor, ``(inputs, labels)`` or a dict)."""
        if self.captured:
            return self
        try:
            batch = next(iter(dataloader))
        except StopIteration:
            raise DataError(f"{self.where}: the dataloader given to on_train_begin is empty; "
                            f"the QAT model is captured on its first batch") from None
        inputs, _ = split_batch(batch, lambda b: isinstance(b, torch.Tensor),
                                "on_train_begin: dataloader")
        args, kwargs = normalize_example_inputs(inputs, f"{self.where}: first batch")
        return self.capture(args, kwargs, "first batch of the dataloader")

    def _require_graph(self, what):
        if not self.captured:
            raise ModelError(
                f"{what}: the QAT model has not been trained yet: it is captured on its first "
                f"batch and has seen none. Run at least one training step (a forward pass of "
                f"manager.model in your loop) first.")

    # -- layer names
    def check_layers(self, names, where):
        """A ModelError naming every layer of ``names`` that cannot be hooked on the QAT model."""
        problems = []
        for name in dict.fromkeys(names):
            if name == "" or name in self.observable:
                continue
            reason = self.not_observable.get(name, "the float model has no module of that name")
            problems.append(f"'{name}': {reason}")
        if problems:
            shown = ", ".join(self.observable) or "none"
            raise ModelError(
                f"{where}: these student layers cannot be observed on the QAT-prepared model:\n  "
                + "\n  ".join(problems) + f"\n  Layers that can: {shown}. Map one of those (e.g. "
                f"the BatchNorm or activation after a folded Conv) instead.")

    def parametrized_layers(self):
        """Observable leaf layers with weights of their own (Conv, Linear, BatchNorm, ...)."""
        modules = dict(self.float_model.named_modules())
        return [name for name in self.observable
                if name in modules and not any(True for _ in modules[name].children())
                and any(True for _ in modules[name].parameters(recurse=False))]

    # -- training
    def observers_paused(self):
        return quantizers_paused(self.model)

    def freeze_observers(self):
        freeze_observers(self.model)

    # -- export
    def convert(self):
        """The int8 q/dq model (a new module; the QAT model itself is left as it is)."""
        self._require_graph("export")
        return convert_to_int8(self.graph_module)

    def export(self, path):
        """Write the int8 model as a ``torch.export`` program (``.pt2``); an ExportInfo."""
        converted = self.convert()
        return save_exported(converted, path, self.example_args, self.example_kwargs,
                             self.dynamic_shapes, float_model=self.float_model, int8=True)


def prepare_qat(model, config, where="QuantizationAwareTrainingConfig"):
    """Prepare ``model`` (an ``nn.Module``) for QAT as ``config`` says; returns a QATModel.

    With ``config.example_inputs`` the model is captured now; without, ``QATModel.model`` is a
    :class:`DeferredQATModule` captured on its first batch.
    """
    _torchao()  # a missing torchao is reported before anything else
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where}: expected a torch.nn.Module, got {type(model).__name__}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        raise ModelError(f"{where}: the x86 backend quantizes for the CPU; the model is on "
                         f"{device}. Move it with model.cpu() first.")
    module_names = {name for name, _ in model.named_modules()}
    unknown = [name for name in config.excluded_layers if name not in module_names]
    if unknown:
        raise ConfigError(f"{where}: excluded_layers: the model has no layer "
                          f"{', '.join(repr(u) for u in unknown)}; expected module paths such as "
                          f"{', '.join(repr(n) for n in sorted(module_names - {''})[:5])}")
    args = kwargs = None
    if config.example_inputs is not None:
        args, kwargs = normalize_example_inputs(config.example_inputs,
                                                f"{where}: example_inputs")

    # Taken before any training step: the float model is the default teacher.
    float_model = copy.deepcopy(model)
    float_model.eval()
    for parameter in float_model.parameters():
        parameter.requires_grad_(False)

    qat = QATModel(model, float_model, config, where)
    if args is None:
        qat.model = DeferredQATModule(model, qat)
    else:
        qat.capture(args, kwargs)
    return qat


def _prepare_graph(model, float_model, config, args, kwargs, where):
    ao = _torchao()
    export_args, export_kwargs = _at_least_two(args, kwargs)
    dynamic_shapes = config.dynamic_shapes or _batch_dynamic(export_args, export_kwargs)
    # Captured in train mode: BatchNorm and Dropout enter the graph in their training form, which
    # enable_train_eval can then switch; the user's model keeps its own mode.
    with _mode(model, True):
        graph = _export(model, export_args, export_kwargs, dynamic_shapes, where).module()

    quantizer = ao.x86.X86InductorQuantizer()
    quantizer.set_global(ao.x86.get_default_x86_inductor_quantization_config(
        is_qat=True, reduce_range=config.reduce_range))
    for name in config.excluded_layers:
        quantizer.set_module_name_qconfig(name, None)
    settings = _mode_op_settings(graph)
    reused = reused_modules(graph.graph)
    separate_call_sites(graph.graph)
    try:
        prepared = ao.quantize_pt2e.prepare_qat_pt2e(graph, quantizer)
    except Exception as exc:  # torchao raises ValueError/AssertionError/RuntimeError alike
        raise _preparation_error(model, reused, exc, where) from exc
    restore_call_sites(prepared.graph)
    # The Conv+BatchNorm fusion of QAT preparation rebuilds BatchNorm from a pattern too
    # (momentum 0.1, eps 1e-5): the model's own settings go back, convert_pt2e folds with them.
    _restore_mode_op_settings(prepared, settings)
    # Taps first: switching modes rewrites BatchNorm and Dropout nodes without the metadata
    # that says which module they came from.
    skipped = insert_taps(prepared, float_model, ao)
    setattr(prepared, "_exported_training", True)  # captured in train mode (torchao's flag)
    enable_train_eval(prepared, True)
    skipped.update(_verify_taps(prepared, float_model, export_args, export_kwargs))
    types_by_path = {name: type(m).__name__ for name, m in float_model.named_modules() if name}
    observable = {path: types_by_path[path] for path in types_by_path if path not in skipped}
    return prepared, observable, skipped, export_args, export_kwargs, dynamic_shapes


def _preparation_error(model, reused, exc, where):
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if reused:
        named = ", ".join(f"'{path}' ({count} calls)" for path, count in sorted(reused.items()))
        fix = (f"These modules are called at several places in forward: {named}. Give each "
               f"call its own module instance (e.g. self.relu1 = nn.ReLU(), self.relu2 = "
               f"nn.ReLU() instead of one self.relu used twice), or exclude them with "
               f"QuantizationAwareTrainingConfig(excluded_layers=[...]).")
    else:
        fix = ("Exclude the layer the quantizer stops at with "
               "QuantizationAwareTrainingConfig(excluded_layers=[...]), or report the model "
               "structure to us.")
    return ModelError(f"{where}: torchao's x86 quantizer could not prepare "
                      f"{type(model).__name__} for QAT ({type(exc).__name__}: {first}). {fix}")
