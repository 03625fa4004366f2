"""Run-time checks of what users hand us: models, batches, losses, weights (issue 11).

Framework-neutral: whatever needs tensors lives in ``adapters/<framework>/checks.py``, reached
through :func:`backend`. The experiment calls them from its natural places (the model setters,
``RunLifecycle``, ``DistillationStep``, ``Evaluator``). Checks that would cost a device sync
at every step are done once, on the first batch (:func:`check_first_batch`, fed by the
lifecycle's first-batch pass, which also builds the feature matchers), or turned into clear
errors only when the framework has already failed (:func:`raise_clear_error`).
"""

import re

import numpy as np

from neural_distill.core.batches import is_one_shot
from neural_distill.errors import DataError, ModelError
from neural_distill.core.backends import backend_module
from neural_distill.core.data_checks import (  # noqa: F401 - the backends' names
    batch_structure_error, check_label_shapes, check_label_values, label_range_message,
    label_shape_problem)
from neural_distill.core.logging_utils import warn_once

def backend(framework):
    return backend_module(framework, "checks")


# ---------------------------------------------------------------------------- losses
def scalar_loss(loss, adapter, owner=None, what="student_loss"):
    """One scalar loss tensor: a per-sample loss is averaged (with a one-time warning when
    ``owner`` is given), anything else is an error."""
    if loss is None:
        raise ModelError("on_after_compute_loss: there is no loss to return: student_loss is "
                         "None and no distillation config adds a term. Pass the student's loss.")
    if isinstance(loss, (list, tuple)):
        raise ModelError(f"on_after_compute_loss: {what}: expected one scalar loss tensor "
                         f"(or None for an unlabeled batch), got a {type(loss).__name__} of "
                         f"{len(loss)}. Pass the loss itself, e.g. outputs.loss or sum(losses).")
    if isinstance(loss, (int, float, np.number)):
        raise ModelError(f"on_after_compute_loss: {what}: expected a loss tensor of the model's "
                         f"framework, got {type(loss).__name__} {loss!r}: a Python number "
                         f"carries no gradient, so the student would not learn from it. Pass the "
                         f"loss tensor itself (do not call .item() or float() on it).")
    if not hasattr(loss, "shape"):
        raise ModelError(f"on_after_compute_loss: {what}: expected a loss tensor of the "
                         f"model's framework, got {type(loss).__name__}")
    rank = loss.shape.rank if hasattr(loss.shape, "rank") else len(loss.shape)
    if rank == 0:
        return loss
    if owner is not None:
        warn_once(owner, "per-sample " + what,
                  f"on_after_compute_loss: {what} has shape {tuple(loss.shape)}, one value per "
                  f"sample (reduction='none'?); it is averaged to one scalar. Pass the mean loss "
                  f"to silence this.")
    return adapter.reduce_mean(loss)


# ---------------------------------------------------------------------------- models
def check_models(adapter, student, teachers, runs_teacher=True):
    """The student must not be (or share weights with) a teacher: training it would change
    the teacher, which distillation promises never to do. A criterion that runs no teacher
    (``runs_teacher=False``: self-distillation) may be given the student as its teacher."""
    if student is None or not teachers or adapter is None:
        return
    checks = backend(adapter.name)
    for index, teacher in enumerate(teachers if runs_teacher else ()):
        role = "teacher_model" if len(teachers) == 1 else f"teacher_model[{index}]"
        if teacher is student:
            raise ModelError(f"student_model and {role} are the same object: training the "
                             f"student would train the teacher. Assign a separate student, "
                             f"e.g. a smaller model or copy.deepcopy(teacher).")
        shared = checks.shared_weights(student, teacher)
        if shared:
            raise ModelError(
                f"student_model and {role} share {len(shared)} weight(s) (e.g. student "
                f"'{shared[0]}'): training the student would change the teacher. Give the "
                f"student its own layers (build it anew, or copy.deepcopy the shared layer).")
    for role, model in [("student_model", student)] + [("teacher_model", t) for t in teachers]:
        checks.check_model(model, role)


