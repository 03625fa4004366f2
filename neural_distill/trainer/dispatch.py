"""The Trainer's side of the loop's events: state updates, algorithms, logs, checkpoints.

The loop (``adapters/torch/loop.py``) calls one hook per ``Event`` value, as it does on the
``Distillation`` experiment. The hook methods are the package's generated ones
(:class:`neural_distill.events.Hooks`); every hook lands in :meth:`TrainerHooks.dispatch`,
which updates the :class:`State` for the event, runs the algorithms that match it, then does
the trainer's own work for it. The two tables below say which work belongs to which event.
"""

import json
import logging
import os
import time

from neural_distill import events
from neural_distill.algorithms.base import fire
from neural_distill.errors import ModelError
from neural_distill.events import Event
from neural_distill.workspace import json_safe
from neural_distill.trainer.checkpoint import save_checkpoint

logger = logging.getLogger("neural_distill")


class TrainerHooks(events.Hooks):
    def __init__(self, trainer):
        self.trainer = trainer
        self.state = trainer.state
        self.algorithms = trainer.algorithms
        self.metrics = trainer.logger
        self._epoch_started = time.perf_counter()
        self._saved_at_step = None
        self._save_count, self._save_unit = trainer.save_interval
        self._failed = False

    def dispatch(self, event, *args):
        """State update (with the hook's arguments), then the algorithms, then the trainer's work.

        Returns what the trainer's work returns: the checked loss for ``AFTER_COMPUTE_LOSS``,
        None otherwise.
        """
        update = _STATE_UPDATES.get(event)
        if update is not None:
            update(self, *args)
        fire(self.algorithms, event, self.state, self.metrics)
        work = _TRAINER_WORK.get(event)
        return None if work is None else work(self)

    def end_after_failure(self):
        """``on_train_end`` for a run that raised: algorithms give back what they changed
        (teachers...), but no final checkpoint is written of a half-done step."""
        self._failed = True
        self.on_train_end()

    def running_losses(self):
        return self.metrics.means()

    # ------------------------------------------------ state updates (before the algorithms)
    def _start_training(self, dataloader=None):
        self.trainer.history = []

    def _start_epoch(self, epoch):
        self.state.batch_in_epoch = 0
        self._epoch_started = time.perf_counter()

    def _start_step(self, batch_id):
        self.state.batch_in_epoch = batch_id

    def _take_loss(self, inputs, outputs, loss, teacher_output=None, labels=None):
        state = self.state
        state.inputs, state.outputs, state.loss = inputs, outputs, loss

    def _count_step(self):
        self.state.step += 1

    def _count_epoch(self):
        self.state.epoch += 1

    # ------------------------------------------------ the trainer's work (after the algorithms)
    def _checked_loss(self):
        loss = self.state.loss
        if getattr(loss, "dim", None) is None or loss.dim() != 0:
            shape = tuple(loss.shape) if hasattr(loss, "shape") else type(loss).__name__
            raise ModelError(f"Trainer: the training loss must be a scalar tensor, got {shape} "
                             f"(from the loss function or an algorithm at "
                             f"Event.AFTER_COMPUTE_LOSS). Reduce it, e.g. with .mean().")
        self.metrics.log_metrics({"loss": loss})
        return loss

    def _step_schedulers(self):
        for scheduler in self.state.schedulers:
            scheduler.step()

    def _save_every_batches(self):
        if self._save_unit == "ba" and self.state.step % self._save_count == 0:
            self._save()

    def _end_epoch(self):
        state = self.state
        record = {"epoch": state.epoch, "step": state.step, **self.metrics.means(),
                  "time_s": round(time.perf_counter() - self._epoch_started, 3)}
        self.metrics.reset()
        record.update(self.trainer.evaluate())
        self._record(record)
        if self._save_unit == "ep" and state.epoch % self._save_count == 0:
            self._save()

    def _end_training(self):
        if not self._failed and self._saved_at_step != self.state.step:
            self._save()

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
                handle.write(json.dumps({k: json_safe(v) for k, v in record.items()}) + "\n")


# Event -> what changes in the State before the algorithms see the event (gets the hook's args).
_STATE_UPDATES = {
    Event.TRAIN_BEGIN: TrainerHooks._start_training,
    Event.EPOCH_BEGIN: TrainerHooks._start_epoch,
    Event.STEP_BEGIN: TrainerHooks._start_step,
    Event.AFTER_COMPUTE_LOSS: TrainerHooks._take_loss,
    Event.STEP_END: TrainerHooks._count_step,
    Event.EPOCH_END: TrainerHooks._count_epoch,
}

# Event -> the trainer's own work once the algorithms ran (its result is the hook's result).
_TRAINER_WORK = {
    Event.AFTER_COMPUTE_LOSS: TrainerHooks._checked_loss,
    Event.AFTER_OPTIMIZER_STEP: TrainerHooks._step_schedulers,
    Event.STEP_END: TrainerHooks._save_every_batches,
    Event.EPOCH_END: TrainerHooks._end_epoch,
    Event.TRAIN_END: TrainerHooks._end_training,
}
