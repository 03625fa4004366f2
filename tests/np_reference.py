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
