"""The per-token side of the teacher cache: a language model's teacher outputs kept one record
per *counted* token (docs/teacher_cache.md, "Language models").

A causal LM's teacher output is ``[batch, positions, vocab]``, padded per batch. The loss reads
it only at the positions the valid-token rule counts (``language/tokens.py``: the answer tokens
of a prompt/answer batch, the real tokens of a padded one), so only those rows are stored, in
order, under a key made of the sample's real tokens and which of them count
(``keys.token_keys``). A sentence batched with other sentences, padded to another width or
shuffled into another batch finds its rows again; the batch's own mask says where they go.

What the criterion gets back, never a ``[batch, positions, vocab]`` tensor rebuilt:

- a dense codec (``none`` / ``float16``): a :class:`TokenRows`, the stored logits of the
  counted tokens, which the criterion compares with the student's rows at the same tokens, so
  a ``none`` cache trains exactly as the teacher would;
- ``topk`` (``token_codec.TokenTopKCodec``): a :class:`TokenTargets`, the k largest tempered
  log-probabilities and the tail mass of each counted token, which the criterion compares
  with the student's distribution collapsed onto the same k + 1 buckets
  (``adapters/torch/topk_losses.py``).
"""

import numpy as np

from neural_distill.errors import DataError
from neural_distill.teacher_cache.token_store import TokenStore


class TokenOutputs:
    """Cached teacher outputs of a batch's counted tokens, one row per counted token in
    row-major order of the batch's valid-token mask (what the criterion reads instead of a
    ``[batch, positions, vocab]`` tensor; the step hands them on as they are)."""

    __slots__ = ()


class TokenRows(TokenOutputs):
    """Dense records: the teacher's logits ``rows`` (float32 ``[n, vocab]``) at the counted
    tokens, as the teacher gave them (``none``) or rounded (``float16``)."""

    __slots__ = ("rows",)

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)


class TokenTargets(TokenOutputs):
    """Top-k records: ``indices`` int64 ``[n, k]``, ``log_probs`` float32 ``[n, k]`` and
    ``log_tail`` float32 ``[n]`` (a proper distribution over k + 1 buckets at
    ``temperature``), for a vocabulary of ``vocab_size``."""

    __slots__ = ("indices", "log_probs", "log_tail", "vocab_size", "temperature")

    def __init__(self, indices, log_probs, log_tail, vocab_size, temperature):
        self.indices = indices
        self.log_probs = log_probs
        self.log_tail = log_tail
        self.vocab_size = vocab_size
        self.temperature = temperature

    def __len__(self):
        return len(self.indices)


class TokenRecords:
    """Per-token records of one cache: encodes the counted rows of teacher outputs, stores them
    by sample (``TokenStore``) and rebuilds what the criterion reads.

    ``codec_for_vocab(vocab)`` builds the codec once the first output shows the vocabulary.
    """

    def __init__(self, codec_for_vocab, max_bytes=float("inf"), spill_dir=None):
        self.codec_for_vocab = codec_for_vocab
        self.max_bytes = max_bytes
        self.spill_dir = spill_dir
        self.codec = None
        self.vocab = None
        self.store = None

    @property
    def per_token_codec(self):
        return getattr(self.codec, "per_token", False)

    @property
    def bytes_per_token(self):
        """Bytes one counted token takes in the store (a top-k record's header included)."""
        return None if self.store is None else self.store.row_bytes

    def ensure_codec(self, vocab):
        """The codec for a teacher vocabulary of ``vocab`` entries (built at the first)."""
        if self.codec is None:
            self.vocab = int(vocab)
            self.codec = self.codec_for_vocab(self.vocab)
        elif vocab != self.vocab:
            raise DataError(f"teacher_cache: the teacher's vocabulary changed from {self.vocab} "
                            f"to {vocab} entries between batches")
        return self.codec

    def encode(self, logits, valid):
        """The records of ``logits`` ``[batch, positions, vocab]`` at ``valid``'s positions."""
        self.ensure_codec(logits.shape[-1])
        return self.codec.encode(logits[valid])

    def store_records(self, keys, counts, records):
        """False once the store is full."""
        if self.store is None:
            self.store = TokenStore(records.shape[1:], records.dtype, self.max_bytes,
                                    self.spill_dir)
        return self.store.add(keys, counts, records)

    def served(self, records):
        """What the criterion reads for a batch's stored records (a :class:`TokenOutputs`)."""
        if self.per_token_codec:
            indices, log_probs, log_tail = self.codec.decode(records)
            return TokenTargets(indices, log_probs, log_tail, self.vocab,
                                self.codec.temperature)
        return TokenRows(self.codec.decode(records))


def counted_records(adapter, records, logits, valid):
    """The records (``records``: a :class:`TokenRecords`) of a teacher output tensor's
    counted rows (``valid``), picked on the tensor's device and, for top-k records, reduced
    there to their top k (``adapter.top_k_log_probs``): a ``[batch, positions, vocab]``
    output never crosses to the host whole."""
    rows = adapter.counted_rows(logits, valid)
    codec = records.ensure_codec(int(logits.shape[-1]))
    if records.per_token_codec:
        return codec.encode_selected(*adapter.top_k_log_probs(rows, codec.k, codec.temperature))
    return codec.encode(adapter.to_numpy(rows))
