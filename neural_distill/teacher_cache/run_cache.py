"""The cache of one run: built from ``distillation.train.teacher_cache`` for its criterion and
teachers, and the conversions between the backend's tensors and the cache's NumPy arrays."""

import os

import numpy as np

from ..logging_utils import get_logger
from .cache import TeacherCache
from .codecs import build_codec
from .keys import fingerprint


def numpy_inputs(adapter, inputs):
    """The batch's inputs as NumPy arrays, nested the same way (tuples, lists, dicts)."""
    if isinstance(inputs, dict):
        return {key: numpy_inputs(adapter, value) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return [numpy_inputs(adapter, value) for value in inputs]
    if isinstance(inputs, np.ndarray):
        return inputs
    return adapter.to_numpy(inputs)


def teacher_fingerprint(adapter, teachers, teacher_weights, codec):
    """What the cached outputs depend on: every teacher's weights, their weighting, the codec."""
    arrays = [(f"{index}.{name}", array) for index, teacher in enumerate(teachers)
              for name, array in adapter.named_arrays(teacher)]
    return fingerprint(arrays, extra=f"{teacher_weights!r};{sorted(codec.describe().items())}")


def offline_folder(settings, base_dir):
    path = settings.get("path")
    if path is None:
        return None
    return path if os.path.isabs(path) else os.path.join(base_dir, path)


def codec_for(settings, criterion):
    return build_codec(settings, getattr(criterion, "temperature", None),
                       (getattr(criterion, "loss_types", None) or [None, None])[1],
                       getattr(criterion, "from_logits", True))


def build_run_cache(settings, adapter, criterion, teachers, teacher_weights, spill_dir,
                    base_dir):
    """The run's TeacherCache, or None when the settings or the criterion rule it out."""
    folder = offline_folder(settings, base_dir)
    if not settings.get("enabled") and folder is None:
        return None
    if getattr(criterion, "yaml_name", None) != "KnowledgeDistillationLoss":
        get_logger().warning(
            "distillation.train.teacher_cache: only the teacher's logits are cached, and %s "
            "uses the teacher's intermediate features (or no teacher): the cache is off for "
            "this run.", type(criterion).__name__)
        return None
    codec = codec_for(settings, criterion)
    # Without teachers (an offline cache serving a run that has none) the cache's own
    # fingerprint is taken on trust; with them, it must match.
    mark = teacher_fingerprint(adapter, teachers, teacher_weights, codec) if teachers else None
    return TeacherCache(codec, mark, max_bytes=settings["max_bytes"],
                        spill_dir=spill_dir if settings.get("spill") else None,
                        min_hit_rate=settings["min_hit_rate"], offline_folder=folder)
