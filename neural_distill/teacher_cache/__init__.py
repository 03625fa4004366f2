"""Teacher-output cache: pay for the teacher once, not every epoch (docs/teacher_cache.md).

Framework-neutral (NumPy only); the distillation step asks it before running the teacher.
``neural_distill.commands.cache_teacher.write_offline_cache`` writes an offline cache.
A language model's outputs are kept per counted token (``token_records``), dense or as
compressed top-k records (``token_codec.TokenTopKCodec``).
"""

from neural_distill.teacher_cache.cache import TeacherCache
from neural_distill.teacher_cache.codecs import COMPRESSIONS, DenseCodec, TopKCodec, build_codec
from neural_distill.teacher_cache.keys import fingerprint, sample_keys, token_keys
from neural_distill.teacher_cache.token_codec import TokenTopKCodec
from neural_distill.teacher_cache.token_records import TokenRows, TokenTargets

__all__ = ["TeacherCache", "COMPRESSIONS", "DenseCodec", "TopKCodec", "build_codec",
           "fingerprint", "sample_keys", "token_keys", "TokenTopKCodec", "TokenRows",
           "TokenTargets"]
