"""Sparsity during training for PyTorch models: masks chosen by a schedule, applied after
every optimizer step (docs/pruning.md). The schedule itself is framework-neutral
(``neural_distill.pruning.schedule``).

:class:`Pruner` is a set of hooks (``neural_distill.events``): the compression manager of
``prepare_compression`` and a ``Distillation`` with a ``pruning:`` section call it like any
other part. Masks are plain boolean tensors kept here, never registered on the model, so the
model's ``state_dict`` holds the zeroed weights and nothing else: what is saved is already
folded.
"""

import logging

import torch

from neural_distill.errors import ConfigError, ModelError
from neural_distill.events import Hooks
from neural_distill.pruning.schedule import HEAD_NAMES, matches

logger = logging.getLogger("neural_distill")

_MOMENTUM = 0.9  # snip_momentum: how much of the previous steps' scores is kept


def _hf_conv1d():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return ()
    return (Conv1D,)


def _kind(module):
    """'Linear', 'Conv' or None; HF's Conv1D (GPT-2) is a Linear with a transposed weight."""
    if isinstance(module, (torch.nn.Linear,) + _hf_conv1d()):
        return "Linear"
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return "Conv"
    return None


class Layer:
    """One pruned weight: its module path, the parameter, its mask and its score."""

    def __init__(self, name, module):
        self.name = name
        self.weight = module.weight
        self.transposed = isinstance(module, _hf_conv1d())  # Conv1D keeps [in, out]
        self.mask = None
        self.score = None

    def matrix(self, tensor):
        """``tensor`` (shaped like the weight) as [outputs, inputs]."""
        if self.transposed:
            return tensor.t()
        return tensor.reshape(tensor.shape[0], -1)

    def from_matrix(self, matrix):
        return matrix.t() if self.transposed else matrix.reshape(self.weight.shape)


def _embedding_weights(model):
    return {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}


def select_layers(model, group, taken=()):
    """The layers of ``model`` that ``group`` prunes, in module order (skipping ``taken``)."""
    candidates = [(name, module) for name, module in model.named_modules()
                  if name and _kind(module) in getattr(group, "op_types", ("Conv", "Linear"))
                  and isinstance(getattr(module, "weight", None), torch.nn.Parameter)]
    try:
        if group.op_names:
            chosen = [(n, m) for n, m in candidates if matches(n, group.op_names)]
            if not chosen:
                raise ConfigError(
                    f"{group.where}: op_names {group.op_names} match no Conv or Linear layer "
                    f"of the model. Layers that can be pruned: "
                    f"{', '.join(n for n, _ in candidates) or 'none'}")
        else:
            # The output layer (the last one, or one named like a head) and weights tied to an
            # embedding stay dense: pruning them costs accuracy and saves little.
            tied = _embedding_weights(model)
            last = candidates[-1][0] if candidates else None
            chosen = [(n, m) for n, m in candidates
                      if n != last and n.rsplit(".", 1)[-1] not in HEAD_NAMES
                      and id(m.weight) not in tied]
        chosen = [(n, m) for n, m in chosen
                  if not matches(n, group.excluded_op_names) and n not in taken]
    except Exception as exc:  # a malformed regular expression
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{group.where}: op_names / excluded_op_names: {exc}") from None
    layers = []
    for name, module in chosen:
        layer = Layer(name, module)
        rows, cols = layer.matrix(layer.weight.detach()).shape
        pattern = group.pattern
        fits = (cols % pattern.every == 0) if pattern.n_of_m else \
            (rows % pattern.rows == 0 and cols % pattern.cols == 0)
        if not fits:
            if group.op_names:
                raise ConfigError(
                    f"{group.where}: layer '{name}' (weight {rows} outputs x {cols} inputs) "
                    f"does not divide into the pattern '{pattern.text}'. Choose a pattern that "
                    f"divides it, or leave the layer out of op_names.")
            logger.warning("pruning: layer '%s' (%d x %d) skipped: it does not divide into "
                           "pattern '%s'", name, rows, cols, pattern.text)
            continue
        layers.append(layer)
    return layers


def _block_scores(layer, pattern, score):
    """Per-block scores of a layer, shaped [row blocks, column blocks]."""
    m = layer.matrix(score)
    rows, cols = m.shape
    return m.reshape(rows // pattern.rows, pattern.rows, cols // pattern.cols,
                     pattern.cols).sum(dim=(1, 3))


def _expand(layer, pattern, block_mask):
    m = block_mask.repeat_interleave(pattern.rows, 0).repeat_interleave(pattern.cols, 1)
    return layer.from_matrix(m)


