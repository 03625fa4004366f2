"""Run-time checks of what users hand us: models, batches, losses, files (issue 11).

Framework-neutral: whatever needs tensors lives in ``adapters/<framework>/checks.py``, reached
through :func:`backend`. Each check is called from one line of the experiment or of a loop, so
the places that run training stay readable. Checks that would cost a device sync at every step
are done once (on the first batch, :func:`preflight`) or turned into clear errors only when the
framework has already failed (:func:`raise_clear_error`).
"""

import re
import warnings

import numpy as np

from .errors import DataError, ModelError
from .workspace import save_atomically  # noqa: F401 - one place for the hooks' checks

_BACKENDS = {"torch": "neural_distill.adapters.torch.checks",
             "tensorflow": "neural_distill.adapters.tensorflow.checks"}


def backend(framework):
    from .adapters import import_framework_module

    return import_framework_module(_BACKENDS[framework], framework)


def warn_once(owner, key, message, category=UserWarning):
    """``message`` once per ``owner`` (a distiller, a metric): a loop must not flood the log."""
    seen = owner.__dict__.setdefault("_nd_warned", set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, category, stacklevel=3)


# ---------------------------------------------------------------------------- losses
def scalar_loss(loss, owner=None, what="student_loss"):
    """One scalar loss tensor: a per-sample loss is averaged (with a one-time warning)."""
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
    rank = getattr(loss.shape, "rank", None) if hasattr(loss.shape, "rank") else len(loss.shape)
    if rank == 0:
        return loss
    if owner is not None:
        warn_once(owner, "per-sample " + what,
                  f"on_after_compute_loss: {what} has shape {tuple(loss.shape)}, one value per "
                  f"sample (reduction='none'?); it is averaged to one scalar. Pass the mean loss "
                  f"to silence this.")
    if hasattr(loss, "mean") and callable(loss.mean):  # torch
        return loss.mean()
    import tensorflow as tf

    return tf.reduce_mean(loss)


def checked_student_loss(distiller, student_loss):
    """``student_loss`` as the criterion can combine it: None, or one scalar tensor."""
    if student_loss is None:
        return None
    return scalar_loss(student_loss, distiller)


# ---------------------------------------------------------------------------- models
def check_models(distiller):
    """The student must not be (or share weights with) a teacher: training it would change
    the teacher, which distillation promises never to do."""
    student = distiller._student
    if student is None or not distiller._teachers:
        return
    checks = backend(distiller._adapter.name)
    for index, teacher in enumerate(distiller._teachers):
        role = "teacher_model" if len(distiller._teachers) == 1 else f"teacher_model[{index}]"
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
    for role, model in [("student_model", student)] + [
            ("teacher_model", t) for t in distiller._teachers]:
        checks.check_model(model, role)


# ---------------------------------------------------------------------------- data
def _length(loader):
    try:
        return len(loader)
    except (TypeError, ValueError, NotImplementedError):  # no length, or an unknown one
        return None


def is_one_shot(loader):
    """A generator or iterator: iterating it a second time yields nothing. Decided from the
    type alone: calling iter() on a DataLoader would start its worker processes."""
    return hasattr(type(loader), "__next__")


def check_train_dataloader(distiller, epochs):
    """Before the built-in loop: an empty loader, or a one-shot one over several epochs."""
    loader = distiller.train_dataloader
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


def check_epoch_had_steps(distiller):
    """At epoch end: an epoch without a single step means the data ran out (or was empty)."""
    guard = distiller.__dict__.get("_nd_loss_guard")
    steps = distiller._global_step - distiller.__dict__.get("_nd_steps_at_epoch_end", 0)
    observed = guard.observed_in_epoch if guard is not None else 0
    distiller._nd_steps_at_epoch_end = distiller._global_step
    if guard is not None:
        guard.observed_in_epoch = 0
    if steps or observed:
        return
    if distiller._epochs_done == 0:
        raise DataError("train_dataloader yielded no batch in the first epoch: nothing was "
                        "trained. Check that the dataset is not empty.")
    raise DataError(
        f"train_dataloader yielded no batch in epoch {distiller._epochs_done + 1} after "
        f"yielding batches before: it is probably a one-shot generator or iterator, exhausted "
        f"after one pass. Pass something that can be iterated again each epoch (a list, a "
        f"torch DataLoader, a tf.data.Dataset).")


