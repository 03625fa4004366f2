"""A small PyTorch ``Trainer`` that runs algorithms (``neural_distill.algorithms``).

::

    from neural_distill.algorithms.distillation import Distillation, KLDivergence
    from neural_distill.trainer import Trainer

    trainer = Trainer(model=student, train_dataloader=train_loader, eval_dataloader=eval_loader,
                      max_duration="1ep", algorithms=[Distillation(teacher, KLDivergence(4.0))])
    trainer.fit()

It trains on the package's one PyTorch loop (``neural_distill.adapters.torch.loop``), the same
that ``Distillation.fit()`` runs, firing the events of :class:`neural_distill.events.Event` to
the algorithms. See ``docs/algorithms.md``.
"""

import itertools
import os
import random

import numpy as np
import torch
import torch.nn.functional as F

from neural_distill.adapters.torch import loop
from neural_distill.adapters.torch.adapter import ADAPTER
from neural_distill.adapters.torch.optim import build_optimizer
from neural_distill.adapters.torch.outputs import call_model, logits_of, to_device
from neural_distill.algorithms.base import MetricsLogger
from neural_distill.core.batches import split_batch
from neural_distill.errors import ConfigError, DataError, ModelError
from neural_distill.trainer.dispatch import TrainerHooks
from neural_distill.trainer.state import State, parse_duration

__all__ = ["Trainer", "State"]

# The optimizer when none is given: plain SGD, learning rate 0.1 (config names of optim.py).
DEFAULT_OPTIMIZER = {"SGD": {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False,
                             "weight_decay": 0.0}}


def _as_list(value, name, kind):
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, kind):
            raise ConfigError(f"Trainer: expected {name} to be a {kind.__module__}."
                              f"{kind.__qualname__} or a list of them, got "
                              f"{type(item).__name__}")
    return items


class _Optimizers:
    """Several optimizers driven as one by the loop."""

    def __init__(self, optimizers):
        self.optimizers = optimizers
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none=True):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()


