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

from neural_distill.batches import is_one_shot
from neural_distill.errors import DataError, ModelError
from neural_distill.frameworks import import_framework_module
from neural_distill.logging_utils import warn_once

_BACKENDS = {"torch": "neural_distill.adapters.torch.checks",
             "tensorflow": "neural_distill.adapters.tensorflow.checks"}


def backend(framework):
    return import_framework_module(_BACKENDS[framework], framework)


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


# How each framework hands a dict batch's entries to the model.
_DICT_INPUTS = {"torch": ("keys", "as keyword arguments", "every other key to the model's "
                          "forward as a keyword argument"),
                "tensorflow": ("entries", "as its inputs", "the rest to the model")}


def batch_structure_error(framework, batch, exc):
    """A batch read into the wrong call of the student: say how batches are read. ``exc`` is
    the framework's error, or a text saying what does not fit."""
    cause = exc if isinstance(exc, BaseException) else None
    if isinstance(batch, dict):
        items, how, rest = _DICT_INPUTS[framework]
        raise DataError(
            f"train_dataloader: the student could not be called with the batch's {items} "
            f"{sorted(k for k in batch if k not in ('labels', 'label'))} {how} ({exc}). Dict "
            f"batches give their 'labels' (or 'label') entry as labels and {rest}: rename the "
            f"label key to 'labels', or yield (inputs, labels) tuples.") from cause
    if isinstance(batch, (tuple, list)) and len(batch) > 2:
        raise DataError(
            f"train_dataloader: batches have {len(batch)} items, read as {len(batch) - 1} "
            f"inputs and the labels (last item), but the student cannot take {len(batch) - 1} "
            f"inputs ({exc}). Yield (inputs, labels) pairs, or a dict with a 'labels' "
            f"key.") from cause


def explain_first_batch_error(adapter, student, teachers, batch, exc):
    """Raise a clear error for a failed first-batch forward pass we recognise (how batches
    are read, dtypes of teacher and student); return otherwise."""
    if isinstance(exc, (TypeError, ValueError)):
        batch_structure_error(adapter.name, batch, exc)
    problem = backend(adapter.name).dtype_problem(student, teachers, exc)
    if problem:
        raise ModelError(problem) from exc


def check_first_batch(adapter, criterion, batch, student_output, teacher_outputs, owner):
    """What the first batch's outputs tell before training: class counts of student and
    teachers, how labels are read, label shapes and range. Returns the student's class count
    (for later error messages), or None when the criterion does not compare logits."""
    if not hasattr(criterion, "from_logits"):
        return None  # feature criteria: logits need not match

    def logits(output, what):
        return np.asarray(adapter.to_numpy(adapter.logits_of(output, what)), np.float32)

    student_logits = logits(student_output, "student output")
    loss_types = getattr(criterion, "loss_types", None)
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
    elif is_kd or getattr(criterion, "add_origin_loss", False):
        check_label_values(student_logits.shape, adapter.to_numpy(labels),
                           loss_types[0] if is_kd else "CE")
    return student_logits.shape[-1]


def label_shape_problem(logits_shape, labels_shape, labels_are_float, student_type):
    """Why labels of this shape/dtype cannot train a student loss, or None. Shapes are tuples
    (None where unknown), so this also works on symbolic TensorFlow shapes."""
    logits_shape, labels_shape = tuple(logits_shape), tuple(labels_shape)

    def same(a, b):
        return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))

    fix_ce = "use loss_types: ['CE', ...] for class labels"
    if student_type == "MSE":
        if not labels_are_float and not same(labels_shape, logits_shape):
            return (f"the student loss is MSE, which compares the outputs {logits_shape} with "
                    f"targets of the same shape, but the labels are class indices of shape "
                    f"{labels_shape}; {fix_ce} (or give float targets shaped like the outputs)")
        if labels_are_float and not same(labels_shape, logits_shape) and not (
                len(logits_shape) == 2 and logits_shape[-1] == 1
                and same(labels_shape, logits_shape[:1])):
            return (f"the student loss is MSE but the targets have shape {labels_shape} and the "
                    f"outputs {logits_shape}; give one target per output")
        return None
    if labels_are_float:
        if same(labels_shape, logits_shape):
            return None  # soft labels: one distribution per sample
        return (f"the labels are floating point with shape {labels_shape}, but the outputs have "
                f"shape {logits_shape}: class labels must be integers (e.g. labels.long() / "
                f"tf.cast(labels, tf.int64)); soft labels must have the outputs' shape")
    rows = logits_shape[:-1]
    squeezed = labels_shape[:-1] if labels_shape[-1:] == (1,) and len(labels_shape) > len(
        rows) else labels_shape
    if not same(squeezed, rows):
        hint = (" They look one-hot: pass class indices (labels.argmax(-1)) or float soft "
                "labels." if same(labels_shape, logits_shape) else "")
        return (f"labels of shape {labels_shape} do not match outputs of shape {logits_shape}: "
                f"expected one class index per output row, shape {rows}.{hint}")
    return None


def check_label_shapes(logits_shape, labels_shape, labels_are_float, student_type):
    problem = label_shape_problem(logits_shape, labels_shape, labels_are_float, student_type)
    if problem:
        raise DataError(f"train_dataloader: {problem}.")


def check_label_values(logits_shape, labels, student_type):
    """Shape, dtype and range of one batch's labels (a NumPy array) for the student loss."""
    labels_are_float = np.issubdtype(labels.dtype, np.floating)
    check_label_shapes(logits_shape, labels.shape, labels_are_float, student_type)
    if student_type == "MSE" or labels_are_float:
        return
    classes = logits_shape[-1]
    bad = labels[(labels != -100) & ((labels < 0) | (labels >= classes))]
    if bad.size:
        raise DataError(label_range_message(int(bad.flat[0]), classes))


def label_range_message(label, classes, loader="train_dataloader"):
    return (f"{loader}: a label is {label}, but the student predicts {classes} classes, "
            f"so labels must be in 0..{classes - 1} (or -100 for an unlabeled sample). Check the "
            f"dataset's labels, or give the student's last layer more outputs.")


def check_eval_labels(logits, labels):
    """Class-index labels of an evaluation batch (NumPy) within the student's classes, as the
    training labels are: a metric would otherwise fail on an index (``Loss``) or quietly count
    the sample as wrong (``topk``)."""
    if (labels.dtype.kind not in "iu" or logits.ndim != labels.ndim + 1
            or logits.shape[-1] < 2 or labels.size == 0):
        return
    classes = logits.shape[-1]
    bad = labels[(labels != -100) & ((labels < 0) | (labels >= classes))]
    if bad.size:
        raise DataError(label_range_message(int(bad.reshape(-1)[0]), classes,
                                            "eval_dataloader"))


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
