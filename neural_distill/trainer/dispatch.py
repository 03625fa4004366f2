"""The Trainer's side of the loop's events: state updates, algorithms, logs, checkpoints.

The loop (``adapters/torch/loop.py``) calls one method per ``Event`` value, as it does on the
``Distillation`` experiment; here each call updates the :class:`State`, runs the algorithms
that match the event, then does the trainer's own work for it.
"""

import json
import logging
import os
import time

from ..algorithms.base import fire
from ..errors import ModelError
from ..events import Event
from ..workspace import _json_safe
from .checkpoint import save_checkpoint

logger = logging.getLogger("neural_distill")


class Hooks:
    def __init__(self, trainer):
        self.trainer = trainer
        self.state = trainer.state
        self.algorithms = trainer.algorithms
        self.metrics = trainer.logger
        self._epoch_started = time.perf_counter()
        self._saved_at_step = None
        self._save_count, self._save_unit = trainer.save_interval

    def _fire(self, event):
        fire(self.algorithms, event, self.state, self.metrics)

    def on_train_begin(self):
        self.trainer.history = []
        self._fire(Event.TRAIN_BEGIN)

    def on_epoch_begin(self, epoch):
        self.state.batch_in_epoch = 0
        self._epoch_started = time.perf_counter()
        self._fire(Event.EPOCH_BEGIN)

    def on_step_begin(self, batch_id):
        self.state.batch_in_epoch = batch_id
        self._fire(Event.STEP_BEGIN)

    def on_after_compute_loss(self, inputs, outputs, loss):
        state = self.state
        state.inputs, state.outputs, state.loss = inputs, outputs, loss
        self._fire(Event.AFTER_COMPUTE_LOSS)
        loss = state.loss
        if getattr(loss, "dim", None) is None or loss.dim() != 0:
            shape = tuple(loss.shape) if hasattr(loss, "shape") else type(loss).__name__
            raise ModelError(f"Trainer: the training loss must be a scalar tensor, got {shape} "
                             f"(from the loss function or an algorithm at "
                             f"Event.AFTER_COMPUTE_LOSS). Reduce it, e.g. with .mean().")
        self.metrics.log_metrics({"loss": loss})
        return loss

    def on_before_optimizer_step(self):
        self._fire(Event.BEFORE_OPTIMIZER_STEP)

    def on_after_optimizer_step(self):
        self._fire(Event.AFTER_OPTIMIZER_STEP)
        for scheduler in self.state.schedulers:
            scheduler.step()

    def on_step_end(self):
        self.state.step += 1
        self._fire(Event.STEP_END)
        if self._save_unit == "ba" and self.state.step % self._save_count == 0:
            self._save()

    def on_epoch_end(self):
        state = self.state
        state.epoch += 1
        self._fire(Event.EPOCH_END)
        record = {"epoch": state.epoch, "step": state.step, **self.metrics.means(),
                  "time_s": round(time.perf_counter() - self._epoch_started, 3)}
        self.metrics.reset()
        record.update(self.trainer.evaluate())
        self._record(record)
        if self._save_unit == "ep" and state.epoch % self._save_count == 0:
            self._save()

    def on_train_end(self, finished=True):
        self._fire(Event.TRAIN_END)
        if finished and self._saved_at_step != self.state.step:
            self._save()

    def running_losses(self):
        return self.metrics.means()

    def _save(self):
        state = self.state
        path = self.trainer.checkpoint_path(state.epoch, state.step)
        if path is None:
            return
        save_checkpoint(path, state.model, state.optimizers, state.epoch, state.step)
        self._saved_at_step = state.step
        if path not in self.trainer.saved_checkpoints:
            self.trainer.saved_checkpoints.append(path)

    def _record(self, record):
        self.trainer.history.append(record)
        logger.info(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in record.items()))
        folder = self.trainer.save_folder
        if folder is not None:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "metrics.jsonl"), "a", encoding="utf-8") as handle:
                handle.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
