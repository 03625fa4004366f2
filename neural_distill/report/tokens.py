"""From the models' per-batch outputs to the rows the report's figures are computed on.

A classifier gives one row per sample. A sequence model (outputs [batch, seq, vocab], a language
model) gives one row per **valid token**, so agreement, KL, calibration and the metric are
per-token figures over the tokens that count, padding and prompt tokens left out:

- causal LM (labels are the inputs themselves, HF's convention): position t counts iff
  ``labels[t+1] != -100``, and its target is ``labels[t+1]`` (the last position never counts);
- token-level model (labels aligned with the positions): t counts iff ``labels[t] != -100``;
- no labels but ``input_ids`` and ``attention_mask``: the causal rule on
  ``labels = input_ids where attention_mask == 1, else -100`` (what HF's LM collator builds).
"""

import re

import numpy as np

from neural_distill.errors import DataError

_CAUSAL_CLASS = re.compile(r"(CausalLM|LMHeadModel)$")


def is_causal_lm_class(model):
    """Hugging Face's causal LM classes (``GPT2LMHeadModel``, ``LlamaForCausalLM``, ...)."""
    return any(_CAUSAL_CLASS.search(cls.__name__) for cls in type(model).__mro__)


def _labels_of(labels, mask, input_ids, what):
    if labels is not None:
        return np.asarray(labels).astype(np.int64)
    if input_ids is None:
        raise DataError(f"eval_dataloader: the report needs labelled batches; got {what} "
                        f"without labels (and no input_ids to read next-token targets from)")
    ids = np.asarray(input_ids).astype(np.int64)
    if mask is None:
        return ids
    return np.where(np.asarray(mask) == 1, ids, -100)


def _is_causal(labels, input_ids, causal_class):
    if causal_class:
        return True
    if input_ids is None or np.shape(input_ids) != np.shape(labels):
        return False
    labelled = labels != -100
    return bool(labelled.any() and np.all(labels[labelled] == np.asarray(input_ids)[labelled]))


def _sequence_rows(teacher_batch, student_logits, causal_class):
    t_logits, labels, mask, input_ids = teacher_batch
    labels = _labels_of(labels, mask, input_ids, "sequence outputs")
    if labels.shape != t_logits.shape[:2]:
        raise DataError(f"eval_dataloader: labels of shape {labels.shape} do not match the "
                        f"outputs' [batch, seq] = {t_logits.shape[:2]}")
    if _is_causal(labels, input_ids, causal_class):
        targets = np.full_like(labels, -100)
        targets[:, :-1] = labels[:, 1:]
    else:
        targets = labels
    valid = targets != -100
    return t_logits[valid], student_logits[valid], targets[valid]


def gather(teacher_batches, student_batches, causal_class=False):
    """(teacher rows, student rows, labels, sequence) over every batch.

    ``*_batches``: per batch (logits, labels, attention_mask, input_ids) of one model over the
    same (unshuffled) evaluation data. ``causal_class``: a model is a causal LM by its class.
    """
    if not teacher_batches:
        raise DataError("eval_dataloader: no batches; the report needs evaluation data")
    sequence = teacher_batches[0][0].ndim == 3
    t_rows, s_rows, targets = [], [], []
    for t_batch, s_batch in zip(teacher_batches, student_batches):
        if (t_batch[0].ndim == 3) != sequence or s_batch[0].ndim != t_batch[0].ndim:
            raise DataError(f"eval_dataloader: outputs of shape {t_batch[0].shape} (teacher) "
                            f"and {s_batch[0].shape} (student); expected [batch, classes] or "
                            f"[batch, seq, vocab] from both models in every batch")
        if sequence:
            t, s, y = _sequence_rows(t_batch, s_batch[0], causal_class)
        else:
            if t_batch[1] is None:
                raise DataError("eval_dataloader: the report needs labelled batches; got "
                                "inputs only")
            t, s, y = t_batch[0], s_batch[0], np.asarray(t_batch[1]).reshape(-1)
        t_rows.append(t)
        s_rows.append(s)
        targets.append(y)
    t_out, s_out, labels = (np.concatenate(a) for a in (t_rows, s_rows, targets))
    if sequence and not len(labels):
        raise DataError("eval_dataloader: no valid token (every label is -100 or padding); "
                        "the per-token report needs at least one")
    return t_out, s_out, labels, sequence
