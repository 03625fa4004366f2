"""Rebuilding what a run folder describes: its models (from the factories its config names,
with the best student's weights) and its evaluation data.

A run folder holds ``config.yaml`` (the validated config), the best student's weights and
``metrics.jsonl``. ``neural-distill run`` adds ``run_info.json`` (the original config file, whose
folder relative factory and data paths start from) and, when the teacher's factory names no
checkpoint, the teacher's weights, so the report scores exactly the teacher that taught.
"""

import json
import os

from neural_distill.core.backends import BACKENDS
from neural_distill.config.loader import read_yaml, validate
from neural_distill.errors import ConfigError
from neural_distill.core.factories import resolve
from neural_distill.pruning.student import prune_spec, student_from_teacher

RUN_INFO = "run_info.json"


def factory_spec(spec):
    """(name, kwargs, checkpoint) of a ``model.student`` / ``model.teacher`` entry."""
    if isinstance(spec, str):
        return spec, {}, None
    return spec["factory"], dict(spec.get("kwargs") or {}), spec.get("checkpoint")


def build_model(config, role, source, base_dir, checkpoint=None, teacher=None,
                calibration=None):
    """Call the factory named under ``model.<role>`` and load a checkpoint into it.

    ``checkpoint`` (a path) replaces the one the config names; relative config paths start
    at ``base_dir`` (the config file's folder).
    """
    spec = config.model.get(role)
    where = f"{source}: model.{role}"
    if role == "student" and prune_spec(spec) is not None:
        return _pruned_student(config, source, base_dir, checkpoint, teacher, calibration)
    if spec is None:
        raise ConfigError(f"{where}: missing. `neural-distill run` and `neural-distill report` "
                          f"build the {role} from a 'module:attribute' factory named here")
    name, kwargs, configured = factory_spec(spec)
    model = resolve(name, f"{where}.factory", base_dir)(**kwargs)
    path = checkpoint or configured
    if path:
        from neural_distill.adapters import adapter_for_model

        if not os.path.isabs(path) and base_dir is not None:
            path = os.path.join(base_dir, path)
        adapter_for_model(model, f"model.{role}").load_weights(model, path, f"{where}.checkpoint")
    return model


def _pruned_student(config, source, base_dir, checkpoint, teacher, calibration):
    """The student cut from the teacher. With a checkpoint (a report of a finished run) its
    shapes come from ``keep`` alone and its weights from the file: no data is needed."""
    from neural_distill.adapters import adapter_for_model

    settings = prune_spec(config.model.student)
    where = f"{source}: model.student.prune_from_teacher"
    if teacher is None and config.model.get("teacher") is not None:
        teacher = build_model(config, "teacher", source, base_dir)
    if not checkpoint:
        return student_from_teacher(settings, teacher, calibration, where)
    student = student_from_teacher(settings, teacher, None, where, shapes_only=True)
    adapter_for_model(student, "model.student").load_weights(student, checkpoint, where)
    return student


def write_run_info(run_dir, config_path):
    """The config file's path added to ``run_info.json`` (the run wrote its seed there when it
    started)."""
    path = os.path.join(run_dir, RUN_INFO)
    info = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    info["config"] = os.path.abspath(config_path)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(info, handle)


def read_records(run_dir):
    """The records of ``metrics.jsonl`` (one per epoch, plus a final evaluation)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def framework_of_run(run_dir):
    for backend in BACKENDS.values():
        if os.path.isfile(os.path.join(run_dir, "best_student" + backend.weights_suffix)):
            return backend.name
    raise ConfigError(f"{run_dir}: no best_student.pt or best_student.weights.h5. Expected a "
                      f"run folder whose training finished (nd_workspace/run-...)")


class LoadedRun:
    """A run folder's config, models, evaluation data and framework adapter."""

    def __init__(self, run_dir, config_path=None):
        self.run_dir = os.path.abspath(run_dir)
        config_file = os.path.join(self.run_dir, "config.yaml")
        if not os.path.isdir(self.run_dir) or not os.path.isfile(config_file):
            raise ConfigError(f"{run_dir}: not a run folder (no config.yaml in it). Expected "
                              f"the folder a run printed, e.g. nd_workspace/run-20260101-...")
        self.config = validate(read_yaml(config_file), config_file)
        self.source = config_file
        original = config_path or self._recorded_config()
        self.base_dir = os.path.dirname(os.path.abspath(original)) if original else self.run_dir
        self.framework = framework_of_run(self.run_dir)
        from neural_distill.adapters import adapter_for_framework

        self.adapter = adapter_for_framework(self.framework)
        suffix = BACKENDS[self.framework].weights_suffix
        self.student = build_model(self.config, "student", self.source, self.base_dir,
                                   os.path.join(self.run_dir, "best_student" + suffix))
        teacher_file = os.path.join(self.run_dir, "teacher" + suffix)
        self.teacher = build_model(self.config, "teacher", self.source, self.base_dir,
                                   teacher_file if os.path.isfile(teacher_file) else None)
        self.eval_dataloader = self._eval_dataloader()

    def _recorded_config(self):
        path = os.path.join(self.run_dir, RUN_INFO)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get("config")

    def _eval_dataloader(self):
        loader = self.config.evaluation.get("accuracy", {}).get("dataloader")
        where = f"{self.source}: evaluation.accuracy.dataloader"
        if not loader or "dataset" not in loader:
            raise ConfigError(f"{where}.dataset: missing; the report evaluates teacher and "
                              f"student on the evaluation data named here")
        return self.adapter.build_dataloader(loader, where, seed=self.config.tuning.random_seed,
                                             base_dir=self.base_dir)
