"""Distillation divergences against a teacher's top-k record (teacher_cache/token_codec.py).

The teacher is known on k + 1 buckets only: its k kept classes and the tail (every other class,
as one bucket). The student's tempered distribution ``q = softmax(z_s / T)`` is collapsed onto
the same buckets: ``q`` at the kept indices, and ``q_tail`` the mass of all other classes,
taken as a log-sum-exp over the student's logits with the kept ones masked out (stable when the
kept classes hold nearly all the mass, where ``1 - sum q`` would cancel). The divergence is then
exact on those buckets, with the conventions of ``losses.py``: the T^2 factor, the mean over
rows, the JSD mixture in log space, and JSD's beta 0 / 1 as forward / reverse KL.
"""

import math

import torch

from neural_distill.errors import ConfigError, ModelError

TOPK_KINDS = ("KL", "RKL", "JSD", "CE")


def bucket_log_probs(student_rows, indices, temperature=1.0):
    """The student's log-probabilities on the k + 1 buckets: ``[N, k + 1]``, tail last."""
    dtype = torch.promote_types(student_rows.dtype, torch.float32)
    scores = student_rows.to(dtype)
    if temperature != 1.0:
        scores = scores / temperature
    kept = scores.gather(1, indices)
    tail = torch.logsumexp(scores.scatter(1, indices, float("-inf")), dim=-1, keepdim=True)
    buckets = torch.cat([kept, tail], dim=-1)
    # The normalizer from the k + 1 bucket sums: one pass over the vocabulary, not two.
    return buckets - torch.logsumexp(buckets, dim=-1, keepdim=True)


def _weighted_log_ratio(log_a, log_b):
    """sum_b a (log a - log b) per row, a bucket with a == 0 adding 0 (not 0 * -inf)."""
    terms = log_a.exp() * (log_a - log_b)
    return torch.where(log_a > float("-inf"), terms, torch.zeros_like(terms)).sum(dim=-1)


def topk_divergence(student_rows, indices, log_probs, log_tail, kind, temperature=1.0,
                    beta=0.5):
    """T^2 * mean over rows of the divergence ``kind`` between teacher and student on the
    k + 1 buckets (module docstring).

    ``student_rows``: logits ``[N, V]`` (any float dtype; computed in float32, or float64 if
    given); ``indices`` ``[N, k]``, ``log_probs`` ``[N, k]``, ``log_tail`` ``[N]``: the
    teacher's record, already at ``temperature``. ``kind``: ``KL`` (KL(teacher || student)),
    ``RKL`` (KL(student || teacher)), ``JSD`` (generalized, ``beta`` as in
    ``losses.generalized_jsd``) or ``CE`` (``-sum p log q``). Gradients reach ``student_rows``
    only: the teacher's record is detached.
    """
    if kind not in TOPK_KINDS:
        raise ConfigError(f"distillation.train.criterion: a top-k teacher cache serves the "
                          f"divergences {list(TOPK_KINDS)}, got kd_type {kind!r}; use one of "
                          f"those, or compression: none")
    if kind == "JSD" and not 0.0 <= float(beta) <= 1.0:
        raise ConfigError(f"distillation.train.criterion: JSD beta must be in [0, 1], got "
                          f"{beta!r}")
    _check_shapes(student_rows, indices, log_probs, log_tail)
    if student_rows.shape[0] == 0:
        return student_rows.sum() * 0.0
    log_q = bucket_log_probs(student_rows, indices.long(), temperature)
    log_p = torch.cat([log_probs.detach().to(log_q.dtype),
                       log_tail.detach().to(log_q.dtype).reshape(-1, 1)], dim=-1)
    if kind == "JSD" and beta == 0.0:
        kind = "KL"
    elif kind == "JSD" and beta == 1.0:
        kind = "RKL"
    if kind == "KL":
        per_row = _weighted_log_ratio(log_p, log_q)
    elif kind == "RKL":
        per_row = _weighted_log_ratio(log_q, log_p)
    elif kind == "CE":
        p = log_p.exp()
        per_row = -(p * log_q).sum(dim=-1)
    else:
        # log m in log space: no probability is exponentiated to 0 and logged again.
        log_m = torch.logsumexp(torch.stack([log_p + math.log(beta),
                                             log_q + math.log(1.0 - beta)]), dim=0)
        per_row = (beta * _weighted_log_ratio(log_p, log_m)
                   + (1.0 - beta) * _weighted_log_ratio(log_q, log_m))
    return per_row.sum() / per_row.shape[0] * (temperature ** 2)


def _check_shapes(student_rows, indices, log_probs, log_tail):
    rows = student_rows.shape[0] if student_rows.dim() == 2 else None
    k = indices.shape[-1] if indices.dim() == 2 else None
    if (rows is None or k is None or tuple(indices.shape) != (rows, k)
            or tuple(log_probs.shape) != (rows, k) or tuple(log_tail.shape) != (rows,)
            or k >= student_rows.shape[1]):
        raise ModelError(
            f"top-k distillation: expected student logits [N, V], teacher indices and "
            f"log-probabilities [N, k] with k < V, and the teacher's log tail [N]; got "
            f"{tuple(student_rows.shape)}, {tuple(indices.shape)}, {tuple(log_probs.shape)} "
            f"and {tuple(log_tail.shape)}: flatten the valid tokens to rows and check that the "
            f"cache was written for this vocabulary")
