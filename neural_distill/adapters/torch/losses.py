"""Distillation loss math for PyTorch, as pure functions (docs/criteria.md).

Logits of any rank are flattened to (positions, classes): for per-token outputs every token is
one "sample" of the batch mean, which keeps the loss scale independent of sequence length
only through the number of positions, exactly like the classification case.
"""

import torch
import torch.nn.functional as F

from neural_distill.criterion.base import self_distillation_losses

IGNORE_INDEX = -100
# Probabilities are clamped before the log so a hard 0 cannot produce -inf or NaN gradients.
PROB_EPS = 1e-7


def as_log_space(outputs, from_logits):
    """Log-probability-like scores: logits as they are, probabilities as clamped logs.

    Scaling these by 1/T and renormalising gives softmax(z/T) for logits and p^(1/T)/sum for
    probabilities, which is the correct tempered distribution in both cases (never p / T).
    """
    if from_logits:
        return outputs
    return torch.log(outputs.clamp_min(PROB_EPS))


def _tempered_log_probs(outputs, temperature, from_logits):
    scores = as_log_space(outputs, from_logits)
    if temperature != 1.0:
        scores = scores / temperature
    return F.log_softmax(scores.reshape(-1, scores.shape[-1]).float(), dim=-1)


def kl_divergence(student, teacher, temperature=1.0, from_logits=True):
    """T^2 * mean over samples of sum_c p_t (log p_t - log p_s)."""
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    log_p_t = _tempered_log_probs(teacher, temperature, from_logits)
    per_class = log_p_t.exp() * (log_p_t - log_p_s)
    return per_class.sum() / log_p_s.shape[0] * (temperature ** 2)


def soft_cross_entropy(student, teacher, temperature=1.0, from_logits=True):
    """T^2 * mean over samples of sum_c -p_t log p_s."""
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    p_t = _tempered_log_probs(teacher, temperature, from_logits).exp()
    return -(p_t * log_p_s).sum() / log_p_s.shape[0] * (temperature ** 2)


def logit_mse(student, teacher, temperature=1.0, from_logits=True):
    """Mean over elements of (z_s - z_t)^2; no temperature (plain logit matching)."""
    return F.mse_loss(student.float(), teacher.float())


KD_LOSSES = {"KL": kl_divergence, "CE": soft_cross_entropy, "MSE": logit_mse}


def label_cross_entropy(outputs, labels, from_logits=True):
    """Cross-entropy against labels, averaged over labeled samples only.

    Samples labeled IGNORE_INDEX (-100, PyTorch's convention) are unlabeled: they add nothing
    here and get the distillation term alone. Dividing by max(count, 1) instead of letting
    ``F.cross_entropy`` average keeps an all-unlabeled batch at 0 instead of NaN, without a
    device sync to test for that case.
    """
    scores = as_log_space(outputs, from_logits)
    scores = scores.reshape(-1, scores.shape[-1])
    if labels.is_floating_point():  # soft labels: one probability vector per sample
        target = labels.reshape(-1, labels.shape[-1])
        return -(target * F.log_softmax(scores.float(), dim=-1)).sum() / scores.shape[0]
    labels = labels.reshape(-1)
    total = F.cross_entropy(scores.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = (labels != IGNORE_INDEX).sum().clamp_min(1)
    return total / count


def label_mse(outputs, labels, from_logits=True):
    return F.mse_loss(outputs.float(), labels.to(outputs.dtype).reshape(outputs.shape).float())


STUDENT_LOSSES = {"CE": label_cross_entropy, "MSE": label_mse}


# ------------------------------------------------------------------ feature losses
def _last_dim_vectors(x):
    return x.reshape(-1, x.shape[-1]).float()


def feature_mse(s, t):
    return F.mse_loss(s.float(), t.float())


def feature_l1(s, t):
    return F.l1_loss(s.float(), t.float())


def feature_kl(s, t):
    """KL(softmax(t) || softmax(s)) over the last dimension, mean over the other positions."""
    log_s = torch.log_softmax(_last_dim_vectors(s), -1)
    log_t = torch.log_softmax(_last_dim_vectors(t), -1)
    return (log_t.exp() * (log_t - log_s)).sum() / log_s.shape[0]


def feature_cosine(s, t):
    """1 - cosine similarity over the last dimension, mean over the other positions."""
    return (1 - F.cosine_similarity(
        _last_dim_vectors(s), _last_dim_vectors(t), dim=-1, eps=1e-8)).mean()


FEATURE_LOSSES = {"MSE": feature_mse, "L1": feature_l1, "KL": feature_kl,
                  "cosine": feature_cosine}


SELF_LOSSES = self_distillation_losses(kl_divergence, soft_cross_entropy, feature_mse)

# Every loss type of every family of criterion/catalog/loss_types.py, by family.
LOSSES = {"student": STUDENT_LOSSES, "kd": KD_LOSSES, "feature": FEATURE_LOSSES,
          "self": SELF_LOSSES}
