"""The valid tokens of a [batch, seq, vocab] output, in PyTorch (rule: language/tokens.py)."""

import torch

from neural_distill.errors import ModelError
from neural_distill.language.tokens import CAUSAL, IGNORE_INDEX, TOKEN


def _is_integer(tensor):
    return (isinstance(tensor, torch.Tensor) and not tensor.is_floating_point()
            and tensor.dtype != torch.bool)


def _shape(tensor):
    return tuple(getattr(tensor, "shape", ()))


def valid_token_mask(logits, tokens):
    """A bool [batch, seq] tensor of the positions that count, or None (every one counts)."""
    if tokens is None or logits.dim() != 3:
        return None
    kind, tensor = tokens.rule(tuple(logits.shape[:2]), _shape, _is_integer)
    if kind is None:
        return None
    tensor = torch.as_tensor(tensor, device=logits.device)
    if kind == CAUSAL:
        # logits[t] predict token t + 1: count t iff labels[t + 1] is not ignored.
        valid = tensor[:, 1:] != IGNORE_INDEX
        return torch.cat([valid, valid.new_zeros(valid.shape[0], 1)], dim=1)
    if kind == TOKEN:
        return tensor != IGNORE_INDEX
    return tensor != 0  # attention_mask: 1 for real tokens (or True)


def valid_rows(student, teacher, tokens):
    """``(student, teacher)`` as [n_valid, vocab] rows when a sequence axis and a rule apply,
    else unchanged. Gathering the rows first lets any row-wise divergence average over the
    batch's valid tokens."""
    mask = valid_token_mask(student, tokens)
    if mask is None:
        return student, teacher
    return student[mask], teacher[mask]


def counted_rows(logits, valid):
    """The ``[n, vocab]`` rows of ``logits`` ``[batch, positions, vocab]`` at ``valid`` (a
    NumPy bool mask), still on the logits' device: a cache copies these, not the batch."""
    return logits[torch.as_tensor(valid, device=logits.device)]


@torch.no_grad()
def top_k_log_probs(rows, k, temperature):
    """``(indices, log_probs, log_tail)`` as NumPy: the k largest log-probabilities of
    ``softmax(rows / temperature)`` and the log of the mass left, computed where ``rows`` are
    (one ``topk`` on the GPU), so only ``[n, k]`` reaches the host."""
    scaled = rows.float() / temperature
    log_norm = torch.logsumexp(scaled, dim=-1, keepdim=True)
    values, indices = torch.topk(scaled, k, dim=-1)
    log_probs = (values - log_norm).double()
    kept = log_probs.exp().sum(-1)
    # log(1 - kept) without cancelling to -inf when the kept mass is 1 to float precision
    log_tail = torch.log1p(-kept.clamp(max=1.0 - 1e-12))
    return indices.cpu().numpy(), log_probs.cpu().numpy(), log_tail.cpu().numpy()


def counted_student_rows(student, tokens, count):
    """The student's ``[n, vocab]`` rows at the counted tokens, to meet a per-token cache's
    ``count`` records of the same tokens in the same order."""
    mask = valid_token_mask(student, tokens)
    rows = student[mask] if mask is not None else student.reshape(-1, student.shape[-1])
    if rows.shape[0] != count:
        raise ModelError(
            f"teacher_cache: the cached teacher outputs hold {count} tokens; the student's "
            f"output {tuple(student.shape)} counts {rows.shape[0]}. Hand "
            f"on_after_compute_loss the same labels the cache was looked up with.")
    return rows
