"""The built-in PyTorch training loop.

It is an ordinary loop that fires the experiment's hooks in the documented order
(``neural_distill.events``), so it behaves exactly like a user's loop calling the same hooks.
Per-step work beyond the user's own math is kept to Python bookkeeping: losses are read back
from the device only when the progress bar is refreshed.
"""

import torch
from tqdm.auto import tqdm

from ...loop_common import REFRESH_EVERY, epoch_range, limit_steps, refresh_progress
from .optim import LearningRateSchedule, build_optimizer
from .outputs import call_model, to_device

def _steps_per_epoch(loader, iteration):
    try:
        steps = len(loader)
    except TypeError:  # an iterable dataset without a length
        steps = None
    return limit_steps(steps, iteration)


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
    conf = distiller.conf
    train = conf.distillation.train
    device = adapter.resolve_device(conf.device, f"{distiller.conf_source}: device")
    student = distiller.student_model
    student.to(device)
    loader = distiller.train_dataloader

    distiller.on_train_begin(loader)
    criterion = distiller.criterion
    optimizer = distiller.optimizer
    if optimizer is None:
        optimizer = build_optimizer(train.optimizer, _trainable_parameters(student, criterion))
    else:
        _add_criterion_parameters(optimizer, criterion)
    epochs = epoch_range(train)
    iteration = train.get("iteration")
    steps = _steps_per_epoch(loader, iteration)
    schedule = LearningRateSchedule(train.lr_schedule, optimizer, len(epochs))
    max_grad_norm = train.get("max_grad_norm")
    show_bar = train.progress_bar
    # Checkpoints and resume (neural_distill/durable.py): finished epochs and batches skipped.
    progress = distiller.run.track(optimizer)

    for epoch_index, epoch in enumerate(epochs):
        if progress.skip_epoch(epoch_index):
            continue
        distiller.on_epoch_begin(epoch)
        student.train()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs.stop}", disable=not show_bar,
                   leave=False, dynamic_ncols=True)
        for batch_id, batch in progress.batches(loader, epoch_index):
            if iteration and batch_id >= iteration:
                break
            schedule.step(epoch_index + (batch_id / steps if steps else 0.0))
            distiller.on_step_begin(batch_id)
            inputs, labels = adapter.split_batch(batch)
            inputs = to_device(inputs, device)
            if labels is not None:
                labels = to_device(labels, device)
            output = call_model(student, inputs)
            student_loss = criterion.student_loss(output, labels)
            loss = distiller.on_after_compute_loss(inputs, output, student_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            distiller.on_before_optimizer_step()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(student.parameters(), max_grad_norm)
            optimizer.step()
            distiller.on_after_optimizer_step()
            distiller.on_step_end()
            if batch_id % REFRESH_EVERY == 0 and (show_bar or batch_id == 0):
                refresh_progress(bar, distiller.running_losses(), schedule.current, epoch,
                                 batch_id)
            bar.update()
        bar.close()
        distiller.on_epoch_end()
    distiller.on_train_end()