# ---------------------------------------------------------------------------- data
def _length(loader):
    try:
        return len(loader)
    except (TypeError, ValueError, NotImplementedError):  # no length, or an unknown one
        return None


def check_train_dataloader(loader, epochs):
    """Before the built-in loop: an empty loader, or a one-shot one over several epochs."""
    if _length(loader) == 0:
        raise DataError("train_dataloader is empty: it yields no batch, so nothing would be "
                        "trained. Check the dataset (and that drop_last does not drop the only "
                        "batch).")
    if is_one_shot(loader) and len(epochs) > 1:
        raise DataError(
            f"train_dataloader is a one-shot iterator ({type(loader).__name__}): it yields its "
            f"batches only once, but {len(epochs)} epochs are configured. Pass something that "
            f"can be iterated again each epoch (a list, a torch DataLoader, a tf.data.Dataset), "
            f"or set distillation.train.epoch: 1.")


def check_batch(adapter, student, batch):
    """Before the first forward pass: what the backend can tell from the batch alone."""
    backend(adapter.name).check_batch(student, batch)


def explain_first_batch_error(adapter, student, teachers, batch, exc):
    """Raise a clear error for a failed first-batch forward pass we recognise (how batches
    are read, dtypes of teacher and student); return otherwise."""
    if isinstance(exc, (TypeError, ValueError)):
        batch_structure_error(backend(adapter.name).DICT_INPUTS, batch, exc)
    problem = backend(adapter.name).dtype_problem(student, teachers, exc)
    if problem:
        raise ModelError(problem) from exc


def check_first_batch(adapter, criterion, batch, student_output, teacher_outputs, owner):
    """What the first batch's outputs tell before training: class counts of student and
    teachers, how labels are read, label shapes and range. Returns the student's class count
    (for later error messages), or None when the criterion does not compare logits."""
    if criterion.from_logits is None:
        return None  # feature criteria: logits need not match

    def logits(output, what):
        return np.asarray(adapter.to_numpy(adapter.logits_of(output, what)), np.float32)

    student_logits = logits(student_output, "student output")
    loss_types = criterion.loss_types
    is_kd = bool(loss_types) and len(loss_types) == 2
    if is_kd:
        for index, output in enumerate(teacher_outputs):
            teacher_logits = logits(output, "teacher output")
            if teacher_logits.shape[-1:] != student_logits.shape[-1:]:
                role = "teacher_model" if len(teacher_outputs) == 1 else \
                    f"teacher_model[{index}]"
                raise ModelError(
                    f"student output shape {tuple(student_logits.shape)} and teacher output "
                    f"shape {tuple(teacher_logits.shape)} disagree: the student predicts "
                    f"{student_logits.shape[-1]} classes but {role} predicts "
                    f"{teacher_logits.shape[-1]}, and logit distillation needs the same "
                    f"classes. Give the student's last layer {teacher_logits.shape[-1]} "
                    f"outputs.")
    _, labels = adapter.split_batch(batch)
    if labels is None:
        # Inputs alone are a transfer set (documented); a dict may just name its labels wrong.
        if is_kd and criterion.loss_weights[0] > 0 and isinstance(batch, dict):
            warn_once(owner, "no labels",
                      f"train_dataloader: dict batches with keys {sorted(batch)} have no "
                      f"'labels' (or 'label') key, so the student loss (weight "
                      f"{criterion.loss_weights[0]}) is skipped and only the distillation term "
                      f"trains. Rename the label key to 'labels' if the batches carry labels.")
    elif is_kd or criterion.add_origin_loss:
        check_label_values(student_logits.shape, adapter.to_numpy(labels),
                           loss_types[0] if is_kd else "CE")
    return student_logits.shape[-1]


