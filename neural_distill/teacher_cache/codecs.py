"""How teacher logits are stored: dense float32, float16, or top-k.

Top-k keeps, per sample (per position for sequence outputs), the ``k`` largest entries of the
teacher's *tempered* distribution ``p = softmax(z / T)`` and the mass of the rest:

    stored:  i_1..i_k,  log p_{i_1}..log p_{i_k},  log r   with  r = 1 - sum_j p_{i_j}

and decodes to the distribution ``p~`` that equals ``p`` on the kept classes and spreads ``r``
evenly over the other ``C - k`` classes. It hands the criterion logits ``z~ = T * log p~``, so
``softmax(z~ / T) == p~`` exactly and KL/CE over all ``C`` classes stay well defined (no class
gets probability 0). The codec is therefore tied to the temperature it was written with, and it
cannot serve ``MSE`` (raw logit matching) or ``from_logits: false``.
"""

import numpy as np

from neural_distill.errors import ConfigError
from neural_distill.teacher_cache.options import TeacherCacheOptions

COMPRESSIONS = ("none", "float16", "topk")
# Residual mass below this is treated as this: keeps log r finite when the top k hold it all.
_MIN_MASS = 1e-12


class DenseCodec:
    """Logits as they are (float32) or halved (float16)."""

    def __init__(self, dtype="float32"):
        self.dtype = np.dtype(dtype)
        self.name = "none" if self.dtype == np.float32 else "float16"
        self.lossless = self.dtype == np.float32

    def encode(self, logits):
        return np.asarray(logits, dtype=self.dtype)

    def decode(self, records, classes=None):
        return np.asarray(records, dtype=np.float32)

    def bytes_per_sample(self, sample_shape):
        return int(np.prod(sample_shape)) * self.dtype.itemsize

    def describe(self):
        return {"compression": self.name}


class TopKCodec:
    """The k largest tempered probabilities and the log-mass of the rest (module docstring)."""

    lossless = False
    name = "topk"

    def __init__(self, k, temperature):
        if int(k) < 1:
            raise ConfigError(f"teacher_cache.top_k: expected an integer >= 1, got {k!r}")
        self.k = int(k)
        self.temperature = float(temperature)

    def encode(self, logits):
        logits = np.asarray(logits, dtype=np.float64)
        classes = logits.shape[-1]
        if self.k >= classes:
            raise ConfigError(f"teacher_cache.top_k: {self.k} keeps every one of the teacher's "
                              f"{classes} classes; use compression: none (or float16), or a "
                              f"top_k below {classes}")
        scaled = logits / self.temperature
        scaled = scaled - scaled.max(axis=-1, keepdims=True)
        log_p = scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))
        index = np.argpartition(-log_p, self.k - 1, axis=-1)[..., :self.k]
        kept = np.take_along_axis(log_p, index, axis=-1)
        rest = np.maximum(1.0 - np.exp(kept).sum(axis=-1, keepdims=True), _MIN_MASS)
        # One float32 record per sample: indices (exact in float32 up to 2**24 classes),
        # kept log-probabilities, log residual mass; the class count rides in the header.
        return np.concatenate([index.astype(np.float32), kept.astype(np.float32),
                               np.log(rest).astype(np.float32)], axis=-1)

    def decode(self, records, classes):
        records = np.asarray(records, dtype=np.float32)
        index = records[..., :self.k].astype(np.int64)
        kept = records[..., self.k:2 * self.k].astype(np.float64)
        log_rest = records[..., 2 * self.k:].astype(np.float64)
        log_p = np.broadcast_to(log_rest - np.log(classes - self.k),
                                records.shape[:-1] + (classes,)).copy()
        np.put_along_axis(log_p, index, kept, axis=-1)
        return (self.temperature * log_p).astype(np.float32)

    def bytes_per_sample(self, sample_shape):
        positions = int(np.prod(sample_shape[:-1])) if len(sample_shape) > 1 else 1
        return positions * (2 * self.k + 1) * 4

    def describe(self):
        return {"compression": "topk", "top_k": self.k, "temperature": self.temperature}


def build_codec(options, temperature=None, kd_type=None, from_logits=True):
    """The codec ``options`` ask for (a TeacherCacheOptions, or a ``teacher_cache`` section as a
    dict), checked against the criterion."""
    if isinstance(options, dict):
        options = TeacherCacheOptions.from_section(options, ".")
    compression = options.compression
    if compression == "none":
        return DenseCodec("float32")
    if compression == "float16":
        return DenseCodec("float16")
    if compression == "topk":
        if kd_type == "MSE" or not from_logits:
            raise ConfigError(
                "distillation.train.teacher_cache.compression: topk rebuilds the teacher's "
                "tempered distribution, so it serves KL and CE on logits only; this criterion "
                f"uses kd_type {kd_type} with from_logits {from_logits}. Use compression: none "
                "or float16.")
        if temperature is None:
            raise ConfigError("distillation.train.teacher_cache.compression: topk needs the "
                              "criterion's temperature")
        return TopKCodec(options.top_k, temperature)
    raise ConfigError(f"distillation.train.teacher_cache.compression: expected one of "
                      f"{list(COMPRESSIONS)}, got {compression!r}")