def _keep_largest(scores, prune):
    """A boolean mask of ``scores``' shape keeping all but the ``prune`` smallest."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if prune > 0:
        keep[torch.topk(scores.reshape(-1), prune, largest=False).indices] = False
    return keep.reshape(scores.shape)


class Pruner(Hooks):
    """The pruning groups of one model, driven by the training hooks.

    Steps are counted in optimizer steps (the ``on_after_optimizer_step`` calls, or
    ``on_step_end`` for a loop that does not call it); epoch groups update on
    ``on_epoch_begin``.
    """

    def __init__(self, model, groups, where="pruning"):
        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"{where}: pruning needs a torch.nn.Module, got "
                             f"{type(model).__name__}")
        self.model = model
        self.groups = []
        taken = set()
        for group in groups:
            layers = select_layers(model, group, taken)
            taken.update(layer.name for layer in layers)
            if not layers:
                logger.warning("%s: no layer to prune", group.where)
            self.groups.append((group, layers))
        self.step = 0
        self._epoch = -1
        self._stepped = False
        self._hooked = False  # on_after_optimizer_step is called: it alone counts steps

    def resume(self, step, epoch):
        """Continue a run restored from a checkpoint at ``step`` / ``epoch``: the schedule goes
        on from there, and the zeros the checkpoint holds are the masks."""
        self.step, self._epoch, self._hooked = step, epoch, step > 0
        if step > 0:
            for layer in self.layers:
                layer.mask = layer.weight.detach() != 0

    @property
    def layers(self):
        return [layer for _, layers in self.groups for layer in layers]

    # ------------------------------------------------------------------ hooks
    def on_epoch_begin(self, epoch):
        self._epoch = epoch
        for group, layers in self.groups:
            if group.unit == "epoch" and group.due(epoch):
                self._update(group, layers, epoch)
        self.apply()

    def on_step_begin(self, batch_id):
        self._stepped = False

    def on_before_optimizer_step(self):
        with torch.no_grad():
            for group, layers in self.groups:
                if not group.pruning_type.startswith("snip"):
                    continue
                for layer in layers:
                    grad = layer.weight.grad
                    if grad is None:
                        continue
                    fresh = (layer.weight.detach() * grad).abs().float()
                    if layer.score is None or group.pruning_type == "snip":
                        layer.score = fresh
                    else:
                        layer.score.mul_(_MOMENTUM).add_(fresh)

    def on_after_optimizer_step(self):
        if not self._hooked:
            # Steps counted so far by on_step_end were batches of a gradient-accumulation
            # group, not optimizer steps: the count starts here.
            self._hooked, self.step = True, 0
        self._after_step()

    def on_step_end(self):
        if not self._stepped and not self._hooked:
            self._after_step()  # a loop that never calls on_after_optimizer_step
        self._stepped = False

    def on_train_end(self):
        self.apply()

    def _after_step(self):
        for group, layers in self.groups:
            if group.unit == "step" and group.due(self.step):
                self._update(group, layers, self.step)
        self.apply()
        self.step += 1
        self._stepped = True

    # ------------------------------------------------------------------ masks
    @torch.no_grad()
    def apply(self):
        """Zero every pruned weight (after an optimizer step moved it)."""
        for layer in self.layers:
            if layer.mask is not None:
                layer.weight.mul_(layer.mask.to(layer.weight.dtype))

    def _score(self, group, layer):
        score = layer.score if layer.score is not None and \
            group.pruning_type.startswith("snip") else layer.weight.detach().abs().float()
        if layer.mask is not None:
            # Sparsity only grows: what is pruned stays pruned.
            score = score.masked_fill(~layer.mask, -1.0)
        return score

    @torch.no_grad()
    def _update(self, group, layers, k):
        if not layers:
            return
        pattern = group.pattern
        if pattern.n_of_m:
            drop = round((pattern.every - pattern.keep) * group.fraction(k))
            for layer in layers:
                m = layer.matrix(self._score(group, layer))
                rows, cols = m.shape
                chunks = m.reshape(rows, cols // pattern.every, pattern.every)
                keep = torch.ones_like(chunks, dtype=torch.bool)
                if drop:
                    index = torch.topk(chunks, drop, dim=-1, largest=False).indices
                    keep.scatter_(-1, index, False)
                layer.mask = layer.from_matrix(keep.reshape(rows, cols))
            return
        sparsity = group.sparsity(k)
        blocks = [_block_scores(layer, pattern, self._score(group, layer)) for layer in layers]
        if group.scope == "global":
            ratios = self._global_ratios(group, blocks, sparsity)
        else:
            ratios = [sparsity] * len(layers)
        for layer, scores, ratio in zip(layers, blocks, ratios):
            ratio = min(max(ratio, group.min_ratio), group.max_ratio)
            prune = int(round(ratio * scores.numel()))
            layer.mask = _expand(layer, pattern, _keep_largest(scores, prune))

    @staticmethod
    def _global_ratios(group, blocks, sparsity):
        """Per-layer ratios from one threshold over every block of the group (block scores are
        compared per weight, so blocks of different layers weigh the same)."""
        flat = torch.cat([b.reshape(-1) for b in blocks])
        prune = int(round(sparsity * flat.numel()))
        if prune == 0:
            return [0.0] * len(blocks)
        threshold = torch.kthvalue(flat, prune).values
        return [float((b <= threshold).float().mean()) for b in blocks]

    def finished(self):
        """Whether every group has reached its target (its last mask update is done)."""
        return all(not layers or (self.step > group.end if group.unit == "step"
                                  else self._epoch > group.end)
                   for group, layers in self.groups)

    def sparsity(self):
        """``{layer: fraction of zero weights}`` of the pruned layers."""
        return {layer.name: float((layer.weight == 0).float().mean()) for layer in self.layers}


def model_sparsity(model):
    """The fraction of zero weights over every Conv and Linear weight of ``model``."""
    zeros = total = 0
    for module in model.modules():
        if _kind(module) is not None and isinstance(getattr(module, "weight", None),
                                                    torch.Tensor):
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / total if total else 0.0


def build_pruner(model, groups, where="pruning"):
    return Pruner(model, groups, where)
