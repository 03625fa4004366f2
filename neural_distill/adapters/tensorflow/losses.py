"""Distillation loss math for TensorFlow, as pure functions (docs/criteria.md).

The same formulas as ``neural_distill.adapters.torch.losses``, term for term, in float32:
logits of any rank are flattened to (positions, classes) and every position is one sample of
the batch mean. Static shapes are never required, so these run eagerly and under tf.function.
"""

import tensorflow as tf

from neural_distill.criterion.base import self_distillation_losses

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


KD_LOSSES = {"KL": kl_divergence, "CE": soft_cross_entropy, "MSE": logit_mse}


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


FEATURE_LOSSES = {"MSE": feature_mse, "L1": feature_l1, "KL": feature_kl,
                  "cosine": feature_cosine}


SELF_LOSSES = self_distillation_losses(kl_divergence, soft_cross_entropy, feature_mse)

# Every loss type of every family of criterion/catalog/loss_types.py, by family.
LOSSES = {"student": STUDENT_LOSSES, "kd": KD_LOSSES, "feature": FEATURE_LOSSES,
          "self": SELF_LOSSES}
