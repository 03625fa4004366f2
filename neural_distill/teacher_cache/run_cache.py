"""The cache of one run: built from ``distillation.train.teacher_cache`` for its criterion and
teachers, and the conversions between the backend's tensors and the cache's NumPy arrays."""

import numpy as np

from neural_distill.criterion.catalog import CATALOG
from neural_distill.errors import ConfigError
from neural_distill.core.logging_utils import get_logger
from neural_distill.teacher_cache.cache import TeacherCache
from neural_distill.teacher_cache.codecs import DenseCodec, build_codec
from neural_distill.teacher_cache.keys import fingerprint


def numpy_inputs(adapter, inputs):
    """The batch's inputs as NumPy arrays, nested the same way (tuples, lists, dicts)."""
    if isinstance(inputs, dict):
        return {key: numpy_inputs(adapter, value) for key, value in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return [numpy_inputs(adapter, value) for value in inputs]
    if isinstance(inputs, np.ndarray):
        return inputs
    return adapter.to_numpy(inputs)


def teacher_fingerprint(adapter, teachers, teacher_weights, codec, features=""):
    """What the cached outputs depend on: every teacher's weights, their weighting, the codec,
    and for a features cache the captured layers and their output processes."""
    arrays = [(f"{index}.{name}", array) for index, teacher in enumerate(teachers)
              for name, array in adapter.named_arrays(teacher)]
    extra = f"{teacher_weights!r};{sorted(codec.describe().items())}"
    return fingerprint(arrays, extra=extra + (f";features {features}" if features else ""))


def codec_for(options, criterion):
    if options.compression == "topk" and getattr(criterion, "logit_standardization", False):
        raise ConfigError("distillation.train.teacher_cache.compression: topk keeps the "
                          "teacher's tempered probabilities, but logit_standardization: true "
                          "standardizes its raw logits; use compression: none or float16.")
    return build_codec(options, criterion.temperature,
                       (criterion.loss_types or [None, None])[1],
                       criterion.from_logits is not False)


def token_codec_for(adapter, criterion, codec):
    """``vocab -> codec`` of per-token records for a per-token criterion, else None."""
    if not (criterion.per_token and adapter.reads_token_records):
        return None
    if codec.name == "topk":
        from neural_distill.teacher_cache.token_codec import TokenTopKCodec

        return lambda vocab: TokenTopKCodec(codec.k, codec.temperature, vocab)
    return lambda vocab: codec


def build_run_cache(options, adapter, criterion, teachers, teacher_weights, spill_dir):
    """The run's TeacherCache (``options``: a TeacherCacheOptions), or None when the options
    or the criterion rule it out."""
    folder = options.offline_folder
    if not options.in_use:
        return None
    spec = CATALOG.get(criterion.yaml_name)
    served = spec.teacher_cache if spec is not None else None
    if served is None:
        get_logger().warning(
            "distillation.train.teacher_cache: %s is not served by the cache (only %s are; "
            "this one uses no teacher, or outputs the cache does not know): the cache is off "
            "for this run.", type(criterion).__name__,
            " and ".join(name for name, other in CATALOG.items() if other.teacher_cache))
        return None
    if served == "features":
        return _features_cache(options, adapter, criterion, teachers, teacher_weights,
                               spill_dir, folder)
    codec = codec_for(options, criterion)
    # Without teachers (an offline cache serving a run that has none) the cache's own
    # fingerprint is taken on trust; with them, it must match.
    mark = teacher_fingerprint(adapter, teachers, teacher_weights, codec) if teachers else None
    return TeacherCache(codec, mark, max_bytes=options.max_bytes,
                        spill_dir=spill_dir if options.spill else None,
                        min_hit_rate=options.min_hit_rate, offline_folder=folder,
                        token_codec=token_codec_for(adapter, criterion, codec))


def _features_cache(options, adapter, criterion, teachers, teacher_weights, spill_dir, folder):
    """A cache of the teachers' logits and captured features (online, dense)."""
    name = criterion.yaml_name
    if folder is not None:
        raise ConfigError(f"distillation.train.teacher_cache.path: offline caches hold the "
                          f"teachers' logits only, and {name} needs their "
                          f"intermediate features. Set path to null (and enabled: true) to "
                          f"cache them during the run.")
    if options.compression != "none":
        raise ConfigError(f"distillation.train.teacher_cache.compression: the teachers' "
                          f"features of {name} are cached as they are; use "
                          f"compression: none (got {options.compression!r}).")
    codec = DenseCodec("float32")
    mark = teacher_fingerprint(adapter, teachers, teacher_weights, codec,
                               features=criterion.teacher_features_key())
    return TeacherCache(codec, mark, max_bytes=options.max_bytes,
                        spill_dir=spill_dir if options.spill else None,
                        min_hit_rate=options.min_hit_rate, features=True)
