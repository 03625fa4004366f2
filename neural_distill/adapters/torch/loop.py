"""The one PyTorch training loop of the package.

:func:`train_loop` fires the hooks of ``neural_distill.events`` in the documented order on a
*hooks* object (anything with the ``Event`` method names): the ``Distillation`` experiment
itself (:func:`run`, behind ``Distillation.fit()`` and the CLI), or the algorithm dispatcher of
``neural_distill.trainer.Trainer``. So it behaves exactly like a user's loop calling the same
hooks. Its epochs and steps are ``loop_common.drive_epochs``, the driver the TensorFlow loop
uses too; this module adds the PyTorch step (:class:`_Steps`: autocast, backward, gradient
accumulation, clipping). Per-step work beyond the user's own math is kept to Python
bookkeeping: losses are read back from the device only when the progress bar is refreshed.
"""

import torch

from neural_distill.errors import ConfigError
from neural_distill.core.process import cpu_threads, is_main_process
from neural_distill.run.loop_common import drive_epochs, epoch_range, limit_steps
from neural_distill.adapters.torch import distributed
from neural_distill.adapters.torch.data import built_from_config
from neural_distill.adapters.torch.language import LanguageModelBatches
from neural_distill.adapters.torch.optim import LearningRateSchedule, build_optimizer
from neural_distill.adapters.torch.precision import Precision
from neural_distill.adapters.torch.outputs import to_device


def steps_per_epoch(loader, iteration=None):
    """Batches per epoch (None for an iterable dataset without a length), at most ``iteration``."""
    try:
        steps = len(loader)
    except TypeError:  # an iterable dataset without a length
        steps = None
    return limit_steps(steps, iteration)


def train_loop(hooks, model, loader, forward, optimizer, epochs, *, total_epochs=None,
               steps=None, iteration=None, max_batches=None, schedule=None,
               max_grad_norm=None, show_bar=True, precision=None, accumulation=1,
               progress=None):
    """Train ``model`` and fire ``hooks``' events; returns the number of batches trained.

    Args:
        hooks: has the ``Event`` methods except ``on_train_begin``/``on_train_end`` (the caller
            fires those, around its own set-up), plus ``running_losses() -> {name: float}``.
        forward: ``forward(batch) -> (inputs, output, loss[, labels])``: the model's inputs
            (given to ``on_after_compute_loss``, e.g. for a teacher), its output, its own loss
            and, optionally, the batch's labels (its ``labels=``).
        optimizer: anything with ``zero_grad(set_to_none=)``, ``step()``, ``param_groups``.
        epochs: the epoch numbers to run (any iterable, endless with ``max_batches``).
        total_epochs: shown in the progress bar as the last epoch number.
        steps: batches per epoch if known (for the bar and the schedule's progress).
        iteration: at most this many batches per epoch.
        max_batches: at most this many batches in all; the epoch it ends in still ends
            (``on_epoch_end``), and no further one starts.
        schedule: ``schedule.step(progress_in_epochs)`` before every step, if given.
        precision: a ``precision.Precision`` (autocast and loss scaling), or None for fp32.
        accumulation: batches whose gradients add up before one optimizer step (each batch's
            loss is divided by it); an epoch's leftover batches still get their step.
        progress: a resumed run's position (``durable``): ``skip_epoch(index)`` and
            ``batches(loader, index)`` yielding ``(batch_id, batch)`` past what was trained.
    """
    step = _Steps(hooks, model, forward, optimizer,
                  precision or Precision("fp32", torch.device("cpu")), max_grad_norm,
                  accumulation)
    return drive_epochs(hooks, loader, epochs, step, total_epochs=total_epochs, steps=steps,
                        iteration=iteration, max_batches=max_batches, schedule=schedule,
                        learning_rate=step.learning_rate, show_bar=show_bar,
                        progress=progress, begin_epoch=model.train, end_epoch=step.flush)


