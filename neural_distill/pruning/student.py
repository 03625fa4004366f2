"""``model.student: {prune_from_teacher: {keep, calibration_batches, layers}}``: the student is
the teacher cut to ``keep`` of its widths (``prune_width``), calibrated on the first
``calibration_batches`` batches of the training data (docs/pruning.md)."""

import itertools

from neural_distill.errors import ConfigError


def prune_spec(spec):
    """The ``prune_from_teacher`` settings of a ``model.student`` entry, or None."""
    if isinstance(spec, dict) and "prune_from_teacher" in spec:
        settings = dict(spec["prune_from_teacher"] or {})
        settings.setdefault("calibration_batches", 8)
        settings.setdefault("layers", None)
        return settings
    return None


def student_from_teacher(settings, teacher, calibration_data, where, shapes_only=False):
    """The pruned copy of ``teacher`` (which is not modified). ``shapes_only``: units chosen
    by weight norm, for a student whose weights are loaded from a checkpoint next."""
    from neural_distill.pruning import prune_width

    if teacher is None:
        raise ConfigError(f"{where}: prune_from_teacher needs model.teacher: the student is "
                          f"cut from it")
    if shapes_only:
        return prune_width(teacher, settings["keep"], None, settings["layers"])
    if calibration_data is None:
        raise ConfigError(f"{where}: prune_from_teacher measures activations on the training "
                          f"data: name a dataset under distillation.train.dataloader")
    batches = list(itertools.islice(iter(calibration_data), settings["calibration_batches"]))
    return prune_width(teacher, settings["keep"], batches, settings["layers"])
