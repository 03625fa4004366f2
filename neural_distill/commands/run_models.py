"""The models of a ``neural-distill run``, built from the config's factories: seeded first, a
student cut from the teacher when the config asks for it, no teacher when a written offline
teacher cache stands in for it."""

import os

from neural_distill.core import rng
from neural_distill.errors import ConfigError
from neural_distill.pruning.student import prune_spec
from neural_distill.report.runs import build_model, factory_spec


def build_run_models(distiller, config, config_path):
    """Set ``distiller.student_model`` (and ``teacher_model``) from the validated ``config``
    read from ``config_path``."""
    base_dir = os.path.dirname(os.path.abspath(config_path))
    # Seeded before the factories run: the models' initial weights and anything else a
    # factory draws are part of what one seed reproduces.
    rng.seed_run(config.tuning, seeding_adapter(config))
    wants_teacher = config.model.get("teacher") is not None and not _reads_teacher_cache(
        config, base_dir)
    teacher = None
    if prune_spec(config.model.get("student")) is not None and wants_teacher:
        # The student is cut from this very teacher; otherwise the factories run in their
        # usual order (student first), so unseeded factories draw the same numbers as before.
        teacher = build_model(config, "teacher", config_path, base_dir)
    distiller.student_model = build_model(
        config, "student", config_path, base_dir, teacher=teacher,
        calibration=_calibration(distiller, config, teacher))
    if distiller.student_model is None:
        raise ConfigError(f"{config_path}: model.student: the factory "
                          f"{factory_spec(config.model.student)[0]} returned None; it must "
                          f"return the student model (a torch.nn.Module or a keras.Model)")
    if wants_teacher:
        distiller.teacher_model = teacher if teacher is not None else build_model(
            config, "teacher", config_path, base_dir)


def seeding_adapter(config):
    """The adapter whose framework the factories will use: model.framework, else the guess of
    the backend table (``core.backends.SEEDING_GUESS``); None when neither is known."""
    from neural_distill.adapters import adapter_for_framework, framework_of_config_name
    from neural_distill.core.backends import guess_installed_framework

    framework = (framework_of_config_name(config.model.get("framework"))
                 or guess_installed_framework())
    return adapter_for_framework(framework) if framework is not None else None


def _calibration(distiller, config, teacher):
    """The training data a student cut from the teacher is calibrated on (None otherwise)."""
    from neural_distill.adapters import adapter_for_model

    if prune_spec(config.model.get("student")) is None or teacher is None:
        return None
    return distiller.run.config_dataloader("distillation.train",
                                           adapter_for_model(teacher, "model.teacher"))


def _reads_teacher_cache(config, base_dir):
    """Whether a written offline teacher cache stands in for the teacher (then none is built)."""
    from neural_distill.teacher_cache.options import TeacherCacheOptions

    return TeacherCacheOptions.from_section(config.distillation.train.teacher_cache,
                                            base_dir).offline_written
