"""Catching logits/probabilities mix-ups on the first batch.

A model with a softmax head (every ``keras.applications`` model, many exported classifiers)
outputs probabilities. Trained with the default ``from_logits: true``, the criterion applies a
second softmax to them and silently optimizes a different loss (flattened targets, tiny
gradients). The reverse mistake (``from_logits: false`` on raw logits) takes logs of negative
numbers. Neither raises: both train, badly. So the first batch's outputs are looked at once
(per criterion): rows that are non-negative and sum to 1 are probabilities; rows with negative
values or sums away from 1 are not. One warning names the exact key to set.
"""

import warnings

import numpy as np

_SUM_TOLERANCE = 1e-3


def kind_of(values):
    """'probabilities', 'logits' or None (undecidable, e.g. one class or no rows)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2 or values.shape[-1] < 2 or values.size == 0:
        return None
    if not np.all(np.isfinite(values)):
        return None
    rows = values.reshape(-1, values.shape[-1])
    if rows.min() >= 0.0 and np.all(np.abs(rows.sum(-1) - 1.0) <= _SUM_TOLERANCE):
        return "probabilities"
    return "logits"


def _message(criterion, role, kind):
    name = criterion.yaml_name or type(criterion).__name__
    if kind == "probabilities":
        seen, have, want = "non-negative rows summing to 1", "true", "false"
        extra = ", or remove the softmax from the model's head"
    else:
        seen, have, want = "negative values or rows not summing to 1", "false", "true"
        extra = ", or end the model with a softmax"
    return (f"from_logits is {have} but the {role} model's outputs look like {kind} ({seen} "
            f"on the first batch), so {name} optimizes a different loss than you "
            f"expect. Set distillation.train.criterion.{name}.from_logits: {want} in the "
            f"config (from_logits={want.capitalize()} on the criterion or its config "
            f"class){extra}.")


class OutputCheck:
    """Warns once per criterion when the outputs contradict ``criterion.from_logits``.

    One object lives as long as the experiment (a new criterion is checked again); the
    distillation step calls :meth:`check` on every batch until one could be read (a traced
    TensorFlow step cannot be: its run's first batch is checked eagerly when the run starts).
    """

    def __init__(self):
        self._checked = None  # the criterion whose outputs were checked

    def check(self, adapter, criterion, student_output, teacher_outputs):
        from_logits = criterion.from_logits
        if from_logits is None or self._checked is criterion:
            return
        found = []
        for role, output in [("student", student_output),
                             *(("teacher", t) for t in teacher_outputs)]:
            if output is None:
                continue
            try:
                values = adapter.to_numpy(adapter.logits_of(output, f"{role} output"))
            except Exception:  # noqa: BLE001 - symbolic (traced) tensors: checked on real ones
                return
            found.append((role, kind_of(values)))
        self._checked = criterion
        for role, kind in found:
            if (kind == "probabilities" and from_logits) or (kind == "logits" and not from_logits):
                warnings.warn(_message(criterion, role, kind), stacklevel=4)
                return


def _keras_head_kind(model):
    """'probabilities' / 'logits' from a Keras model's output layer, or None if unknown."""
    outputs = getattr(model, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None  # subclassed or several outputs: nothing static to read
    try:
        layer = outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError):
        return None
    if type(layer).__name__ == "Softmax":
        return "probabilities"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    if name == "softmax":
        return "probabilities"
    if name == "linear" and type(layer).__name__ == "Dense":
        return "logits"
    return None


def check_keras_heads(criterion, student, teachers):
    """The same check for Keras' own fit() (its step is compiled): read from the output
    layers of Sequential/Functional models, e.g. ``Dense(..., activation='softmax')``."""
    from_logits = criterion.from_logits
    if from_logits is None:
        return
    for role, model in (("student", student), *(("teacher", t) for t in teachers)):
        kind = _keras_head_kind(model)
        if (kind == "probabilities" and from_logits) or (kind == "logits" and not from_logits):
            warnings.warn(_message(criterion, role, kind).replace(
                " on the first batch", " at its output layer"), stacklevel=3)
            return
