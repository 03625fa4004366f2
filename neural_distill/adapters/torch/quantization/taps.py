"""Original module names on a captured graph: a LayerTap at each path whose output is one value.

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

import torch
from torch import nn

from neural_distill.adapters.torch.features import FeatureCapture
from neural_distill.adapters.torch.quantization.modes import _mode
from neural_distill.adapters.torch.quantization.observers import quantizers_paused


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

