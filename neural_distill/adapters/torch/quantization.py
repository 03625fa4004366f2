"""Quantization-aware training (QAT) for PyTorch, with torchao's PT2E flow.

Why PT2E from torchao (docs/quantization.md has the measurements): eager and FX QAT in
``torch.ao.quantization`` are deprecated in torch 2.13, and their successor, PT2E, now lives in
``torchao.quantization.pt2e``. On CPU its ``X86InductorQuantizer`` is the only quantizer that is
public (the XNNPACK one moved to ExecuTorch) and its converted model, lowered with
``lower_pt2e_quantized_to_x86``, really runs on oneDNN int8 kernels (``onednn.qconv_pointwise``,
``onednn.qlinear_pointwise``) and stores int8 weights.

The flow::

    float model --torch.export--> graph --prepare_qat_pt2e--> fake-quantized graph (trained)
        --convert_pt2e--> int8 q/dq graph --torch.export.save--> .pt2
        --load_int8(path, example_inputs)--> lowered to oneDNN int8 kernels

Module names after preparation
------------------------------
``torch.export`` flattens the model into one graph: the submodules are gone (only empty
holders of their weights remain under the old names), so a forward hook on ``features.0`` of the
prepared model would never fire, silently. After preparation each original module whose output
is still one value of the graph gets a :class:`LayerTap` at its old path: an identity module
called on that value, so ``named_modules()`` names resolve again and forward hooks (ours and the
user's) receive the layer's output. A tap is kept only if, with fake quantization off, it sees
exactly what the float layer returns; layers that preparation rewrote (a Conv folded with its
BatchNorm: the graph no longer holds the conv's own output) or that produce several values are
reported by name with the reason. Taps are removed before conversion, so the int8 model is
unchanged by them.
"""

import contextlib
import copy
import logging
import os
import statistics
import time
import types
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError, DataError, FrameworkNotInstalledError, ModelError
from .features import FeatureCapture

