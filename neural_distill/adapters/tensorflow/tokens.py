"""The valid tokens of a [batch, seq, vocab] output, in TensorFlow (rule: language/tokens.py).

Written with graph-safe ops only (``tf.boolean_mask``), so the same code runs in an eager
loop and inside the built-in loop's compiled step.
"""

import numpy as np
import tensorflow as tf

from neural_distill.language.tokens import CAUSAL, IGNORE_INDEX, TOKEN


def _is_integer(tensor):
    dtype = getattr(tensor, "dtype", None)
    if dtype is None:
        return False
    return bool(tf.as_dtype(dtype).is_integer)


def _shape(tensor):
    return tuple(tensor.shape)


def valid_token_mask(logits, tokens):
    """A bool [batch, seq] tensor of the positions that count, or None (every one counts).

    Needs the batch and sequence sizes of ``logits`` statically (as Keras models give them
    eagerly, and in a compiled step whose inputs have a fixed sequence length)."""
    if tokens is None or logits.shape.rank != 3:
        return None
    batch_seq = tuple(logits.shape[:2])
    kind, tensor = tokens.rule(batch_seq, _shape, _is_integer)
    if kind is None:
        return None
    tensor = tf.convert_to_tensor(np.asarray(tensor) if isinstance(tensor, np.ndarray)
                                  else tensor)
    if kind == CAUSAL:
        # logits[t] predict token t + 1: count t iff labels[t + 1] is not ignored.
        valid = tf.not_equal(tensor[:, 1:], tf.cast(IGNORE_INDEX, tensor.dtype))
        return tf.concat([valid, tf.zeros_like(valid[:, :1])], axis=1)
    if kind == TOKEN:
        return tf.not_equal(tensor, tf.cast(IGNORE_INDEX, tensor.dtype))
    return tf.not_equal(tensor, tf.zeros_like(tensor))  # attention_mask: 1 for real tokens


def valid_rows(student, teacher, tokens):
    """``(student, teacher)`` as [n_valid, vocab] rows when a sequence axis and a rule apply,
    else unchanged, and whether rows were selected."""
    mask = valid_token_mask(student, tokens)
    if mask is None:
        return student, teacher, False
    return tf.boolean_mask(student, mask), tf.boolean_mask(teacher, mask), True


def counted_rows(logits, valid):
    """The ``[n, vocab]`` rows of ``logits`` at ``valid`` (a NumPy bool mask), on its device."""
    return tf.boolean_mask(logits, tf.constant(np.asarray(valid, bool)))


def top_k_log_probs(rows, k, temperature):
    """``(indices, log_probs, log_tail)`` as NumPy: the k largest log-probabilities of
    ``softmax(rows / temperature)`` and the log of the mass left."""
    scaled = tf.cast(rows, tf.float32) / temperature
    log_norm = tf.reduce_logsumexp(scaled, axis=-1, keepdims=True)
    values, indices = tf.math.top_k(scaled, k=k)
    log_probs = tf.cast(values - log_norm, tf.float64)
    kept = tf.minimum(tf.reduce_sum(tf.exp(log_probs), axis=-1), 1.0 - 1e-12)
    return indices.numpy(), log_probs.numpy(), tf.math.log1p(-kept).numpy()