# ---------------------------------------------------------------------------- the run's watch
class LossGuard:
    """Watches a run for the first non-finite loss and for epochs without a step.

    ``observe(loss, where)`` runs in ``on_after_compute_loss``; ``poll(where)`` in
    ``on_step_end`` and (waiting) at epoch and train end. Both return ``(value, where)`` of the
    first non-finite loss, or None; the lifecycle stops the run (:func:`diverged_message`).
    The backend's ``LossFlag`` decides how to look at the value without stalling the device
    (see ``adapters/*/checks.py``): on CPU the loss is read at once, on CUDA one step later,
    through an asynchronous copy; in a compiled TensorFlow step, a flag variable.
    """

    def __init__(self, framework):
        self.flag = backend(framework).LossFlag()
        self.observed_in_epoch = 0
        self.steps_at_epoch_end = 0

    def observe(self, loss, where):
        self.observed_in_epoch += 1
        return self.flag.observe(loss, where)

    def poll(self, where, wait=False):
        return self.flag.poll(where, wait)

    def end_epoch(self, global_step, epochs_done):
        """At epoch end: an epoch without a single step means the data ran out (or was
        empty). ``epochs_done`` counts the epochs before this one."""
        steps = global_step - self.steps_at_epoch_end
        observed, self.observed_in_epoch = self.observed_in_epoch, 0
        self.steps_at_epoch_end = global_step
        if steps or observed:
            return
        if epochs_done == 0:
            raise DataError("train_dataloader yielded no batch in the first epoch: nothing was "
                            "trained. Check that the dataset is not empty.")
        raise DataError(
            f"train_dataloader yielded no batch in epoch {epochs_done + 1} after yielding "
            f"batches before: it is probably a one-shot generator or iterator, exhausted after "
            f"one pass. Pass something that can be iterated again each epoch (a list, a torch "
            f"DataLoader, a tf.data.Dataset).")


def diverged_message(value, where, saved_to=None, score=""):
    """Why the run stopped at a non-finite loss, and what was kept (the best student evaluated
    before it, saved to ``saved_to``; nothing when None)."""
    epoch, step = where
    message = (f"the training loss became {value} at epoch {epoch}, step {step}: training "
               f"stopped there. Lower the learning rate, check the inputs for NaN/inf, or set "
               f"distillation.train.max_grad_norm.")
    if saved_to is not None:
        return message + (f" The best student evaluated before that{score} is "
                          f"distiller.best_model and was saved to {saved_to}.")
    return message + (" No student was evaluated before that, so none was kept: the current "
                      "weights are not finite.")


def check_returned_weights(adapter, weights):
    """The student returned must be finite even when every loss was (a NaN gradient)."""
    if weights is None:
        return
    values = weights.values() if isinstance(weights, dict) else weights
    if backend(adapter.name).first_non_finite(values) is not None:
        raise DataError("the student's weights became non-finite (NaN or inf) although every "
                        "training loss was finite, e.g. through a NaN gradient; no student is "
                        "returned. Lower the learning rate or set "
                        "distillation.train.max_grad_norm.")


# ---------------------------------------------------------------------------- errors
_TORCH_TARGET = re.compile(r"Target (-?\d+) is out of bounds")
_TF_LABEL = re.compile(r"label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)")


def raise_clear_error(exc, adapter, student, teachers, student_classes=None):
    """Raise a NeuralDistillError (from ``exc``) for a raw framework error we recognise."""
    text = str(exc)
    match = _TORCH_TARGET.search(text) if isinstance(exc, IndexError) else None
    if match:
        raise DataError(label_range_message(int(match.group(1)), student_classes)
                        if student_classes else
                        f"train_dataloader: label {match.group(1)} is out of range for the "
                        f"student's outputs. Check the dataset's labels.") from exc
    match = _TF_LABEL.search(text) if type(exc).__name__ == "InvalidArgumentError" else None
    if match:
        raise DataError(label_range_message(int(match.group(1)), int(match.group(2)))) from exc
    if adapter is not None and student is not None:
        problem = backend(adapter.name).dtype_problem(student, teachers, exc)
        if problem:
            raise ModelError(problem) from exc