# ------------------------------------------------------------------------------ torchao import
def _torchao():
    """torchao's PT2E entry points, imported on first use.

    Importing torchao logs warnings about its CUDA-only kernels (they cannot load with a CPU
    torch, and nothing here needs them) and deprecation notices from torch's pytree registry and
    torch.jit; they are quieted for the import only.
    """
    loggers = [logging.getLogger("torchao"), logging.getLogger("torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            # torchao still decorates a few modules with torch.jit.script_method.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message=r".*torch\.jit\.script_method")
            from torchao.quantization import pt2e
            from torchao.quantization.pt2e import fake_quantize, lowering, quantize_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as exc:
        raise FrameworkNotInstalledError("torchao (PT2E quantization)", "quantization") from exc
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return types.SimpleNamespace(pt2e=pt2e, fake_quantize=fake_quantize, lowering=lowering,
                                 quantize_pt2e=quantize_pt2e, x86=x86_inductor_quantizer)


# ------------------------------------------------------------------------------ inputs
def normalize_example_inputs(example_inputs, where):
    """``(args, kwargs)`` from a tensor, a tuple/list of positional inputs or a dict."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), {}
    if isinstance(example_inputs, (tuple, list)) and example_inputs:
        return tuple(example_inputs), {}
    if isinstance(example_inputs, dict) and example_inputs:
        return (), dict(example_inputs)
    raise ConfigError(
        f"{where}: expected one batch of model inputs (a tensor, a tuple of positional "
        f"tensors or a dict of keyword tensors), got {type(example_inputs).__name__}. The model "
        f"is captured with torch.export, which traces it on these inputs: pass e.g. "
        f"example_inputs=next(iter(train_loader))[0].")


def _batch_dynamic(args, kwargs):
    """Dimension 0 of every tensor input may change (Dim.AUTO: dynamic when the graph allows)."""
    def spec(value):
        return {0: torch.export.Dim.AUTO} if isinstance(value, torch.Tensor) else None
    if kwargs:
        return {name: spec(value) for name, value in kwargs.items()}
    return tuple(spec(value) for value in args)


def _at_least_two(args, kwargs):
    """Inputs with a batch of at least 2: torch.export specializes a size-1 dimension to 1, which
    would make the prepared model refuse every other batch size."""
    def widen(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == 1:
            return torch.cat([value, value])
        return value
    return tuple(widen(v) for v in args), {k: widen(v) for k, v in kwargs.items()}


def _export(model, args, kwargs, dynamic_shapes, what):
    try:
        return torch.export.export(model, args, kwargs or None, dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch.export raises many types; all mean "cannot capture"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{what}: torch.export could not capture {type(model).__name__} on the example "
            f"inputs ({type(exc).__name__}: {first}). PT2E quantization needs a model that "
            f"torch.export can trace: no data-dependent Python control flow in forward. See "
            f"docs/quantization.md.") from exc


# ------------------------------------------------------------------------------ taps
class LayerTap(nn.Module):
    """Stands at an original module path of a prepared graph and returns its input unchanged.

    It also holds the weights that were already stored under that path, so the state dict keys
    are the original ones.
    """

    def __init__(self, layer_type=""):
        super().__init__()
        self.layer_type = layer_type

    def forward(self, value):
        return value

    def extra_repr(self):
        return f"output of {self.layer_type}" if self.layer_type else ""


def _placeholder_at(root, path, create):
    """The module at ``path`` of ``root`` (created as an empty holder when ``create``)."""
    module = root
    for atom in path.split("."):
        child = module._modules.get(atom)
        if child is None:
            if not create:
                return None
            child = nn.Module()
            module.add_module(atom, child)
        module = child
    return module


def _swap_module(root, path, new):
    """Put ``new`` at ``path``, taking over the parameters, buffers and children held there."""
    old = _placeholder_at(root, path, create=True)
    new._parameters = old._parameters
    new._buffers = old._buffers
    new._non_persistent_buffers_set = old._non_persistent_buffers_set
    new._modules = old._modules
    parent_path, _, name = path.rpartition(".")
    parent = _placeholder_at(root, parent_path, create=False) if parent_path else root
    parent._modules[name] = new
    return new


def _is_fake_quant(graph_module, node, ao):
    if node.op != "call_module":
        return False
    module = graph_module.get_submodule(node.target)
    return isinstance(module, (ao.fake_quantize.FakeQuantizeBase, ao.pt2e.ObserverBase))


def _module_calls(graph):
    """{module path: [[nodes of one call], ...]} from the nodes' ``nn_module_stack``."""
    calls = {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
            if path:
                calls.setdefault(path, {}).setdefault(key, []).append(node)
    return {path: list(by_call.values()) for path, by_call in calls.items()}


def _call_output(nodes, is_fake_quant):
    """The one node of a call whose value leaves the call, or None with the reason."""
    members = set(nodes)
    # A fake quantizer between two layers of the call (it belongs to no module) is inside it.
    for node in nodes:
        for user in node.users:
            if is_fake_quant(user) and all(u in members for u in user.users):
                members.add(user)
    leaving = [n for n in nodes if any(user not in members for user in n.users)]
    if len(leaving) == 1:
        return leaving[0], None
    if not leaving:
        return None, "its output is not used by the rest of the graph"
    return None, f"it produces {len(leaving)} values in the graph, not one"


def insert_taps(graph_module, float_model, ao):
    """Give every module of ``float_model`` whose output is one graph value a LayerTap at its path.

    Returns ``{path: reason}`` for the modules that could not be tapped. The tap goes after the
    value's fake quantizer when that is its only user: what the tap sees is then what the next
    layer of the quantized model receives.
    """
    graph = graph_module.graph
    calls = _module_calls(graph)
    types_by_path = {name: type(module).__name__ for name, module in float_model.named_modules()
                     if name}
    skipped = {}
    # Every output is located before any tap exists: a tap is a node of no module, so it would
    # look like a second way out of the enclosing modules.
    planned = {}
    for path in types_by_path:
        if path not in calls:
            skipped[path] = "it does not appear in the captured graph (not called, or traced away)"
            continue
        outputs = [_call_output(nodes, lambda n: _is_fake_quant(graph_module, n, ao))
                   for nodes in calls[path]]
        reason = next((r for node, r in outputs if node is None), None)
        existing = _placeholder_at(graph_module, path, create=False)
        if reason is None and existing is not None and type(existing) is not nn.Module:
            reason = f"the prepared graph already has a {type(existing).__name__} there"
        if reason is not None:
            skipped[path] = reason
        else:
            planned[path] = [node for node, _ in outputs]
    latest = {}  # value node -> the last tap inserted after it (taps on one value chain up)
    # Deepest paths first, so that for a shared value the inner layer's tap comes first.
    for path in sorted(planned, key=lambda p: -p.count(".")):
        _swap_module(graph_module, path, LayerTap(types_by_path[path]))
        for node in planned[path]:
            users = list(node.users)
            if len(users) == 1 and _is_fake_quant(graph_module, users[0], ao):
                node = users[0]
            value = latest.get(node, node)
            with graph.inserting_after(value):
                tap_node = graph.call_module(path, (value,))
            value.replace_all_uses_with(tap_node, delete_user_cb=lambda user: user is not tap_node)
            latest[node] = tap_node
    graph.lint()
    graph_module.recompile()
    return skipped


def _tap_paths(graph_module):
    return [name for name, module in graph_module.named_modules() if isinstance(module, LayerTap)]


def remove_taps(graph_module, paths=None):
    """Take taps out of the graph (all, or those at ``paths``); their weights stay in place."""
    graph = graph_module.graph
    wanted = None if paths is None else set(paths)
    for node in list(graph.nodes):
        if node.op == "call_module" and (wanted is None or node.target in wanted) and \
                isinstance(graph_module.get_submodule(node.target), LayerTap):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    for path in (_tap_paths(graph_module) if wanted is None else wanted):
        # Back to a plain holder: a tap that is never called would let a hook wait forever.
        _swap_module(graph_module, path, nn.Module())
    graph.lint()
    graph_module.recompile()


# ------------------------------------------------------------------------------ train / eval
# Arguments of the mode-dependent ops that are settings of the model, not of the mode:
# dropout's p; batch_norm's momentum and eps.
_MODE_OP_SETTINGS = {torch.ops.aten.dropout.default: (1,),
                     torch.ops.aten.batch_norm.default: (6, 7)}


_MODE_META_KEY = "neural_distill_training"  # the graph's current form (train or eval)


def _mode_op_settings(graph_module):
    ops = _MODE_OP_SETTINGS
    return [(n.target, [n.args[i] for i in ops[n.target] if i < len(n.args)])
            for n in graph_module.graph.nodes if n.op == "call_function" and n.target in ops]


def _restore_mode_op_settings(graph_module, settings):
    """Put recorded settings back on the mode-dependent ops (matched by order and op)."""
    ops = _MODE_OP_SETTINGS
    nodes = [n for n in graph_module.graph.nodes if n.op == "call_function" and n.target in ops]
    if [n.target for n in nodes] != [target for target, _ in settings]:
        return False
    for node, (target, values) in zip(nodes, settings):
        args = list(node.args)
        for index, value in zip(ops[target], values):
            if index < len(args):
                args[index] = value
        node.args = tuple(args)
    graph_module.recompile()
    return True


def _set_training(graph_module, mode):
    """Switch BatchNorm and Dropout of an exported graph, keeping their settings.

    torchao's move_exported_model_to_train / _eval rewrite these ops from fixed patterns with
    ``ignore_literals=True``: the rewritten ops get the patterns' p=0.5, momentum=0.1 and
    eps=1e-5 whatever the model had. The settings are put back from before the rewrite (the ops
    keep their order in the graph).
    """
    ao = _torchao()
    settings = _mode_op_settings(graph_module)
    nn.Module.train(graph_module, mode)  # the flag on every submodule
    if mode:
        ao.pt2e.move_exported_model_to_train(graph_module)
    else:
        ao.pt2e.move_exported_model_to_eval(graph_module)
    _restore_mode_op_settings(graph_module, settings)
    graph_module.meta[_MODE_META_KEY] = mode
    return graph_module


def _train(self, mode=True):
    return _set_training(self, mode)


def _eval(self):
    return _set_training(self, False)


def _install_train_eval(graph_module):
    object.__setattr__(graph_module, "train", types.MethodType(_train, graph_module))
    object.__setattr__(graph_module, "eval", types.MethodType(_eval, graph_module))
    hooks = graph_module.__dict__.setdefault("_deepcopy_hooks", [])
    if _reinstall_after_deepcopy not in hooks:
        hooks.append(_reinstall_after_deepcopy)


def _reinstall_after_deepcopy(copied):
    # GraphModule.__deepcopy__ rebuilds the module from its graph: attributes set on the
    # instance (train/eval, the mode flags) are lost, its meta and deepcopy hooks are kept. The
    # copied graph is in the original's form, so the mode is restored without a rewrite.
    mode = copied.meta.get(_MODE_META_KEY, True)
    _install_train_eval(copied)
    nn.Module.train(copied, mode)
    setattr(copied, "_exported_training", mode)  # torchao's own flag for its rewrites


def enable_train_eval(graph_module, mode=True):
    """Make ``.train()`` / ``.eval()`` work on an exported graph.

    PT2E forbids them (they would not switch BatchNorm and Dropout in a captured graph); here
    they switch both (torchao's move_exported_model_to_train / _eval) and also set ``.training``,
    which training loops, ``Distillation`` and evaluation code read and restore.
    """
    _install_train_eval(graph_module)
    return _set_training(graph_module, mode)


@contextlib.contextmanager
def _mode(model, training):
    was = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was)


@contextlib.contextmanager
def quantizers_paused(model, fake_quant=False):
    """Observers (and, with ``fake_quant``, fake quantization) off; flags restored exactly."""
    ao = _torchao()
    modules = [m for m in model.modules() if isinstance(m, ao.fake_quantize.FakeQuantizeBase)]
    saved = [(m.fake_quant_enabled.clone(), m.observer_enabled.clone()) for m in modules]
    for module in modules:
        module.disable_observer()
        if fake_quant:
            module.disable_fake_quant()
    try:
        yield
    finally:
        for module, (fq, observer) in zip(modules, saved):
            module.fake_quant_enabled.copy_(fq)
            module.observer_enabled.copy_(observer)


def freeze_observers(model):
    _torchao()
    for module in model.modules():
        if hasattr(module, "disable_observer") and hasattr(module, "observer_enabled"):
            module.disable_observer()


# ------------------------------------------------------------------------------ preparation
def _faithful(a, b):
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return False
    scale = float(b.abs().max()) if b.numel() else 0.0
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4 * max(scale, 1.0)))