def preflight(distiller, dataloader):
    """Run the student and teachers once on the first batch (inference mode, no gradient) and
    check what would otherwise fail later with a raw framework error, or silently: how the
    batch is read, class counts, labels, probabilities vs logits. Skipped for one-shot
    iterators (peeking would lose a batch)."""
    if dataloader is None or is_one_shot(dataloader):
        return
    adapter = distiller._adapter
    checks = backend(adapter.name)
    try:
        batch = checks.peek(dataloader)
    except StopIteration:
        raise DataError("train_dataloader is empty: it yields no batch, so nothing would be "
                        "trained.") from None
    inputs, labels = adapter.split_batch(batch)
    outputs = checks.first_outputs(distiller, batch, inputs)
    if outputs is None:
        return
    student_logits, teacher_logits = outputs
    distiller._nd_student_classes = student_logits.shape[-1]
    criterion = distiller.criterion
    loss_types = getattr(criterion, "loss_types", None)
    is_kd = hasattr(criterion, "from_logits") and loss_types and len(loss_types) == 2
    if is_kd:
        for index, logits in enumerate(teacher_logits):
            if logits.shape[-1:] != student_logits.shape[-1:]:
                role = "teacher_model" if len(teacher_logits) == 1 else f"teacher_model[{index}]"
                raise ModelError(
                    f"student output shape {tuple(student_logits.shape)} and teacher output "
                    f"shape {tuple(logits.shape)} disagree: the student predicts "
                    f"{student_logits.shape[-1]} classes but {role} predicts {logits.shape[-1]}"
                    f", and logit distillation needs the same classes. Give the student's last "
                    f"layer {logits.shape[-1]} outputs.")
        if not criterion.from_logits:
            _warn_if_logits(distiller, student_logits, "student")
            for logits in teacher_logits:
                _warn_if_logits(distiller, logits, "teacher")
    if labels is None:
        # Inputs alone are a transfer set (documented); a dict may just name its labels wrong.
        if is_kd and criterion.loss_weights[0] > 0 and isinstance(batch, dict):
            warn_once(distiller, "no labels",
                      f"train_dataloader: dict batches with keys {sorted(batch)} have no "
                      f"'labels' (or 'label') key, so the student loss (weight "
                      f"{criterion.loss_weights[0]}) is skipped and only the distillation term "
                      f"trains. Rename the label key to 'labels' if the batches carry labels.")
        return
    if is_kd or getattr(criterion, "add_origin_loss", False):
        student_type = loss_types[0] if is_kd else "CE"
        check_label_values(student_logits.shape, adapter.to_numpy(labels), student_type)


def _warn_if_logits(distiller, values, role):
    looks_like_probabilities = (values.min() >= 0 and values.max() <= 1 and np.allclose(
        values.reshape(-1, values.shape[-1]).sum(-1), 1.0, atol=1e-3))
    if not looks_like_probabilities:
        warn_once(distiller, "from_logits " + role,
                  f"from_logits is false but the {role}'s outputs are not probabilities (values "
                  f"in [{values.min():.3g}, {values.max():.3g}], rows not summing to 1): they "
                  f"look like logits. Set from_logits: true, or end the model with a softmax.")


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


def label_range_message(label, classes):
    return (f"train_dataloader: a label is {label}, but the student predicts {classes} classes, "
            f"so labels must be in 0..{classes - 1} (or -100 for an unlabeled sample). Check the "
            f"dataset's labels, or give the student's last layer more outputs.")


