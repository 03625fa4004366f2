"""Capturing a model with ``torch.export``: example inputs, dynamic batch, clear errors."""

import torch

from neural_distill.errors import ConfigError, ModelError


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



# ------------------------------------------------------------------------------ call sites
# torchao's quantizers group the nodes of a graph into "source partitions" by the innermost
# module path of each node's ``nn_module_stack``. A module called at several places (the one
# ``self.relu`` of a torchvision ResNet block, called after bn1 and after the residual add) makes
# one partition with several outputs, and the x86 quantizer stops with "Input partition has more
# than one output node". torch.export already tells the calls apart (the stack key of the second
# call ends in "@1"); for annotation each later call gets an innermost stack entry of its own, as
# if every call site had its own copy of the module. The original path stays in the stack, so
# excluded_layers still matches every call, and the entries are taken out after preparation.
_CALL_SITE = "@call_site"


def reused_modules(graph):
    """{module path: number of calls} for the modules the graph calls more than once."""
    calls = {}
    for node in graph.nodes:
        for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
            calls.setdefault(path, set()).add(key)
    return {path: len(keys) for path, keys in calls.items() if path and len(keys) > 1}


def separate_call_sites(graph):
    """Give each later call of a reused module its own innermost stack entry; the paths."""
    separated = set()
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if not stack:
            continue
        key, (path, kind) = list(stack.items())[-1]
        _, at, call = key.rpartition("@")
        if at and call.isdigit():
            stack = dict(stack)
            stack[key + _CALL_SITE] = (f"{path}@{call}", kind)
            node.meta["nn_module_stack"] = stack
            separated.add(path)
    return sorted(separated)


def restore_call_sites(graph):
    """Take out the entries separate_call_sites added (also on nodes copied from those)."""
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack and any(key.endswith(_CALL_SITE) for key in stack):
            node.meta["nn_module_stack"] = {key: value for key, value in stack.items()
                                            if not key.endswith(_CALL_SITE)}
