"""Distillation loss math for TensorFlow, as pure functions (docs/criteria.md).

The same formulas as ``neural_distill.adapters.torch.losses``, term for term, in float32:
logits of any rank are flattened to (positions, classes) and every position is one sample of
the batch mean. Static shapes are never required, so these run eagerly and under tf.function.
"""

import math

import tensorflow as tf

from neural_distill.criterion.base import self_distillation_losses
from neural_distill.errors import ModelError

IGNORE_INDEX = -100
# Probabilities are clamped before the log so a hard 0 cannot produce -inf or NaN gradients.
PROB_EPS = 1e-7


def _float(x):
    return tf.cast(x, tf.float32)


def _rows(x):
    """(positions, classes); static shapes are used where known, so a compiled step gets no
    shape ops for the common (batch, classes) case."""
    if x.shape.rank == 2:
        return x
    last = x.shape[-1]
    return tf.reshape(x, [-1, last if last is not None else tf.shape(x)[-1]])


def _count_rows(x):
    rows = x.shape[0]
    return float(rows) if rows is not None else tf.cast(tf.shape(x)[0], tf.float32)


def as_log_space(outputs, from_logits):
    """Log-probability-like scores: logits as they are, probabilities as clamped logs.

    Scaling these by 1/T and renormalising gives softmax(z/T) for logits and p^(1/T)/sum for
    probabilities, which is the correct tempered distribution in both cases (never p / T).
    """
    outputs = _float(outputs)
    if from_logits:
        return outputs
    return tf.math.log(tf.maximum(outputs, PROB_EPS))


def _tempered_log_probs(outputs, temperature, from_logits):
    scores = as_log_space(outputs, from_logits)
    if temperature != 1.0:
        scores = scores / temperature
    return tf.nn.log_softmax(_rows(scores), axis=-1)


def kl_divergence(student, teacher, temperature=1.0, from_logits=True):
    """T^2 * mean over samples of sum_c p_t (log p_t - log p_s)."""
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    log_p_t = _tempered_log_probs(teacher, temperature, from_logits)
    per_class = tf.exp(log_p_t) * (log_p_t - log_p_s)
    return tf.reduce_sum(per_class) / _count_rows(log_p_s) * (temperature ** 2)


def soft_cross_entropy(student, teacher, temperature=1.0, from_logits=True):
    """T^2 * mean over samples of sum_c -p_t log p_s."""
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    p_t = tf.exp(_tempered_log_probs(teacher, temperature, from_logits))
    return -tf.reduce_sum(p_t * log_p_s) / _count_rows(log_p_s) * (temperature ** 2)


def logit_mse(student, teacher, temperature=1.0, from_logits=True):
    """Mean over elements of (z_s - z_t)^2; no temperature (plain logit matching)."""
    return tf.reduce_mean(tf.square(_float(student) - _float(teacher)))


def reverse_kl_divergence(student, teacher, temperature=1.0, from_logits=True):
    """T^2 * mean over rows of sum_c p_s (log p_s - log p_t): KL(student || teacher)."""
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    log_p_t = _tempered_log_probs(teacher, temperature, from_logits)
    per_class = tf.exp(log_p_s) * (log_p_s - log_p_t)
    return tf.reduce_sum(per_class) / _count_rows(log_p_s) * (temperature ** 2)


def generalized_jsd(student, teacher, temperature=1.0, from_logits=True, beta=0.5):
    """T^2 * mean over rows of beta KL(p_t || m) + (1 - beta) KL(p_s || m),
    m = beta p_t + (1 - beta) p_s; beta 0 is forward KL and beta 1 reverse KL (TRL's GKD
    convention: at the ends the mixture formula itself would be 0, so they are special cases).
    """
    if beta == 0.0:
        return kl_divergence(student, teacher, temperature, from_logits)
    if beta == 1.0:
        return reverse_kl_divergence(student, teacher, temperature, from_logits)
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    log_p_t = _tempered_log_probs(teacher, temperature, from_logits)
    log_m = tf.reduce_logsumexp(tf.stack([log_p_t + math.log(beta),
                                          log_p_s + math.log(1.0 - beta)]), axis=0)
    to_teacher = tf.exp(log_p_t) * (log_p_t - log_m)
    to_student = tf.exp(log_p_s) * (log_p_s - log_m)
    per_class = beta * to_teacher + (1.0 - beta) * to_student
    return tf.reduce_sum(per_class) / _count_rows(log_p_s) * (temperature ** 2)


KD_LOSSES = {"KL": kl_divergence, "CE": soft_cross_entropy, "MSE": logit_mse,
             "RKL": reverse_kl_divergence, "JSD": generalized_jsd}


def standardize_logits(logits, eps=1e-7):
    """Each row as ``(z - mean) / (std + eps)`` over the classes (Sun et al., CVPR 2024), with
    the unbiased standard deviation the authors' (torch) code uses."""
    logits = _float(logits)
    mean = tf.reduce_mean(logits, axis=-1, keepdims=True)
    classes = tf.cast(tf.shape(logits)[-1], tf.float32)
    variance = tf.reduce_sum(tf.square(logits - mean), axis=-1, keepdims=True) / (classes - 1.0)
    return (logits - mean) / (tf.sqrt(variance) + eps)


