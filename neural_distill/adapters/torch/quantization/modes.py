"""``train()`` / ``eval()`` for a captured graph, keeping BatchNorm and Dropout settings."""

import contextlib
import types

import torch
from torch import nn

from neural_distill.adapters.torch.quantization.backend import _torchao

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

