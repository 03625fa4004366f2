"""Teacher-vs-student figures computed on NumPy outputs, the same for every framework.

Inputs are the models' outputs over the evaluation data, shape ``(N, classes)``. Outputs that
already are probabilities (non-negative rows summing to 1, a model ending in softmax) are used
as they are; anything else is taken as logits.
"""

import numpy as np

_EPS = 1e-12


def probabilities(outputs):
    """Row-wise class probabilities of logits (or of outputs that already are probabilities)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2:
        raise ValueError(f"expected outputs of shape (N, classes), got {outputs.shape}")
    if np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-4):
        return outputs / outputs.sum(axis=1, keepdims=True)
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def agreement(teacher_outputs, student_outputs):
    """Fraction of samples on which the top-1 classes of teacher and student are the same."""
    return float(np.mean(np.argmax(teacher_outputs, axis=1) == np.argmax(student_outputs, axis=1)))


def mean_kl(teacher_outputs, student_outputs):
    """Mean over samples of KL(p_teacher || p_student) at temperature 1, in nats."""
    p_t = probabilities(teacher_outputs)
    p_s = probabilities(student_outputs)
    # 0 * log 0 counts as 0: a class the teacher rules out costs nothing.
    terms = np.where(p_t > 0, p_t * (np.log(np.maximum(p_t, _EPS)) - np.log(np.maximum(p_s, _EPS))),
                     0.0)
    return float(np.mean(terms.sum(axis=1)))


def reliability_bins(outputs, labels, bins=15):
    """Per confidence bin (equal width on [0, 1]): sample count, mean confidence, accuracy.

    Returns three arrays of length ``bins``; empty bins have count 0 and NaN mean/accuracy.
    Samples labelled -100 (unlabeled) are skipped.
    """
    probs = probabilities(outputs)
    labels = np.asarray(labels).reshape(-1)
    keep = labels != -100
    probs, labels = probs[keep], labels[keep]
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # A confidence of exactly 1.0 belongs to the last bin.
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return counts, mean_conf, accuracy


def expected_calibration_error(outputs, labels, bins=15):
    """ECE: sum over bins of (share of samples) * |accuracy - mean confidence|."""
    counts, mean_conf, accuracy = reliability_bins(outputs, labels, bins)
    total = counts.sum()
    if total == 0:
        return float("nan")
    filled = counts > 0
    return float(np.sum(counts[filled] / total * np.abs(accuracy[filled] - mean_conf[filled])))


def median_seconds(timings):
    return float(np.median(np.asarray(timings, dtype=np.float64)))


def per_class_agreement(teacher_outputs, student_outputs, labels):
    """{class: (samples, agreement)} over the labelled samples, grouped by their true class.

    Agreement is the share of a class's samples on which the student's top class is the
    teacher's; samples labelled -100 belong to no class.
    """
    labels = np.asarray(labels).reshape(-1)
    same = np.argmax(teacher_outputs, axis=1) == np.argmax(student_outputs, axis=1)
    keep = labels != -100
    labels, same = labels[keep], same[keep]
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    agreeing = np.bincount(index, weights=same.astype(np.float64), minlength=len(classes))
    return {int(c): (int(n), float(a / n)) for c, n, a in zip(classes, counts, agreeing)}


def worst_classes(per_class, count=5, min_samples=1):
    """The ``count`` classes with the lowest agreement (more samples first on a tie), among
    those with at least ``min_samples`` samples, as (class, samples, agreement)."""
    rows = [(c, n, a) for c, (n, a) in per_class.items() if n >= min_samples]
    return sorted(rows, key=lambda row: (row[2], -row[1], row[0]))[:count]