def _verify_taps(prepared, float_model, args, kwargs):
    """Drop the taps that do not see what the float layer returns; ``{path: reason}``."""
    paths = _tap_paths(prepared)
    if not paths:
        return {}
    seen_q = FeatureCapture(prepared, paths, "prepared model")
    seen_f = FeatureCapture(float_model, paths, "float model")
    try:
        with torch.no_grad(), quantizers_paused(prepared, fake_quant=True), \
                _mode(prepared, False), _mode(float_model, False):
            prepared(*args, **kwargs)
            float_model(*args, **kwargs)
        wrong = {path: "QAT preparation rewrote it (e.g. a Conv folded with its BatchNorm), so "
                       "its own float output no longer exists in the graph"
                 for path in paths
                 if not _faithful(seen_q.outputs.get(path), seen_f.outputs.get(path))}
    finally:
        seen_q.remove()
        seen_f.remove()
    if wrong:
        remove_taps(prepared, list(wrong))
    return wrong


class QATModel:
    """A model prepared for QAT, with what is needed to train, distill from and export it.

    Attributes:
        model: the prepared ``GraphModule`` to train (fake quantization inside). It shares its
            parameters with the model given to :func:`prepare_qat` (``torch.export`` keeps
            them), so an optimizer built on that model's parameters trains it too.
        float_model: a frozen copy of the float model taken before preparation: the default
            teacher.
        observable: ``{module path: module type}`` of the layers whose outputs can be hooked on
            ``model`` under their original names.
        not_observable: ``{module path: reason}`` for the others.
    """

    def __init__(self, model, float_model, observable, not_observable, args, kwargs,
                 dynamic_shapes, config):
        self.model = model
        self.float_model = float_model
        self.observable = observable
        self.not_observable = not_observable
        self.example_args = args
        self.example_kwargs = kwargs
        self.dynamic_shapes = dynamic_shapes
        self.config = config

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
        return convert_to_int8(self.model)

    def export(self, path):
        """Write the int8 model as a ``torch.export`` program (``.pt2``); an ExportInfo."""
        converted = self.convert()
        return save_exported(converted, path, self.example_args, self.example_kwargs,
                             self.dynamic_shapes, float_model=self.float_model, int8=True)


