"""Distillation loss math for PyTorch, as pure functions (docs/criteria.md).

Logits of any rank are flattened to (positions, classes): for per-token outputs every token is
one "sample" of the batch mean, which keeps the loss scale independent of sequence length
only through the number of positions, exactly like the classification case.
"""

import math

import torch
import torch.nn.functional as F

from neural_distill.criterion.base import self_distillation_losses
from neural_distill.errors import ModelError

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


def reverse_kl_divergence(student, teacher, temperature=1.0, from_logits=True):
    """T^2 * mean over rows of sum_c p_s (log p_s - log p_t): KL(student || teacher)."""
    log_p_s = _tempered_log_probs(student, temperature, from_logits)
    log_p_t = _tempered_log_probs(teacher, temperature, from_logits)
    per_class = log_p_s.exp() * (log_p_s - log_p_t)
    return per_class.sum() / log_p_s.shape[0] * (temperature ** 2)


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
    # log m computed in log space: no probability is ever exponentiated to 0 and logged again.
    log_m = torch.logsumexp(torch.stack([log_p_t + math.log(beta),
                                         log_p_s + math.log(1.0 - beta)]), dim=0)
    to_teacher = log_p_t.exp() * (log_p_t - log_m)
    to_student = log_p_s.exp() * (log_p_s - log_m)
    per_class = beta * to_teacher + (1.0 - beta) * to_student
    return per_class.sum() / log_p_s.shape[0] * (temperature ** 2)


KD_LOSSES = {"KL": kl_divergence, "CE": soft_cross_entropy, "MSE": logit_mse,
             "RKL": reverse_kl_divergence, "JSD": generalized_jsd}


def standardize_logits(logits, eps=1e-7):
    """Each row as ``(z - mean) / (std + eps)`` over the classes (Sun et al., CVPR 2024); the
    standard deviation is the unbiased one, as torch computes it by default."""
    logits = logits.float()
    mean = logits.mean(dim=-1, keepdim=True)
    return (logits - mean) / (logits.std(dim=-1, keepdim=True) + eps)