# ---------------------------------------------------------------------------- non-finite losses
class LossGuard:
    """Stops training at the first non-finite loss.

    ``observe(loss)`` runs in ``on_after_compute_loss``; ``poll()`` in ``on_step_end`` and at
    epoch end. The backend's ``LossFlag`` decides how to look at the value without stalling the
    device (see ``adapters/*/checks.py``): on CPU the loss is read at once, on CUDA one step
    later, through an asynchronous copy; in a compiled TensorFlow step, a flag variable.
    """

    def __init__(self, distiller):
        self.distiller = distiller
        self.flag = backend(distiller._adapter.name).LossFlag()
        self.observed_in_epoch = 0

    def observe(self, loss):
        self.observed_in_epoch += 1
        d = self.distiller
        bad = self.flag.observe(loss, (d._epoch, d._step))
        if bad is not None:
            self._stop(*bad)

    def poll(self, wait=False):
        d = self.distiller
        bad = self.flag.poll((d._epoch, d._step), wait)
        if bad is not None:
            self._stop(*bad)

    def _stop(self, value, where):
        """Keep (and save) the best student evaluated so far, never the diverged one."""
        d = self.distiller
        epoch, step = where
        d._release_models()
        d._started = False
        message = (f"the training loss became {value} at epoch {epoch}, step {step}: training "
                   f"stopped there. Lower the learning rate, check the inputs for NaN/inf, or "
                   f"set distillation.train.max_grad_norm.")
        if d._best_state is not None:
            adapter = d._adapter
            d.best_model = adapter.copy_with_state(d._student, d._best_state)
            path = d.workspace.file("best_student" + adapter.checkpoint_suffix)
            save_atomically(adapter, d.best_model, path)
            score = "" if d.best_score is None else f" ({d._score_name()}={d.best_score:.4f})"
            message += (f" The best student evaluated before that{score} is "
                        f"distiller.best_model and was saved to {path}.")
        else:
            message += (" No student was evaluated before that, so none was kept: the current "
                        "weights are not finite.")
        raise DataError(message)


def check_returned_weights(distiller):
    """The student returned must be finite even when every loss was (a NaN gradient)."""
    state = distiller._best_state
    if state is None:
        return
    values = state.values() if isinstance(state, dict) else state
    name = backend(distiller._adapter.name).first_non_finite(values)
    if name is not None:
        distiller._release_models()
        distiller._started = False
        raise DataError("the student's weights became non-finite (NaN or inf) although every "
                        "training loss was finite, e.g. through a NaN gradient; no student is "
                        "returned. Lower the learning rate or set "
                        "distillation.train.max_grad_norm.")


def start_run(distiller):
    """Fresh run-time state at train begin: a new loss guard, no step counted yet."""
    distiller._nd_loss_guard = LossGuard(distiller)
    distiller._nd_steps_at_epoch_end = 0


def loss_guard(distiller):
    """The guard of the current run (every hook starts the run first)."""
    guard = distiller.__dict__.get("_nd_loss_guard")
    if guard is None:
        start_run(distiller)
        guard = distiller._nd_loss_guard
    return guard


# ---------------------------------------------------------------------------- evaluation
def warn_metric_without_data(distiller):
    """A metric is configured but there is nothing to evaluate it on."""
    configured = distiller.metric is not None or distiller.conf.evaluation.get(
        "accuracy", {}).get("metric") is not None
    if configured and distiller.eval_func is None and distiller.eval_dataloader is None:
        warn_once(distiller, "metric without data",
                  "a metric is configured (evaluation.accuracy.metric / distiller.metric) but "
                  "there is no evaluation data: the last student is returned and no best score "
                  "is kept. Set distiller.eval_dataloader (or evaluation.accuracy.dataloader).")


def warn_topk_covers_all(metric, classes):
    if metric.k >= classes:
        warn_once(metric, "topk",
                  f"metric topk: k={metric.k} but the model predicts {classes} classes, so "
                  f"every prediction counts as correct (score 1.0). Use a k below {classes}.")


# ---------------------------------------------------------------------------- errors and files
_TORCH_TARGET = re.compile(r"Target (-?\d+) is out of bounds")
_TF_LABEL = re.compile(r"label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)")


def raise_clear_error(distiller, exc):
    """Raise a NeuralDistillError (from ``exc``) for a raw framework error we recognise."""
    text = str(exc)
    match = _TORCH_TARGET.search(text) if isinstance(exc, IndexError) else None
    if match:
        classes = _student_classes(distiller)
        raise DataError(label_range_message(int(match.group(1)), classes) if classes else
                        f"train_dataloader: label {match.group(1)} is out of range for the "
                        f"student's outputs. Check the dataset's labels.") from exc
    match = _TF_LABEL.search(text) if type(exc).__name__ == "InvalidArgumentError" else None
    if match:
        raise DataError(label_range_message(int(match.group(1)), int(match.group(2)))) from exc
    if distiller._adapter is not None and distiller._student is not None:
        problem = backend(distiller._adapter.name).dtype_problem(distiller, exc)
        if problem:
            raise ModelError(problem) from exc


def _student_classes(distiller):
    return distiller.__dict__.get("_nd_student_classes")
