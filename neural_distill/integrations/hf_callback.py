"""The Hugging Face ``TrainerCallback`` that drives a compression manager's hooks.

Imported by ``integrations/transformers.py`` (which reports a missing ``transformers``).
"""

import math
import os

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from neural_distill.run.durable import save_run
from neural_distill.events import Event


class DistillationCallback(TrainerCallback):
    """Drives a :class:`~neural_distill.training.CompressionManager`'s hooks from Trainer events.

    ``on_after_compute_loss`` is not an event a callback can act on: the trainer's
    ``compute_loss`` calls it (see :class:`DistillationMixin`). Installed and removed by
    ``distill()``; ``begin()`` must have run before training starts, because feature matchers
    have to exist before the Trainer builds its optimizer.
    """

    def __init__(self, manager, uses_metric=False):
        self.manager = manager
        self.uses_metric = uses_metric
        self.begun = False
        self.results = None  # (global_step, metrics) of the trainer's latest evaluation
        self._epoch_end_pending = False

    def begin(self, dataloader=None):
        self.manager.on_train_begin(dataloader)
        self.begun = True

    def fresh_results(self, global_step):
        """The trainer's evaluation results if it evaluated at ``global_step``, else None."""
        if self.results is not None and self.results[0] == global_step:
            return self.results[1]
        return None

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.begun:
            self.begin()

    def on_step_end(self, args, state, control, **kwargs):
        # The Trainer zeroes the model's gradients only (model.zero_grad()); trained feature
        # matchers belong to the criterion, and their gradients would pile up across steps.
        for distiller in self.manager.distillers:
            if isinstance(distiller.criterion, torch.nn.Module):
                distiller.criterion.zero_grad(set_to_none=True)
        self.manager.on_step_end()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.uses_metric and control.should_evaluate:
            # The Trainer evaluates right after this event (its own eval_strategy): judge the
            # epoch on those results instead of evaluating the student a second time.
            self._epoch_end_pending = True
        else:
            self.manager.on_epoch_end()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.results = (state.global_step, dict(metrics or {}))
        if self._epoch_end_pending:
            self._epoch_end_pending = False
            self.manager.on_epoch_end()

    def on_save(self, args, state, control, **kwargs):
        # The Trainer has just written checkpoint-<step>/: our part of the run goes with it,
        # so resume_from_checkpoint continues epochs, steps, matchers and the best student.
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            for index, distiller in enumerate(self.manager.distillers):
                save_run(distiller.run, os.path.join(folder, part_folder(index)))

    def on_train_end(self, args, state, control, **kwargs):
        if self._epoch_end_pending:  # the evaluation the epoch waited for never came
            self._epoch_end_pending = False
            self.manager.on_epoch_end()
        self.manager.on_train_end()


def _epoch_of(state):
    # state.epoch is the fraction of epochs done (1.0 after the first); a resumed run may
    # start mid-epoch, which still belongs to the epoch below it.
    return (int(math.floor((state.epoch or 0.0) + 1e-9)),)


# Our events are forwarded from the transformers callback event of the same name (or the name
# below), with our hook's arguments read from the Trainer's state (none by default): the table
# is generated from ``Event``, so a new member named like a callback event is forwarded with no
# edit here. Events the callback handles by hand (the methods above) keep their method;
# ``on_after_compute_loss`` is no callback event (the trainer's ``compute_loss`` calls it).
_CALLBACK_NAMES = {
    Event.BEFORE_OPTIMIZER_STEP: "on_pre_optimizer_step",
    Event.AFTER_OPTIMIZER_STEP: "on_optimizer_step",
}
_ARGUMENTS = {
    Event.EPOCH_BEGIN: _epoch_of,
    Event.STEP_BEGIN: lambda state: (state.global_step,),
}


def _no_arguments(state):
    return ()


def _forwarding(event, arguments):
    def callback_event(self, args, state, control, **kwargs):
        self.manager.dispatch(event, *arguments(state))

    callback_event.__name__ = callback_event.__qualname__ = \
        _CALLBACK_NAMES.get(event, event.value)
    callback_event.__event__ = event
    return callback_event


def forwarded_events():
    """``{transformers callback event: (our Event, argument reader)}``, from ``Event``."""
    table = {}
    for event in Event:
        name = _CALLBACK_NAMES.get(event, event.value)
        own = vars(DistillationCallback).get(name)
        if not callable(getattr(TrainerCallback, name, None)) or (
                own is not None and getattr(own, "__event__", None) is None):
            continue
        required = [spec for spec in event.params if len(spec) == 1]
        arguments = _ARGUMENTS.get(event, None if required else _no_arguments)
        if arguments is not None:  # an event with arguments the state cannot give is not sent
            table[name] = (event, arguments)
    return table


_FORWARDED = forwarded_events()
for _name, (_event, _arguments) in _FORWARDED.items():
    setattr(DistillationCallback, _name, _forwarding(_event, _arguments))


def part_folder(index):
    # One folder per DistillationConfig of the manager, inside the Trainer's checkpoint.
    return "neural_distill" if index == 0 else f"neural_distill_{index}"