def prepare_qat(model, config, where="QuantizationAwareTrainingConfig"):
    """Prepare ``model`` (an ``nn.Module``) for QAT as ``config`` says; returns a QATModel."""
    ao = _torchao()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where}: expected a torch.nn.Module, got {type(model).__name__}")
    if config.example_inputs is None:
        raise ConfigError(
            f"{where}: example_inputs: expected one batch of model inputs, got None. The model "
            f"is captured with torch.export, which traces it on example inputs: pass e.g. "
            f"QuantizationAwareTrainingConfig(example_inputs=next(iter(train_loader))[0]).")
    args, kwargs = normalize_example_inputs(config.example_inputs, f"{where}: example_inputs")
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

    float_model = copy.deepcopy(model)
    float_model.eval()
    for parameter in float_model.parameters():
        parameter.requires_grad_(False)

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
    prepared = ao.quantize_pt2e.prepare_qat_pt2e(graph, quantizer)
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
    return QATModel(prepared, float_model, observable, skipped, export_args, export_kwargs,
                    dynamic_shapes, config)


@contextlib.contextmanager
def quiet_copies():
    """Deep-copying an exported module makes torch 2.13 warn that ``isinstance(treespec,
    LeafSpec)`` is deprecated (copy reconstructs the LeafSpec objects of its input/output specs);
    the warning is about torch's own code, so it is hidden while we copy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)",
                                category=FutureWarning)
        yield


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


def _unobserved(model):
    """Names of the quantizers that have not seen a single value yet."""
    ao = _torchao()
    names = []
    for name, module in model.named_modules():
        if isinstance(module, ao.fake_quantize.FakeQuantizeBase):
            observer = getattr(module, "activation_post_process", None)
            low = getattr(observer, "min_val", None)
            if isinstance(low, torch.Tensor) and (low.numel() == 0 or bool(torch.isinf(low).any())):
                names.append(name)
    return names


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


# ------------------------------------------------------------------------------ export / load
@dataclass
class ExportInfo:
    """What ``export`` wrote: sizes in bytes of the file and of the tensors it stores."""

    path: str
    file_bytes: int
    weight_bytes: int
    float_weight_bytes: int = 0
    int8: bool = False

    @property
    def compression(self):
        """How many times smaller the stored tensors are than the float model's."""
        return self.float_weight_bytes / self.weight_bytes if self.weight_bytes else 0.0


