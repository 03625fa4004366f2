"""Teacher-output cache: pay for the teacher once, not every epoch (docs/teacher_cache.md).

Framework-neutral (NumPy only); the distillation step asks it before running the teacher.
``neural_distill.commands.cache_teacher.write_offline_cache`` writes an offline cache.
"""

from neural_distill.teacher_cache.cache import TeacherCache
from neural_distill.teacher_cache.codecs import COMPRESSIONS, DenseCodec, TopKCodec, build_codec
from neural_distill.teacher_cache.keys import fingerprint, sample_keys

__all__ = ["TeacherCache", "COMPRESSIONS", "DenseCodec", "TopKCodec", "build_codec",
           "fingerprint", "sample_keys"]
