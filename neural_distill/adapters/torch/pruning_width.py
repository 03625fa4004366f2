"""Width pruning into a smaller dense model (Minitron: prune by activation importance, then
distil from the unpruned teacher). ``neural_distill.pruning.prune_width`` calls this.

A *width* is a hidden dimension between a producer (the layer that writes it) and a consumer
(the layer that reads it), with only element-wise modules in between, so removing a unit is
removing one output of the producer (and of the norms in between) and one input of the
consumer. Found here:

- in ``nn.Sequential`` containers: ``Linear -> [activations, dropout, BatchNorm1d] -> Linear``,
  ``Conv -> [BatchNorm, activations, pooling, dropout] -> Conv`` (groups 1), and
  ``Conv -> ... -> Flatten -> Linear`` (each channel's block of flattened inputs);
- Hugging Face GPT-2 blocks (``mlp.c_fc -> mlp.c_proj``; ``config.n_inner`` updated) and BERT
  layers (``intermediate.dense -> output.dense``; ``config.intermediate_size`` updated).

A unit's importance is the mean absolute value of its activation (the consumer's input) over
the calibration data; the most important ``keep`` fraction of each width stays.
"""

import copy

import torch
from torch import nn

from neural_distill.errors import ConfigError, DataError, ModelError

_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU,
                nn.Mish, nn.Hardswish, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


def _conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return None
    return Conv1D


class Width:
    """One prunable hidden dimension: ``units`` wide, written by ``producer`` (and the norms
    in ``between``), read by ``consumer``; ``flatten`` inputs per unit when a Flatten
    separates a conv producer from a Linear consumer; ``config_key`` of a HF config."""

    def __init__(self, name, producer, consumer, between=(), flatten=1, config_key=None):
        self.name, self.producer, self.consumer = name, producer, consumer
        self.between, self.flatten, self.config_key = list(between), flatten, config_key
        self.units = _outputs(producer)
        self.importance = torch.zeros(self.units, dtype=torch.float64)
        self.batches = 0


def _outputs(module):
    conv1d = _conv1d_class()
    if conv1d is not None and isinstance(module, conv1d):
        return module.weight.shape[1]
    return module.weight.shape[0]