def decoupled_kd(student, teacher, target, alpha=1.0, beta=8.0, temperature=4.0):
    """DKD (Zhao et al., CVPR 2022): ``alpha * TCKD + beta * NCKD``, each x T^2, batch mean.

    TCKD is the KL between the binary distributions [p_target, p_rest] of teacher and student;
    NCKD the KL between their distributions over the other classes, the target's logit pushed
    down by 1000 before the softmax so it takes no mass. ``target``: one class id per row.
    """
    s = _rows(_float(student)) / temperature
    t = _rows(_float(teacher)) / temperature
    classes = s.shape[-1] if s.shape[-1] is not None else tf.shape(s)[-1]
    is_target = tf.one_hot(tf.reshape(tf.cast(target, tf.int32), [-1]), classes,
                           dtype=tf.float32)
    tckd = _binary_kl(_binary_log_probs(s, is_target), _binary_log_probs(t, is_target))
    log_q_s = tf.nn.log_softmax(s - 1000.0 * is_target, axis=-1)
    log_q_t = tf.nn.log_softmax(t - 1000.0 * is_target, axis=-1)
    nckd = tf.reduce_sum(tf.exp(log_q_t) * (log_q_t - log_q_s))
    return (alpha * tckd + beta * nckd) / _count_rows(s) * (temperature ** 2)


def _binary_log_probs(scores, is_target):
    total = tf.reduce_logsumexp(scores, axis=-1)
    target = tf.reduce_sum(scores * is_target, axis=-1)
    masked = tf.where(is_target > 0, tf.fill(tf.shape(scores), -float("inf")), scores)
    rest = tf.reduce_logsumexp(masked, axis=-1)
    return tf.stack([target - total, rest - total], axis=-1)


def _binary_kl(log_b_s, log_b_t):
    return tf.reduce_sum(tf.exp(log_b_t) * (log_b_t - log_b_s))


def _pearson_rows(a, b, eps=1e-8):
    a = a - tf.reduce_mean(a, axis=1, keepdims=True)
    b = b - tf.reduce_mean(b, axis=1, keepdims=True)
    return tf.reduce_sum(a * b, axis=1) / (tf.norm(a, axis=1) * tf.norm(b, axis=1) + eps)


def dist_loss(student, teacher, beta=1.0, gamma=1.0, temperature=1.0):
    """DIST (Huang et al., NeurIPS 2022): ``T^2 * (beta * inter + gamma * intra)``.

    inter = 1 - mean Pearson correlation of each row's class probabilities (student vs
    teacher); intra = the same over the columns (each class across the batch).
    """
    y_s = tf.nn.softmax(_rows(_float(student)) / temperature, axis=-1)
    y_t = tf.nn.softmax(_rows(_float(teacher)) / temperature, axis=-1)
    inter = 1.0 - tf.reduce_mean(_pearson_rows(y_s, y_t))
    intra = 1.0 - tf.reduce_mean(_pearson_rows(tf.transpose(y_s), tf.transpose(y_t)))
    return (temperature ** 2) * (beta * inter + gamma * intra)


def label_cross_entropy(outputs, labels, from_logits=True):
    """Cross-entropy against labels, averaged over labeled samples only.

    Samples labeled IGNORE_INDEX (-100) are unlabeled: they add nothing here and get the
    distillation term alone. Dividing by max(count, 1) keeps an all-unlabeled batch at 0
    instead of NaN. Float labels of the outputs' shape are soft labels (one distribution per
    sample).
    """
    scores = _rows(as_log_space(outputs, from_logits))
    if labels.dtype.is_floating:
        target = _rows(_float(labels))
        return -tf.reduce_sum(target * tf.nn.log_softmax(scores, axis=-1)) / _count_rows(scores)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    labeled = tf.not_equal(labels, IGNORE_INDEX)
    # Ignored positions get a valid class index so the per-sample op stays finite; their
    # values are then masked out (and so are their gradients).
    safe = tf.where(labeled, labels, tf.zeros_like(labels))
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=scores)
    total = tf.reduce_sum(tf.where(labeled, per_sample, tf.zeros_like(per_sample)))
    count = tf.maximum(tf.reduce_sum(tf.cast(labeled, tf.float32)), 1.0)
    return total / count


def label_mse(outputs, labels, from_logits=True):
    outputs = _float(outputs)
    return tf.reduce_mean(tf.square(outputs - tf.reshape(_float(labels), tf.shape(outputs))))


STUDENT_LOSSES = {"CE": label_cross_entropy, "MSE": label_mse}


# ---------------------------------------------------------------------------- features
def _last_dim_vectors(x):
    return _rows(_float(x))


def feature_mse(s, t):
    return tf.reduce_mean(tf.square(_float(s) - _float(t)))


def feature_l1(s, t):
    return tf.reduce_mean(tf.abs(_float(s) - _float(t)))


