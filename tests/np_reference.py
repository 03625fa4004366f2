"""An independent NumPy reference of the criteria, written from DESIGN.md section 2 alone.

float64 throughout; nothing here calls or mirrors the library's code paths.
"""

import numpy as np


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def rows(a):
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(-1, a.shape[-1])


def tempered(outputs, temperature, from_logits):
    """p = softmax(z / T) for logits; p^(1/T) renormalised for probabilities."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if from_logits:
        return softmax(outputs / temperature)
    powered = outputs ** (1.0 / temperature)
    return powered / powered.sum(axis=-1, keepdims=True)


def kd(kd_type, student, teacher, temperature, from_logits=True):
    if kd_type == "MSE":
        return np.mean((np.asarray(student, np.float64) - np.asarray(teacher, np.float64)) ** 2)
    p_s = rows(tempered(student, temperature, from_logits))
    p_t = rows(tempered(teacher, temperature, from_logits))
    if kd_type == "KL":
        per_sample = np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1)
    else:
        per_sample = np.sum(-p_t * np.log(p_s), axis=-1)
    return temperature ** 2 * per_sample.mean()


def student_term(student_type, outputs, labels, from_logits=True):
    if student_type == "MSE":
        return np.mean((np.asarray(outputs, np.float64) - np.asarray(labels, np.float64)) ** 2)
    probs = rows(softmax(np.asarray(outputs, np.float64)) if from_logits
                 else np.asarray(outputs, np.float64))
    labels = np.asarray(labels).reshape(-1)
    keep = labels != -100
    if not keep.any():
        return 0.0
    return float(np.mean(-np.log(probs[keep, labels[keep]])))


def total(student_type, kd_type, weights, student, teacher, labels, temperature,
          from_logits=True):
    distill = kd(kd_type, student, teacher, temperature, from_logits)
    if labels is None:
        return weights[1] * distill
    return (weights[0] * student_term(student_type, student, labels, from_logits)
            + weights[1] * distill)


def feature(loss_type, s, t):
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    if loss_type == "MSE":
        return ((s - t) ** 2).mean()
    if loss_type == "L1":
        return np.abs(s - t).mean()
    a, b = rows(s), rows(t)
    if loss_type == "KL":
        ls, lt = log_softmax(a), log_softmax(b)
        return (np.exp(lt) * (lt - ls)).sum(-1).mean()
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return (1 - cos).mean()


def valid_tokens(batch, seq, labels=None, attention_mask=None, causal=False):
    """[batch, seq] bools of the positions a per-token term counts (DESIGN.md section 8):
    causal LM with labels: t iff labels[t + 1] != -100; token labels: labels[t] != -100;
    else attention_mask[t] == 1; else all."""
    keep = np.ones((batch, seq), dtype=bool)
    if labels is not None:
        labels = np.asarray(labels)
        if causal:
            keep[:, -1] = False
            for t in range(seq - 1):
                keep[:, t] = labels[:, t + 1] != -100
        else:
            keep = labels != -100
    elif attention_mask is not None:
        keep = np.asarray(attention_mask) == 1
    return keep


def token_kd(kd_type, student, teacher, temperature, keep, from_logits=True):
    """The distillation term over the kept tokens of [batch, seq, classes] outputs: every kept
    token is one sample of the mean (a mean over the batch's tokens, not per sequence)."""
    student = np.asarray(student, np.float64)
    teacher = np.asarray(teacher, np.float64)
    chosen_s, chosen_t = [], []
    for b in range(student.shape[0]):
        for t in range(student.shape[1]):
            if keep[b, t]:
                chosen_s.append(student[b, t])
                chosen_t.append(teacher[b, t])
    if not chosen_s:
        return 0.0
    return kd(kd_type, np.stack(chosen_s), np.stack(chosen_t), temperature, from_logits)


def causal_lm_cross_entropy(logits, labels):
    """Hugging Face's causal-LM loss: logits[t] against labels[t + 1], -100 ignored, mean over
    the counted tokens of the batch."""
    logits = np.asarray(logits, np.float64)[:, :-1]
    labels = np.asarray(labels)[:, 1:]
    return student_term("CE", logits, labels)