def _sequential_widths(model):
    found = []
    for path, container in model.named_modules():
        if not isinstance(container, nn.Sequential):
            continue
        children = list(container.named_children())
        for i, (name, producer) in enumerate(children):
            is_linear = type(producer) is nn.Linear
            is_conv = isinstance(producer, (nn.Conv1d, nn.Conv2d)) and producer.groups == 1
            if not (is_linear or is_conv):
                continue
            between, flattened = [], False
            for _, module in children[i + 1:]:
                if isinstance(module, _ELEMENTWISE) or (is_conv and isinstance(module, _POOLS)):
                    continue
                if isinstance(module, _NORMS) and module.num_features == _outputs(producer):
                    between.append(module)
                    continue
                if is_conv and isinstance(module, nn.Flatten) and not flattened:
                    flattened = True
                    continue
                consumer = None
                if type(module) is nn.Linear and (is_linear or flattened):
                    consumer = module
                elif is_conv and not flattened and type(module) is type(producer) and \
                        module.groups == 1:
                    consumer = module
                if consumer is not None:
                    inputs = consumer.weight.shape[1]
                    units = _outputs(producer)
                    if inputs % units == 0 and (flattened or inputs == units):
                        found.append(Width(f"{path}.{name}" if path else name, producer,
                                           consumer, between, inputs // units))
                break
    return found


def _transformer_widths(model):
    found = []
    conv1d = _conv1d_class()
    for path, module in model.named_modules():
        mlp = getattr(module, "mlp", None)
        if conv1d is not None and isinstance(getattr(mlp, "c_fc", None), conv1d) and \
                isinstance(getattr(mlp, "c_proj", None), conv1d):
            found.append(Width(f"{path}.mlp", mlp.c_fc, mlp.c_proj, config_key="n_inner"))
        intermediate, output = getattr(module, "intermediate", None), getattr(module, "output",
                                                                              None)
        if type(getattr(intermediate, "dense", None)) is nn.Linear and \
                type(getattr(output, "dense", None)) is nn.Linear:
            found.append(Width(f"{path}.intermediate", intermediate.dense, output.dense,
                               config_key="intermediate_size"))
    return found


def find_widths(model):
    """Every width of ``model`` that can be pruned (see the module docstring)."""
    return _transformer_widths(model) + _sequential_widths(model)


def _batch_inputs(batch):
    if isinstance(batch, dict):
        return (), {k: v for k, v in batch.items() if k not in ("labels", "label")}
    if isinstance(batch, (tuple, list)):
        return (batch[0],), {}
    return (batch,), {}


def _outputs_norm(module):
    weight = module.weight.detach().double()
    conv1d = _conv1d_class()
    if conv1d is not None and isinstance(module, conv1d):
        weight = weight.t()
    return weight.reshape(weight.shape[0], -1).norm(dim=1)


def _measure(model, widths, calibration_data):
    def hook(width):
        def record(_module, inputs):
            x = inputs[0].detach()
            conv1d = _conv1d_class()
            if isinstance(width.consumer, (nn.Linear,) + ((conv1d,) if conv1d else ())):
                x = x.reshape(-1, width.units, width.flatten) if width.flatten > 1 else \
                    x.reshape(-1, width.units)
                values = x.abs().double().mean(dim=(0, 2) if width.flatten > 1 else 0)
            else:
                values = x.abs().double().transpose(0, 1).reshape(width.units, -1).mean(1)
            width.importance += values
            width.batches += 1
        return record

    handles = [w.consumer.register_forward_pre_hook(hook(w)) for w in widths]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in calibration_data:
                args, kwargs = _batch_inputs(batch)
                model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if widths and widths[0].batches == 0:
        raise DataError("prune_width: calibration_data yielded no batch; give a few batches of "
                        "the training inputs")


def _shrink(width, index):
    conv1d = _conv1d_class()
    p, c = width.producer, width.consumer
    with torch.no_grad():
        if conv1d is not None and isinstance(p, conv1d):
            p.weight = nn.Parameter(p.weight[:, index].clone())
            p.bias = nn.Parameter(p.bias[index].clone())
            p.nf = len(index)
        else:
            p.weight = nn.Parameter(p.weight[index].clone())
            if p.bias is not None:
                p.bias = nn.Parameter(p.bias[index].clone())
            setattr(p, "out_features" if isinstance(p, nn.Linear) else "out_channels",
                    len(index))
        for norm in width.between:
            for name in ("weight", "bias"):
                if getattr(norm, name) is not None:
                    setattr(norm, name, nn.Parameter(getattr(norm, name)[index].clone()))
            for name in ("running_mean", "running_var"):
                if getattr(norm, name) is not None:
                    setattr(norm, name, getattr(norm, name)[index].clone())
            norm.num_features = len(index)
        columns = index
        if width.flatten > 1:
            columns = (index[:, None] * width.flatten + torch.arange(width.flatten)).reshape(-1)
        if conv1d is not None and isinstance(c, conv1d):
            c.weight = nn.Parameter(c.weight[columns].clone())
        else:
            c.weight = nn.Parameter(c.weight[:, columns].clone())
            setattr(c, "in_features" if isinstance(c, nn.Linear) else "in_channels",
                    len(columns))


def prune_width(model, keep, calibration_data, layers=None):
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ConfigError(f"prune_width: keep: expected a fraction in (0, 1], got {keep!r}")
    pruned = copy.deepcopy(model)
    widths = find_widths(pruned)
    if layers is not None:
        names = {w.name for w in widths}
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ModelError(f"prune_width: layers {unknown} are not prunable widths of the "
                             f"model. Widths found: {sorted(names) or 'none'}")
        widths = [w for w in widths if w.name in set(layers)]
    if not widths:
        raise ModelError(f"prune_width: found no width to prune in "
                         f"{type(model).__qualname__}: it needs Linear/Conv pairs inside an "
                         f"nn.Sequential, or GPT-2/BERT blocks (docs/pruning.md)")
    if calibration_data is None:
        # Shapes only (a checkpoint's weights replace these): the producers' weight norms.
        for width in widths:
            width.importance = _outputs_norm(width.producer)
    else:
        _measure(pruned, widths, calibration_data)
    config = getattr(pruned, "config", None)
    for width in widths:
        kept = max(1, int(round(keep * width.units)))
        index = torch.sort(torch.topk(width.importance, kept).indices).values
        _shrink(width, index)
        if config is not None and width.config_key is not None:
            setattr(config, width.config_key, kept)
    return pruned


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
