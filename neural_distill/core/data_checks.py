"""Checks of batches and labels written once over shapes and NumPy arrays (issue 11).

The lowest layer: the backends' ``checks`` modules call these with their tensors' shapes, and
``run/checks.py`` with NumPy copies, so one message serves every framework.
"""

import numpy as np

from neural_distill.errors import DataError


def batch_structure_error(dict_inputs, batch, exc):
    """A batch read into the wrong call of the student: say how batches are read. ``exc`` is
    the framework's error, or a text saying what does not fit; ``dict_inputs`` is the backend's
    ``checks.DICT_INPUTS`` (how it hands a dict batch's entries to the model)."""
    cause = exc if isinstance(exc, BaseException) else None
    if isinstance(batch, dict):
        items, how, rest = dict_inputs
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
