"""Which positions of a [batch, seq, vocab] output a per-token distillation term counts.

The rule (docs/language_models.md), decided here once for both frameworks:

- a causal LM with token labels: position t iff ``labels[t + 1] != -100`` (the logits at t
  predict token t + 1, exactly the positions Hugging Face's own shifted loss uses; the last
  position predicts nothing in the batch and never counts);
- a token-level model (tagger) with token labels: position t iff ``labels[t] != -100``;
- without token labels, with an ``attention_mask``: iff ``attention_mask[t] == 1``;
- otherwise every position.

The mean is over the valid tokens of the whole batch (a long sequence weighs more than a
short one), as in the models' own token losses.
"""

import numpy as np

IGNORE_INDEX = -100
CAUSAL, TOKEN = "causal", "token"

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_causal_lm(model):
    """Whether ``model`` predicts the next token at each position (a decoder-only LM).

    ``model.nd_causal_lm = True/False`` decides for any model (a Keras LM, a custom module);
    otherwise a Hugging Face model says so by its class or ``config.architectures`` name
    (``...ForCausalLM``, ``...LMHeadModel``) or ``config.is_decoder``. A model wrapped by DDP /
    FSDP is looked at through ``.module``.
    """
    if model is None:
        return False
    declared = getattr(model, "nd_causal_lm", None)
    if declared is not None:
        return bool(declared)
    inner = getattr(model, "module", None)
    if inner is not None and inner is not model and hasattr(inner, "config"):
        return is_causal_lm(inner)
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    names = [type(model).__name__, *(getattr(config, "architectures", None) or [])]
    if any(str(name).endswith(_CAUSAL_SUFFIXES) for name in names):
        return True
    return bool(getattr(config, "is_decoder", False))


class TokenBatch:
    """What a step knows about a batch's tokens: its inputs, labels and the model kind.

    ``labels`` is the hook's ``labels`` argument when given, else ``inputs["labels"]`` of a
    dict batch. ``causal`` says whether the student is a causal LM.
    """

    __slots__ = ("inputs", "labels", "causal")

    def __init__(self, inputs, labels=None, causal=False):
        if labels is None and isinstance(inputs, dict):
            labels = inputs.get("labels")
        self.inputs = inputs
        self.labels = labels
        self.causal = causal

    @property
    def attention_mask(self):
        return self.inputs.get("attention_mask") if isinstance(self.inputs, dict) else None

    def rule(self, batch_seq, shape_of, is_integer):
        """``(kind, tensor)``: which rule applies to an output of leading shape ``batch_seq``.

        ``kind`` is ``CAUSAL`` or ``TOKEN`` (``tensor`` = the labels), ``"mask"`` (``tensor`` =
        the attention mask) or None (every position). Labels or a mask of another shape (class
        labels of a sequence classifier, say) do not describe the tokens and are not used.
        """
        labels = self.labels
        if labels is not None and is_integer(labels) and tuple(shape_of(labels)) == batch_seq:
            return (CAUSAL if self.causal else TOKEN), labels
        mask = self.attention_mask
        if mask is not None and tuple(shape_of(mask)) == batch_seq:
            return "mask", mask
        return None, None


def counted_token_array(tokens, batch_seq, to_numpy):
    """:func:`valid_token_array`, with every position counted where no rule applies: the
    tokens a per-token teacher cache keeps (their rows in this order)."""
    valid = valid_token_array(tokens, batch_seq, to_numpy)
    return np.ones(tuple(batch_seq), bool) if valid is None else valid


def valid_token_array(tokens, batch_seq, to_numpy):
    """The rule as a NumPy bool ``[batch, seq]`` array for an output of leading shape
    ``batch_seq``, or None when every position counts. ``to_numpy`` turns the batch's tensors
    into arrays (the backend's). The teacher cache keys and stores a batch's tokens by it, so it
    must pick exactly the rows the criterion's own (framework) mask picks."""
    def shape_of(tensor):
        return tuple(getattr(tensor, "shape", ()))

    def is_integer(tensor):
        dtype = getattr(tensor, "dtype", None)
        if dtype is None:
            return False
        name = str(dtype).rsplit(".", 1)[-1]  # torch.int64 / tf int32 / numpy int64
        return name.startswith(("int", "uint", "long", "short")) and name != "bool"

    if tokens is None or len(batch_seq) != 2:
        return None
    kind, tensor = tokens.rule(tuple(batch_seq), shape_of, is_integer)
    if kind is None:
        return None
    values = np.asarray(tensor if isinstance(tensor, np.ndarray) else to_numpy(tensor))
    if kind == CAUSAL:
        valid = values[:, 1:] != IGNORE_INDEX
        return np.concatenate([valid, np.zeros((valid.shape[0], 1), bool)], axis=1)
    if kind == TOKEN:
        return values != IGNORE_INDEX
    return values != 0


class GeneratedBatch(dict):
    """Token inputs the run generated itself (on-policy completions): new every time, so the
    teacher cache neither looks them up nor stores them (run/step.py)."""