def tensor_bytes(tensors):
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def module_weight_bytes(model):
    """Bytes of a model's parameters and buffers (the tensors a checkpoint stores)."""
    return tensor_bytes(list(model.state_dict().values()))


def program_weight_bytes(program):
    """Bytes of the tensors an ExportedProgram stores (parameters, buffers, constants)."""
    return tensor_bytes(list(program.state_dict.values()) + list(program.constants.values()))


def save_exported(model, path, args, kwargs, dynamic_shapes, float_model=None, int8=False):
    program = _export(model, args, kwargs, dynamic_shapes, "export")
    # torch.export.save would also store the example inputs (a batch of the user's data, and
    # with a sliced batch the whole storage behind it): the file is for the model alone.
    program.example_inputs = None
    # Per-node provenance (which pass created the node from which other node, source stack
    # traces) is for debugging the capture; it is most of a small model's file.
    for node in program.graph.nodes:
        for key in ("from_node", "stack_trace", "source_fn_stack", "torch_fn"):
            node.meta.pop(key, None)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    torch.export.save(program, path)
    return ExportInfo(path=path, file_bytes=os.path.getsize(path),
                      weight_bytes=program_weight_bytes(program),
                      float_weight_bytes=module_weight_bytes(float_model) if float_model is not None
                      else program_weight_bytes(program), int8=int8)


def lower_to_x86(quantized, example_inputs):
    """The int8 q/dq model lowered to oneDNN int8 kernels (specialized to this input shape).

    torchao's lowering turns flatten into ``view``, which fails on the channels-last output of
    the int8 convolutions; ``reshape`` computes the same and copies only when it must.
    """
    ao = _torchao()
    args, kwargs = normalize_example_inputs(example_inputs, "lower_to_x86: example_inputs")
    if kwargs:
        raise ConfigError("lower_to_x86: example_inputs: torchao's x86 lowering takes positional "
                          "inputs only; got keyword inputs. Pass a tensor or a tuple.")
    with torch.no_grad(), quiet_copies():
        lowered = ao.lowering.lower_pt2e_quantized_to_x86(quantized, args)
    for node in lowered.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.view.default:
            node.target = torch.ops.aten.reshape.default
    lowered.recompile()
    return lowered


def load_int8(path, example_inputs=None):
    """Load a model written by ``export``.

    With ``example_inputs``: lowered to int8 oneDNN kernels for inputs of that shape (the fast
    path). Without: the portable q/dq module, which computes the same numbers with float kernels.
    """
    if not os.path.isfile(path):
        raise ModelError(f"load_int8: {path} not found")
    _torchao()  # registers the quantized_decomposed ops the program refers to
    with quiet_copies():
        module = torch.export.load(path).module()
    if example_inputs is None:
        return module
    return lower_to_x86(module, example_inputs)


def int8_kernels(model):
    """The oneDNN int8 ops a lowered model calls (empty for a float or q/dq model)."""
    return sorted({str(node.target) for node in model.graph.nodes
                   if node.op == "call_function" and str(node.target).startswith("onednn.q")})


def measure_latency(model, example_inputs, repeats=30, warmup=5):
    """Median milliseconds per call of ``model`` on ``example_inputs`` (no gradient)."""
    args, kwargs = normalize_example_inputs(example_inputs, "measure_latency")
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(*args, **kwargs)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
