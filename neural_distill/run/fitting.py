"""``Distillation.fit()``: the checks before a run, then a user's ``train_func`` or the built-in
loop, and what a failed run leaves behind; plus the config's dataloaders and criterion.

The run itself (start, hooks, end) is :class:`~neural_distill.run.lifecycle.RunLifecycle`'s; these
functions drive it from outside, through its public methods.
"""

import os

from neural_distill.run import checks
from neural_distill.core import rng
from neural_distill.criterion.specs import criterion_name_and_args
from neural_distill.errors import DataError, ModelError
from neural_distill.run.loop_common import epoch_range
from neural_distill.teacher_cache.options import TeacherCacheOptions, teacher_runs
from neural_distill.teacher_cache.shards import read_index


def fit(run):
    """``train_func(student)`` (which calls the hooks) or the built-in loop, for the
    ``RunLifecycle`` ``run``; returns ``distiller.best_model``."""
    d = run.distiller
    if d.adapter is None:
        raise ModelError("fit: no student model. Set distiller.student_model first.")
    if d.criterion is None:
        d.criterion = build_criterion(d)
    if teacher_missing(d):
        folder = cache_options(d).offline_folder
        if folder is not None:
            read_index(folder)  # says why the configured offline cache cannot stand in
        raise ModelError("fit: no teacher model. Set distiller.teacher_model first (or use "
                         "SelfKnowledgeDistillationLoss, which needs none).")
    # Before the config's dataset and collate factories (built below) draw anything.
    rng.seed_run(d.conf.tuning, d.adapter)
    run.ended = False
    try:
        if d.train_func is not None:
            _fit_train_func(run)
        else:
            _fit_builtin(run)
    except BaseException as exc:
        # A failed or interrupted run must not leave the teacher in eval mode or hooks
        # on the models, and keeps the best student it had (a diverged run too).
        started, first_batch = run.started, run.first_step
        run.abort()
        if first_batch is not None and isinstance(exc, (TypeError, ValueError, RuntimeError)):
            # The first step was the first-batch pass (no dry run before it): explained alike.
            checks.explain_first_batch_error(d.adapter, d.student_model, d.teachers,
                                             first_batch, exc)
        if started and run.state.best_weights is not None:
            try:
                run.save_best()
            except Exception:  # noqa: BLE001 - the original error matters more
                d.logger.warning("could not save the best student after the failure")
        checks.raise_clear_error(exc, d.adapter, d.student_model, d.teachers,
                                 run.student_classes)
        raise
    return d.best_model


def _fit_train_func(run):
    d = run.distiller
    if d.eval_dataloader is None:
        d.eval_dataloader = config_dataloader(d, "evaluation.accuracy")
    d.train_func(d.student_model)
    if run.ended and not run.started:
        return  # train_func finished the run itself (it called on_train_end)
    run.start()  # train_func may have called no hook at all
    d.on_train_end()


def _fit_builtin(run):
    d = run.distiller
    if d.train_dataloader is None:
        d.train_dataloader = config_dataloader(d, "distillation.train")
    if d.train_dataloader is None:
        raise DataError(
            f"fit: no training data. Set distiller.train_dataloader, or name a dataset "
            f"under distillation.train.dataloader.dataset in {d.conf_source}, or set "
            f"distiller.train_func to use your own loop.")
    if d.eval_dataloader is None:
        d.eval_dataloader = config_dataloader(d, "evaluation.accuracy")
    checks.check_train_dataloader(d.train_dataloader, epoch_range(d.conf.distillation.train))
    run.builtin = True
    try:
        d.adapter.run_builtin_loop(d)
    finally:
        run.builtin = False


def cache_options(distiller):
    """The run's ``distillation.train.teacher_cache``, paths read from the config's folder."""
    return TeacherCacheOptions.from_section(distiller.conf.distillation.train.teacher_cache,
                                            config_dir(distiller))


def teacher_missing(distiller):
    """Whether the criterion needs teacher outputs that nothing will give: no teacher model
    and no written offline teacher cache (a user's loop may still pass ``teacher_output``)."""
    return not distiller.teachers and teacher_runs(distiller.criterion, cache_options(distiller))


def config_dataloader(distiller, section, adapter=None):
    """The dataloader a config section (``distillation.train``...) describes, or None; built by
    ``adapter`` (default: the student's)."""
    node = distiller.conf
    for key in section.split("."):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    loader_config = node.get("dataloader") if isinstance(node, dict) else None
    if not loader_config or "dataset" not in loader_config:
        return None
    return (adapter or distiller.adapter).build_dataloader(
        loader_config, f"{distiller.conf_source}: {section}.dataloader",
        seed=distiller.conf.tuning.random_seed, base_dir=config_dir(distiller))


def build_criterion(distiller):
    """The criterion the configuration describes, for the student's framework."""
    name, args = criterion_name_and_args(distiller.conf.distillation.train.criterion)
    return distiller.adapter.build_criterion(name, args)


def config_dir(distiller):
    """The folder relative paths of the config are read from (the cwd for a dict config)."""
    source = distiller.conf_source
    return os.getcwd() if source.startswith("<") else os.path.dirname(os.path.abspath(source))