class _Steps:
    """The PyTorch part of one step (``drive_epochs``' ``train_step``): forward and loss under
    autocast, the backward pass, and the optimizer step once ``accumulation`` batches have
    added up their gradients."""

    def __init__(self, hooks, model, forward, optimizer, precision, max_grad_norm,
                 accumulation):
        self.hooks, self.model, self.forward = hooks, model, forward
        self.optimizer, self.precision = optimizer, precision
        self.max_grad_norm, self.accumulation = max_grad_norm, accumulation
        self.pending = 0  # batches whose gradients wait for the optimizer step

    def __call__(self, batch):
        precision, accumulation = self.precision, self.accumulation
        with precision.autocast():
            inputs, output, loss, *labels = self.forward(batch)
            # Labels go to the hook only when there are some: an override of the hook written
            # before it had ``labels`` keeps working on unlabeled data.
            if labels and labels[0] is not None:
                loss = self.hooks.on_after_compute_loss(inputs, output, loss, None, labels[0])
            else:
                loss = self.hooks.on_after_compute_loss(inputs, output, loss)
        if self.pending == 0:
            self.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss / accumulation if accumulation > 1 else loss)
        self.pending += 1
        if self.pending == accumulation:
            self.optimizer_step()

    def flush(self):
        """The epoch's last few batches of an accumulation group still get their step."""
        if self.pending:
            self.optimizer_step()

    def optimizer_step(self):
        hooks, optimizer, precision = self.hooks, self.optimizer, self.precision
        hooks.on_before_optimizer_step()
        if self.max_grad_norm:
            precision.unscale(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        precision.step(optimizer)
        hooks.on_after_optimizer_step()
        self.pending = 0

    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"]


# ---------------------------------------------------------------- the Distillation experiment
def _trainable_parameters(student, criterion):
    """The student's parameters plus the criterion's own (e.g. feature matchers)."""
    params = [p for p in student.parameters() if p.requires_grad]
    seen = {id(p) for p in params}
    if isinstance(criterion, torch.nn.Module):
        params += [p for p in criterion.parameters() if p.requires_grad and id(p) not in seen]
    return params


def _add_criterion_parameters(optimizer, criterion):
    """A user's optimizer also has to train the criterion's matchers."""
    if not isinstance(criterion, torch.nn.Module):
        return
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    extra = [p for p in criterion.parameters() if p.requires_grad and id(p) not in known]
    if extra:
        optimizer.add_param_group({"params": extra})


def run(adapter, distiller):
    """``Distillation.fit()``'s built-in loop, configured by ``distillation.train``."""
    conf = distiller.conf
    train = conf.distillation.train
    on_policy = train.get("on_policy")
    if on_policy and on_policy.get("fraction", 0.5) >= 1 and train.teacher_cache.get("enabled"):
        # Generated batches bypass the cache (run/step.py); with every batch generated it
        # would never be used.
        raise ConfigError(f"{distiller.conf_source}: distillation.train.on_policy.fraction 1 "
                          f"and teacher_cache.enabled: every batch is generated anew, so the "
                          f"cache would never serve one. Lower the fraction or turn the cache "
                          f"off.")
    device = distributed.init_process_group(
        adapter.resolve_device(conf.device, f"{distiller.conf_source}: device"))
    if conf.get("threads") is not None:
        torch.set_num_threads(cpu_threads(conf.threads))
    student = distiller.student_model
    student.to(device)
    loader = distributed.shard_loader(distiller.train_dataloader, conf.tuning.random_seed,
                                      built_from_config(distiller.train_dataloader))

    distiller.on_train_begin(loader)
    criterion = distiller.criterion
    settings = train.get("distributed", {})
    optimizer = distiller.optimizer
    if settings.get("strategy") == "fsdp" and distributed.active():
        distributed.check_fsdp_optimizer(optimizer, student)
    trained = distributed.wrap_student(student, device, settings)
    gradient_hooks = distributed.average_gradients_of(criterion)
    if optimizer is None:
        # After wrapping: FSDP replaced the student's parameters by its shards.
        optimizer = build_optimizer(train.optimizer, _trainable_parameters(student, criterion))
        distributed.track_optimizer(optimizer, student, criterion)
    else:
        _add_criterion_parameters(optimizer, criterion)
    epochs = epoch_range(train)
    iteration = train.get("iteration")
    steps = steps_per_epoch(loader, iteration)
    schedule = LearningRateSchedule(train.lr_schedule, optimizer, len(epochs))
    # Checkpoints and resume (neural_distill/durable.py): finished epochs and batches skipped.
    # After the schedule: resuming restores the optimizer's learning rate too.
    progress = distiller.run.track(optimizer)
    first_output = distiller.run.check_first_output

    lm = LanguageModelBatches(student, criterion, distiller.teachers, train.get("on_policy"),
                              conf.tuning.random_seed)

    def forward(batch):
        inputs, labels = adapter.split_batch(batch)
        inputs = to_device(inputs, device)
        if labels is not None:
            labels = to_device(labels, device)
        # The first step's outputs are checked before its loss (first_output).
        return lm.forward(trained, inputs, labels, checked=first_output)

    try:
        train_loop(distiller, trained, loader, forward, optimizer, epochs,
                   total_epochs=epochs.stop, steps=steps, iteration=iteration,
                   schedule=schedule, progress=progress,
                   max_grad_norm=train.get("max_grad_norm"),
                   show_bar=train.progress_bar and is_main_process(),
                   precision=Precision(train.precision, device),
                   accumulation=train.gradient_accumulation_steps)
    finally:
        for hook in gradient_hooks:
            hook.remove()
    distiller.on_train_end()