def decoupled_kd(student, teacher, target, alpha=1.0, beta=8.0, temperature=4.0):
    """DKD (Zhao et al., CVPR 2022): ``alpha * TCKD + beta * NCKD``, each x T^2, batch mean.

    TCKD is the KL between the binary distributions [p_target, p_rest] of teacher and student;
    NCKD the KL between their distributions over the other classes, the target's logit pushed
    down by 1000 before the softmax so it takes no mass. ``target``: one class id per row.
    """
    s = student.reshape(-1, student.shape[-1]).float() / temperature
    t = teacher.reshape(-1, teacher.shape[-1]).float() / temperature
    is_target = F.one_hot(target.reshape(-1).long(), s.shape[-1]).bool()
    rows = s.shape[0]
    # log [p_target, p_rest] from log-sum-exps: stable where p_target is nearly 1 or 0.
    tckd = _binary_kl(_binary_log_probs(s, is_target), _binary_log_probs(t, is_target))
    pushed = 1000.0 * is_target.float()
    log_q_s = F.log_softmax(s - pushed, dim=-1)
    log_q_t = F.log_softmax(t - pushed, dim=-1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum()
    return (alpha * tckd + beta * nckd) / rows * (temperature ** 2)


def _binary_log_probs(scores, is_target):
    total = torch.logsumexp(scores, dim=-1)
    target = (scores * is_target).sum(dim=-1)
    rest = torch.logsumexp(scores.masked_fill(is_target, float("-inf")), dim=-1)
    return torch.stack([target - total, rest - total], dim=-1)


def _binary_kl(log_b_s, log_b_t):
    return (log_b_t.exp() * (log_b_t - log_b_s)).sum()


def _pearson_rows(a, b, eps=1e-8):
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(student, teacher, beta=1.0, gamma=1.0, temperature=1.0):
    """DIST (Huang et al., NeurIPS 2022): ``T^2 * (beta * inter + gamma * intra)``.

    inter = 1 - mean Pearson correlation of each row's class probabilities (student vs
    teacher); intra = the same over the columns (each class across the batch).
    """
    y_s = F.softmax(student.reshape(-1, student.shape[-1]).float() / temperature, dim=-1)
    y_t = F.softmax(teacher.reshape(-1, teacher.shape[-1]).float() / temperature, dim=-1)
    inter = 1.0 - _pearson_rows(y_s, y_t).mean()
    intra = 1.0 - _pearson_rows(y_s.t(), y_t.t()).mean()
    return (temperature ** 2) * (beta * inter + gamma * intra)


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


def _attention_map(x, where):
    if x.dim() < 3:
        raise ModelError(f"{where}: AT needs feature maps [batch, channels, ...spatial], got "
                         f"shape {tuple(x.shape)}; map a convolutional layer")
    a = x.float().pow(2).mean(dim=1).reshape(x.shape[0], -1)
    return F.normalize(a, dim=1)


def feature_attention(s, t):
    """AT (Zagoruyko & Komodakis, ICLR 2017): the mean squared difference of the
    L2-normalised spatial attention maps (the mean over channels of the squared activations);
    the channel counts may differ, the spatial sizes may not."""
    a_s, a_t = _attention_map(s, "student"), _attention_map(t, "teacher")
    if a_s.shape != a_t.shape:
        raise ModelError(f"AT: the student's attention map has {tuple(a_s.shape)} positions and "
                         f"the teacher's {tuple(a_t.shape)}: the spatial sizes must agree "
                         f"(pool one side with a process callable)")
    return (a_s - a_t).pow(2).mean()


def _batch_similarity(x):
    flat = x.float().reshape(x.shape[0], -1)
    return F.normalize(flat @ flat.t(), dim=1)


def feature_similarity(s, t):
    """SP (Tung & Mori, ICCV 2019): ``||G_s - G_t||_F^2 / b^2``, G the row-normalised batch
    Gram matrix of the flattened features (any feature sizes)."""
    return (_batch_similarity(s) - _batch_similarity(t)).pow(2).mean()


def _pairwise_distances(x, eps=1e-12):
    squared = x.pow(2).sum(dim=1)
    d2 = (squared.unsqueeze(1) + squared.unsqueeze(0) - 2 * x @ x.t()).clamp_min(eps)
    off_diagonal = 1.0 - torch.eye(x.shape[0], device=x.device, dtype=x.dtype)
    return d2.sqrt() * off_diagonal


def _angles(x):
    diff = x.unsqueeze(0) - x.unsqueeze(1)
    unit = F.normalize(diff, p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2)).reshape(-1)


def feature_relational(s, t, distance_weight=25.0, angle_weight=50.0):
    """RKD (Park et al., CVPR 2019): ``w_d * huber(d_s, d_t) + w_a * huber(a_s, a_t)``.

    d: the batch's pairwise Euclidean distances, each divided by their mean over distinct
    pairs; a: the cosines of the angles of every triple. Huber is smooth L1 (delta 1), mean.
    """
    x_s = s.float().reshape(s.shape[0], -1)
    x_t = t.float().reshape(t.shape[0], -1)
    d_s, d_t = _pairwise_distances(x_s), _pairwise_distances(x_t)
    d_s = d_s / d_s[d_s > 0].mean()
    d_t = d_t / d_t[d_t > 0].mean()
    distance = F.smooth_l1_loss(d_s, d_t)
    angle = F.smooth_l1_loss(_angles(x_s), _angles(x_t))
    return distance_weight * distance + angle_weight * angle


FEATURE_LOSSES = {"MSE": feature_mse, "L1": feature_l1, "KL": feature_kl,
                  "cosine": feature_cosine, "AT": feature_attention, "SP": feature_similarity,
                  "RKD": feature_relational}


SELF_LOSSES = self_distillation_losses(kl_divergence, soft_cross_entropy, feature_mse)

# Every loss type of every family of criterion/catalog/loss_types.py, by family.
LOSSES = {"student": STUDENT_LOSSES, "kd": KD_LOSSES, "feature": FEATURE_LOSSES,
          "self": SELF_LOSSES}