def feature_kl(s, t):
    """KL(softmax(t) || softmax(s)) over the last dimension, mean over the other positions."""
    log_s = tf.nn.log_softmax(_last_dim_vectors(s), axis=-1)
    log_t = tf.nn.log_softmax(_last_dim_vectors(t), axis=-1)
    return tf.reduce_sum(tf.exp(log_t) * (log_t - log_s)) / _count_rows(log_s)


def feature_cosine(s, t, eps=1e-8):
    """1 - cosine similarity over the last dimension, mean over the other positions."""
    a, b = _last_dim_vectors(s), _last_dim_vectors(t)
    dot = tf.reduce_sum(a * b, axis=-1)
    norms = tf.maximum(tf.norm(a, axis=-1), eps) * tf.maximum(tf.norm(b, axis=-1), eps)
    return tf.reduce_mean(1.0 - dot / norms)


def _flat(x):
    x = _float(x)
    return tf.reshape(x, [tf.shape(x)[0], -1])


def _l2_rows(x, eps=1e-12):
    """x / max(||x||, eps) per row (torch's F.normalize, which the references use)."""
    return x / tf.maximum(tf.norm(x, axis=-1, keepdims=True), eps)


def _attention_map(x, where):
    if x.shape.rank is not None and x.shape.rank < 3:
        raise ModelError(f"{where}: AT needs feature maps [batch, ...spatial, channels], got "
                         f"shape {tuple(x.shape)}; map a convolutional layer")
    # Keras features are channels-last: the channel axis is the last one.
    return _l2_rows(_flat(tf.reduce_mean(tf.square(_float(x)), axis=-1)))


def feature_attention(s, t):
    """AT (Zagoruyko & Komodakis, ICLR 2017): the mean squared difference of the
    L2-normalised spatial attention maps (the mean over channels of the squared activations);
    the channel counts may differ, the spatial sizes may not."""
    a_s, a_t = _attention_map(s, "student"), _attention_map(t, "teacher")
    if None not in (a_s.shape[-1], a_t.shape[-1]) and a_s.shape[-1] != a_t.shape[-1]:
        raise ModelError(f"AT: the student's attention map has {a_s.shape[-1]} positions and "
                         f"the teacher's {a_t.shape[-1]}: the spatial sizes must agree "
                         f"(pool one side with a process callable)")
    return tf.reduce_mean(tf.square(a_s - a_t))


def _batch_similarity(x):
    flat = _flat(x)
    return _l2_rows(tf.matmul(flat, flat, transpose_b=True))


def feature_similarity(s, t):
    """SP (Tung & Mori, ICCV 2019): ``||G_s - G_t||_F^2 / b^2``, G the row-normalised batch
    Gram matrix of the flattened features (any feature sizes)."""
    return tf.reduce_mean(tf.square(_batch_similarity(s) - _batch_similarity(t)))


def _pairwise_distances(x, eps=1e-12):
    squared = tf.reduce_sum(tf.square(x), axis=1)
    d2 = squared[:, None] + squared[None, :] - 2.0 * tf.matmul(x, x, transpose_b=True)
    off_diagonal = 1.0 - tf.eye(tf.shape(x)[0], dtype=x.dtype)
    return tf.sqrt(tf.maximum(d2, eps)) * off_diagonal


def _mean_positive(d):
    positive = tf.cast(d > 0, d.dtype)
    return tf.reduce_sum(d * positive) / tf.reduce_sum(positive)


def _angles(x):
    unit = _l2_rows(x[None, :, :] - x[:, None, :])
    return tf.reshape(tf.matmul(unit, unit, transpose_b=True), [-1])


def _smooth_l1(a, b):
    diff = tf.abs(a - b)
    return tf.reduce_mean(tf.where(diff < 1.0, 0.5 * tf.square(diff), diff - 0.5))


def feature_relational(s, t, distance_weight=25.0, angle_weight=50.0):
    """RKD (Park et al., CVPR 2019): ``w_d * huber(d_s, d_t) + w_a * huber(a_s, a_t)``.

    d: the batch's pairwise Euclidean distances, each divided by their mean over distinct
    pairs; a: the cosines of the angles of every triple. Huber is smooth L1 (delta 1), mean.
    """
    x_s, x_t = _flat(s), _flat(t)
    d_s, d_t = _pairwise_distances(x_s), _pairwise_distances(x_t)
    distance = _smooth_l1(d_s / _mean_positive(d_s), d_t / _mean_positive(d_t))
    angle = _smooth_l1(_angles(x_s), _angles(x_t))
    return distance_weight * distance + angle_weight * angle


FEATURE_LOSSES = {"MSE": feature_mse, "L1": feature_l1, "KL": feature_kl,
                  "cosine": feature_cosine, "AT": feature_attention, "SP": feature_similarity,
                  "RKD": feature_relational}


SELF_LOSSES = self_distillation_losses(kl_divergence, soft_cross_entropy, feature_mse)

# Every loss type of every family of criterion/catalog/loss_types.py, by family.
LOSSES = {"student": STUDENT_LOSSES, "kd": KD_LOSSES, "feature": FEATURE_LOSSES,
          "self": SELF_LOSSES}