class Trainer:
    """Train ``model`` for ``max_duration`` with ``algorithms``; see ``docs/algorithms.md``.

    Args:
        model: an ``nn.Module`` called on the inputs of ``(inputs, targets)`` batches and trained
            with ``loss_fn(outputs, targets)`` (cross-entropy by default), or a model with a
            ``.loss(outputs, batch)`` method, called on the whole batch (Composer style).
        train_dataloader, eval_dataloader: iterables of batches; evaluation (mean loss and top-1
            accuracy) runs on ``eval_dataloader`` at the end of every epoch and of training.
        max_duration: ``'Nep'`` (epochs), ``'Nba'`` (batches) or an int (epochs).
        algorithms: objects with ``match(event, state)`` / ``apply(event, state, logger)``.
        optimizers: an optimizer or a list (default: SGD, lr 0.1, on the model's parameters).
        schedulers: ``torch.optim.lr_scheduler`` objects, stepped after every batch.
        save_folder: where checkpoints and ``metrics.jsonl`` go (nothing is written without).
        save_filename: checkpoint file name; ``{epoch}`` and ``{batch}`` (batches done) are
            filled in. A checkpoint is written every ``save_interval`` and at the end.
        save_interval: ``'Nep'`` or ``'Nba'``.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'auto'`` or a torch.device (default auto).
        seed: seeds Python, NumPy and torch at the start of ``fit()`` (and the algorithms'
            random choices), so a run is repeatable.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` for a plain ``nn.Module``.
        progress_bar: show a tqdm bar per epoch.
    """

    def __init__(self, model=None, train_dataloader=None, eval_dataloader=None, max_duration=None,
                 algorithms=(), optimizers=None, schedulers=None, save_folder=None,
                 save_filename="ep{epoch}-ba{batch}.pt", save_interval="1ep", device=None,
                 seed=None, loss_fn=None, progress_bar=True):
        if not isinstance(model, torch.nn.Module):
            raise ModelError(f"Trainer: expected model to be a torch.nn.Module, got "
                             f"{type(model).__name__}")
        if train_dataloader is None:
            raise DataError("Trainer: train_dataloader is required (an iterable of batches, "
                            "e.g. a torch DataLoader)")
        self.model = model
        self.train_dataloader = train_dataloader
        self.eval_dataloader = eval_dataloader
        self.max_duration = parse_duration(max_duration, "Trainer: max_duration")
        self.save_interval = parse_duration(save_interval, "Trainer: save_interval")
        self.algorithms = list(algorithms) if isinstance(algorithms, (list, tuple)) else [
            algorithms]
        for algorithm in self.algorithms:
            if not (callable(getattr(algorithm, "match", None))
                    and callable(getattr(algorithm, "apply", None))):
                raise ConfigError(f"Trainer: each algorithm needs match(event, state) and "
                                  f"apply(event, state, logger) methods; "
                                  f"{type(algorithm).__name__} has not both")
        self.device = (device if isinstance(device, torch.device)
                       else ADAPTER.resolve_device(device or "auto", "Trainer: device"))
        self.model.to(self.device)
        self.optimizers = _as_list(optimizers, "optimizers", torch.optim.Optimizer) or [
            build_optimizer(DEFAULT_OPTIMIZER, [p for p in model.parameters() if p.requires_grad])]
        self.schedulers = _as_list(schedulers, "schedulers", torch.optim.lr_scheduler.LRScheduler)
        self.save_folder = None if save_folder is None else str(save_folder)
        self.save_filename = save_filename
        self.checkpoint_path(0, 0)  # a bad placeholder fails now, not after an epoch
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"Trainer: expected seed to be an int or None, got {seed!r}")
        self.seed = seed
        if loss_fn is not None and not callable(loss_fn):
            raise ConfigError(f"Trainer: loss_fn must be callable (outputs, targets) -> scalar, "
                              f"got {type(loss_fn).__name__}")
        self.loss_fn = loss_fn
        self.progress_bar = progress_bar
        self.logger = MetricsLogger()
        self.history = []
        self.saved_checkpoints = []
        self.state = None

    # ---------------------------------------------------------------- pieces the loop calls
    def checkpoint_path(self, epoch, batch):
        if self.save_folder is None:
            return None
        try:
            name = self.save_filename.format(epoch=epoch, batch=batch)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigError(f"Trainer: save_filename {self.save_filename!r} can only use the "
                              f"placeholders {{epoch}} and {{batch}} ({exc!r})") from None
        return os.path.join(self.save_folder, name)

    def _split(self, batch):
        return split_batch(batch, lambda b: isinstance(b, torch.Tensor), "train_dataloader")

    def _forward(self, batch):
        """``(inputs, outputs, loss)`` of the model on one batch (already on the device)."""
        inputs, targets = self._split(batch)
        model = self.model
        if callable(getattr(model, "loss", None)):
            outputs = model(batch)
            return inputs, outputs, model.loss(outputs, batch)
        outputs = call_model(model, inputs)
        if self.loss_fn is not None:
            return inputs, outputs, self.loss_fn(outputs, targets)
        if targets is None:
            raise DataError("Trainer: the batches have no targets, so the default cross-entropy "
                            "cannot be computed. Yield (inputs, targets), pass loss_fn, or give "
                            "the model a .loss(outputs, batch) method.")
        return inputs, outputs, F.cross_entropy(logits_of(outputs, "model output"), targets)

    def evaluate(self):
        """Mean loss and top-1 accuracy of the model on ``eval_dataloader`` (``{}`` without)."""
        if self.eval_dataloader is None:
            return {}
        model, was_training = self.model, self.model.training
        model.eval()
        loss_sum, correct, count, batches = 0.0, 0, 0, 0
        try:
            with torch.no_grad():
                for batch in self.eval_dataloader:
                    batch = to_device(batch, self.device)
                    _, outputs, loss = self._forward(batch)
                    loss_sum += float(loss)
                    batches += 1
                    targets = self._split(batch)[1]
                    logits = logits_of(outputs, "model output")
                    if (isinstance(targets, torch.Tensor) and not targets.is_floating_point()
                            and targets.shape == logits.shape[:-1]):
                        correct += int((logits.argmax(-1) == targets).sum())
                        count += targets.numel()
        finally:
            model.train(was_training)
        record = {"eval_loss": loss_sum / batches} if batches else {}
        if count:
            record["accuracy"] = correct / count
        return record

    # ---------------------------------------------------------------- fit
    def fit(self):
        """Train for ``max_duration``; returns ``self.history`` (one record per epoch)."""
        if self.seed is not None:
            random.seed(self.seed)
            np.random.seed(self.seed % 2 ** 32)
            torch.manual_seed(self.seed)
        count, unit = self.max_duration
        steps = loop.steps_per_epoch(self.train_dataloader)
        if unit == "ep":
            epochs, total_epochs, max_batches = range(count), count, None
        else:
            # A batch budget may end inside an epoch, or span epochs of an unknown length.
            total_epochs = -(-count // steps) if steps else None
            epochs = range(total_epochs) if total_epochs else itertools.count()
            max_batches = count
        self.state = State(self.model, self.optimizers, self.schedulers, self.device, self.seed,
                           self.train_dataloader, self.eval_dataloader, self.max_duration, steps)
        self.logger.reset()
        hooks = TrainerHooks(self)
        hooks.on_train_begin()
        try:
            loop.train_loop(hooks, self.model, self.train_dataloader, self._device_forward,
                            _Optimizers(self.optimizers), epochs, total_epochs=total_epochs,
                            steps=steps, max_batches=max_batches, show_bar=self.progress_bar)
        except BaseException:
            # Teachers and anything else algorithms changed are restored even on failure.
            hooks.end_after_failure()
            raise
        hooks.on_train_end()
        return self.history

    def _device_forward(self, batch):
        batch = to_device(batch, self.device)
        self.state.batch = batch
        return self._forward(batch)

