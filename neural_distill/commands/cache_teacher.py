"""Writing an offline teacher cache (``neural_distill.teacher_cache``): the teachers run once
over the training data.

::

    neural-distill cache-teacher distill.yaml     # or, in Python:
    write_offline_cache(distiller, folder)

Later runs name the folder under ``distillation.train.teacher_cache.path`` and never build the
teacher (docs/teacher_cache.md).
"""

from tqdm.auto import tqdm

from neural_distill.adapters import adapter_for_model
from neural_distill.criterion.specs import criterion_name_and_args
from neural_distill.errors import ConfigError, DataError, ModelError
from neural_distill.teacher_cache.cache import TeacherCache
from neural_distill.run.fitting import cache_options
from neural_distill.teacher_cache.run_cache import (
    codec_for, numpy_inputs, teacher_fingerprint)


def write_offline_cache(distiller, folder=None, dataloader=None, progress_bar=True):
    """Run ``distiller``'s teachers over its training data and write the cache to ``folder``.

    ``folder`` defaults to ``distillation.train.teacher_cache.path``; ``dataloader`` to
    ``distiller.train_dataloader`` or the one the config describes. Returns the written index.
    """
    teachers = distiller.teachers
    if not teachers:
        raise ModelError("write_offline_cache: no teacher model. Set distiller.teacher_model "
                         "(or model.teacher in the config) to the teacher whose outputs to "
                         "cache.")
    options = cache_options(distiller)
    folder = folder or options.offline_folder
    if folder is None:
        raise ConfigError(f"{distiller.conf_source}: distillation.train.teacher_cache.path: "
                          f"where should the cache be written? Set it to a folder (or pass "
                          f"folder=...).")
    adapter = adapter_for_model(teachers[0], "teacher_model")
    loader = dataloader if dataloader is not None else (
        distiller.train_dataloader
        or distiller.run.config_dataloader("distillation.train", adapter))
    if loader is None:
        raise DataError("write_offline_cache: no training data. Set "
                        "distiller.train_dataloader or name a dataset under "
                        "distillation.train.dataloader.dataset.")
    criterion = distiller.criterion or adapter.build_criterion(
        *criterion_name_and_args(distiller.conf.distillation.train.criterion))
    codec = codec_for(options, criterion)
    cache = TeacherCache(codec, teacher_fingerprint(adapter, teachers,
                                                    distiller.teacher_weights, codec),
                         max_bytes=float("inf"))
    device = adapter.model_device(teachers[0])
    states = [adapter.enter_teacher_mode(teacher, device) for teacher in teachers]
    try:
        for batch in tqdm(loader, desc="teacher outputs", disable=not progress_bar,
                          leave=False, dynamic_ncols=True):
            inputs, _ = adapter.split_batch(batch)
            if hasattr(adapter, "to_device"):
                inputs = adapter.to_device(inputs, device)
            if cache.lookup(numpy_inputs(adapter, inputs)) is None:
                output = adapter.teachers_forward(teachers, inputs, distiller.teacher_weights)
                cache.add(adapter.to_numpy(adapter.logits_of(output, "teacher output")))
    finally:
        for teacher, state in zip(teachers, states):
            adapter.exit_teacher_mode(teacher, state)
    index = cache.save(folder)
    index["folder"] = folder  # for the caller; not part of the file
    return index
