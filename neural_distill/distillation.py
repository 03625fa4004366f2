"""The ``Distillation`` experiment: configuration, models, hooks and ``fit()``.

This module is framework-neutral. Everything that needs torch or tensorflow goes through the
adapter chosen when the student is assigned (``neural_distill.adapters``).
"""

import math
import os
import random
import time

import numpy as np

from . import checks
from .adapters import adapter_for_model, detect_framework, framework_of_config_name
from .config.loader import load_config, validate
from .config.nodes import OneOf, Section
from .config.schema import METRICS
from .criterion.specs import criterion_name_and_args
from .errors import ConfigError, DataError, ModelError
from .loop_common import epoch_range
from .logging_utils import get_logger
from .metrics import Metric, build_metric
from .workspace import Workspace


class Distillation:
    """A knowledge-distillation experiment.

    Args:
        conf: a YAML path, a dict, a ``DistillationConf`` or None (all defaults).

    Assign ``student_model`` and ``teacher_model``, then either call :meth:`fit` (built-in
    loop, or your ``train_func(model)`` calling the hooks) or call the hooks from your own loop.
    """

    def __init__(self, conf=None):
        self.conf, self.conf_source = load_config(conf)
        self._student = None
        self._teacher = None
        self._teachers, self._teacher_keys = [], []
        self.teacher_weights = self.conf.distillation.train.get("teacher_weights")
        self._adapter = None
        self.criterion = None
        self.optimizer = None
        self.train_func = None
        self.eval_func = None
        self.train_dataloader = None
        self.eval_dataloader = None
        self.metric = None
        self.higher_is_better = self.conf.evaluation.get("accuracy", {}).get("higher_is_better")
        self.best_score = None
        self.best_model = None
        self.history = []
        self.workspace = None
        self._started = False
        self._teacher_states = []
        self._epoch = 0
        self._epochs_done = 0
        self._step = 0
        self._global_step = 0
        self._best_state = None
        self._last_eval_epoch = None
        self._running = None
        self.logger = get_logger()

    # ------------------------------------------------------------------ models
    @property
    def student_model(self):
        return self._student

    @student_model.setter
    def student_model(self, model):
        self._student = self._checked_model(model, "student_model")
        self._adapter = None if model is None else adapter_for_model(model, "student_model")
        checks.check_models(self)

    @property
    def teacher_model(self):
        return self._teacher

    @teacher_model.setter
    def teacher_model(self, model):
        """One model, a list of models, or a dict {checkpoint path: model}.

        With a dict, each checkpoint's weights are loaded into its model now (safely: tensors
        only), so a wrong path or a mismatching checkpoint is reported at assignment.
        """
        if isinstance(model, dict):
            if model and all(detect_framework(m) is None for m in model.values()):
                # Not {path: model}: most likely a state_dict; say how to use it.
                adapter_for_model(model, "teacher_model")
            teachers, keys = [], []
            for index, (path, teacher) in enumerate(model.items()):
                if not isinstance(path, (str, os.PathLike)):
                    raise ModelError(
                        f"teacher_model: a dict must map checkpoint paths to models, got a key "
                        f"of type {type(path).__name__}")
                self._checked_model(teacher, f"teacher_model[{path!r}]")
                adapter_for_model(teacher, "teacher_model").load_weights(
                    teacher, str(path), f"teacher_model[{path!r}]")
                teachers.append(teacher)
                keys.append(path)
        elif isinstance(model, (list, tuple)):
            if not model:
                raise ModelError("teacher_model: got an empty list; give at least one model")
            teachers = [self._checked_model(t, f"teacher_model[{i}]") for i, t in enumerate(model)]
            keys = list(range(len(teachers)))
        elif model is None:
            teachers, keys = [], []
        else:
            teachers, keys = [self._checked_model(model, "teacher_model")], [0]
        self._teacher = model
        self._teachers, self._teacher_keys = teachers, keys
        checks.check_models(self)

    def _checked_model(self, model, role):
        if model is None:
            return None
        framework = detect_framework(model)
        if framework is None:
            # Raises a ModelError naming what was received.
            adapter_for_model(model, role)
        wanted = self.conf.model.get("framework")
        if wanted and framework_of_config_name(wanted) != framework:
            raise ModelError(
                f"{self.conf_source}: model.framework says '{wanted}' but the {role} model is a "
                f"{framework} model ({type(model).__qualname__}). Fix model.framework or assign "
                f"a {wanted} model.")
        others = self._teachers if role == "student" else [self._student]
        other = next((m for m in others if m is not None), None)
        if other is not None and detect_framework(other) != framework:
            raise ModelError(
                f"{role} model is a {framework} model but the "
                f"{'teacher' if role == 'student' else 'student'} is a "
                f"{detect_framework(other)} model. Student and teacher must use the same "
                f"framework; to use a teacher of another framework, cache its outputs and pass "
                f"them as teacher_output to on_after_compute_loss.")
        return model

    @property
    def framework(self):
        return None if self._adapter is None else self._adapter.name

    # ------------------------------------------------------------------ set-up
    def _needs_teacher(self):
        return getattr(self.criterion, "needs_teacher", True)

    def _require_student(self, what):
        if self._student is None:
            raise ModelError(f"{what}: no student model. Set distiller.student_model first.")

    def _build_criterion(self):
        name, args = criterion_name_and_args(self.conf.distillation.train.criterion)
        return self._adapter.build_criterion(name, args)

    def _resolve_metric(self):
        metric = self.metric
        if metric is None:
            config = self.conf.evaluation.get("accuracy", {}).get("metric")
            if config is None:
                return None
            metric = config
        if isinstance(metric, Metric):
            return metric
        if isinstance(metric, str):
            metric = {metric: None} if metric != "topk" else {"topk": 1}
        if isinstance(metric, dict):
            checked = validate({"metric": metric}, "distiller.metric", node=_METRIC_SECTION)
            return build_metric(checked["metric"])
        raise ConfigError(f"distiller.metric: expected a neural_distill.metrics.Metric, a metric "
                          f"name or a {{name: params}} dict, got {type(metric).__name__}")

    def _start(self, dataloader=None):
        """Everything on_train_begin does; safe to reach lazily from any hook."""
        if self._started:
            return
        self._require_student("on_train_begin")
        if self.criterion is None:
            self.criterion = self._build_criterion()
        self._adapter.check_criterion(self.criterion)
        checks.check_models(self)
        if not self._teachers and self._needs_teacher():
            self.logger.warning("no teacher_model set: on_after_compute_loss will need the "
                                "teacher_output argument")
        self._metric_obj = self._resolve_metric()
        if self.higher_is_better is None:
            self.higher_is_better = (self._metric_obj.higher_is_better
                                     if self._metric_obj is not None else True)
        device = self._adapter.model_device(self._student)
        self._adapter.move_to_device(self.criterion, device)
        self._teacher_states = [self._adapter.enter_teacher_mode(t, device)
                                for t in self._teachers]
        try:
            checks.preflight(self, dataloader)
            if hasattr(self.criterion, "attach"):
                self.criterion.attach(self._student, self._teachers, self._teacher_keys)
            if dataloader is not None and getattr(self.criterion, "needs_preparation", False):
                # A dry run on one batch creates the feature matchers before any optimizer
                # step, so the built-in loop (or a user reading criterion.parameters()) can
                # train them.
                self._adapter.dry_run(self._student, self._teachers, dataloader, self.criterion)
        except Exception:
            self._release_models()
            raise
        self.workspace = Workspace(self.conf.tuning.workspace.path)
        self.workspace.write_config(self.conf)
        self.best_score, self._best_state, self._last_eval_epoch = None, None, None
        self._epochs_done, self._global_step = 0, 0
        self.history = []
        self._running = self._fresh_running_losses()
        self._epoch_started_at = time.perf_counter()
        checks.start_run(self)
        self._started = True

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, dataloader=None):
        """Before training: builds the criterion, freezes the teacher, opens the workspace."""
        self._started = False
        self._start(dataloader)

    def on_epoch_begin(self, epoch):
        self._start()
        self._epoch = epoch
        self._epoch_started_at = time.perf_counter()

    def on_step_begin(self, batch_id):
        self._start()
        self._step = batch_id

    def on_after_compute_loss(self, input, student_output, student_loss, teacher_output=None):
        """The student's loss with the teacher's term added; one scalar tensor.

        Runs the teacher on ``input`` (eval mode, no gradient) unless ``teacher_output`` is
        given, e.g. logits cached in the dataset. ``student_loss`` may be None for unlabeled
        batches: the distillation term alone is returned.
        """
        self._start()
        adapter = self._adapter
        if teacher_output is None:
            if self._needs_teacher():
                if not self._teachers:
                    raise ModelError("on_after_compute_loss: no teacher_model is set and no "
                                     "teacher_output was given. Set distiller.teacher_model or "
                                     "pass the teacher's output.")
                teacher_output = adapter.teachers_forward(self._teachers, input,
                                                          self.teacher_weights)
        else:
            teacher_output = adapter.as_teacher_output(teacher_output, student_output)
        kd_loss = self.criterion.distillation_loss(student_output, teacher_output)
        student_loss = checks.checked_student_loss(self, student_loss)
        loss = self.criterion.combine(student_loss, kd_loss)
        checks.loss_guard(self).observe(loss)
        adapter.accumulate_losses(self._running, loss, student_loss, kd_loss)
        return loss

    def on_before_optimizer_step(self):
        self._start()

    def on_after_optimizer_step(self):
        self._start()

    def on_step_end(self):
        self._start()
        self._global_step += 1
        checks.loss_guard(self).poll()

    def on_epoch_end(self):
        """Ends an epoch: logs its losses and evaluates the student every ``frequency`` epochs."""
        self._start()
        checks.loss_guard(self).poll(wait=True)
        checks.check_epoch_had_steps(self)
        self._epochs_done += 1
        record = {"epoch": self._epochs_done, "step": self._global_step,
                  **self._adapter.read_running_losses(self._running),
                  "time_s": round(time.perf_counter() - self._epoch_started_at, 3)}
        self._running = self._fresh_running_losses()
        frequency = self.conf.distillation.train.frequency
        if self._epochs_done % frequency == 0:
            record.update(self._evaluate())
        self._record(record)

    def on_train_end(self):
        """After training: final evaluation if due, teacher restored, best student built."""
        if not self._started:
            return
        checks.loss_guard(self).poll(wait=True)
        if self._last_eval_epoch != self._epochs_done:
            final = self._evaluate()
            if final:
                self._record({"epoch": self._epochs_done, "step": self._global_step,
                              "final": True, **final})
        self._release_models()
        if self._adapter.has_parameters(self.criterion):
            # Trained matchers are part of the training state, not of the student.
            checks.save_atomically(self._adapter, self.criterion, self.workspace.file(
                "criterion" + self._adapter.checkpoint_suffix))
        checks.check_returned_weights(self)
        self.best_model = self._adapter.copy_with_state(self._student, self._best_state)
        path = self.workspace.file("best_student" + self._adapter.checkpoint_suffix)
        checks.save_atomically(self._adapter, self.best_model, path)
        self.logger.info("best student%s saved to %s", "" if self.best_score is None
                         else f" ({self._score_name()}={self.best_score:.4f})", path)
        self._started = False

    def _release_models(self):
        """Teachers back to their own mode and device; no hook of ours left on any model."""
        for teacher, state in zip(self._teachers, self._teacher_states):
            self._adapter.exit_teacher_mode(teacher, state)
        self._teacher_states = []
        if hasattr(self.criterion, "detach"):
            self.criterion.detach()

    # ------------------------------------------------------------------ evaluation
    def _score_name(self):
        if self.eval_func is not None:
            return "score"
        return self._metric_obj.name if self._metric_obj is not None else "score"

    def _evaluate(self):
        """Scores the student and keeps its weights when it is the best so far."""
        self._last_eval_epoch = self._epochs_done
        score = None
        if self.eval_func is not None:
            score = self.eval_func(self._student)
            if isinstance(score, (list, tuple)):
                score = score[0]
            try:
                score = float(score)
            except (TypeError, ValueError):
                raise DataError(f"eval_func must return a number, got {score!r}") from None
        elif self.eval_dataloader is not None:
            if self._metric_obj is None:
                self._metric_obj = build_metric({"topk": 1})
                self.logger.info("no metric configured: evaluating top-1 accuracy")
            score = self._adapter.evaluate(self._student, self.eval_dataloader, self._metric_obj)
        if score is None:
            checks.warn_metric_without_data(self)
            # Nothing to judge by: the latest student is the best one we know.
            self._best_state = self._adapter.snapshot(self._student)
            return {}
        # A NaN score (a diverged student) never becomes the best, not even the first time.
        improved = not math.isnan(score) and (
            self.best_score is None
            or (score > self.best_score if self.higher_is_better else score < self.best_score))
        if improved:
            self.best_score = score
            self._best_state = self._adapter.snapshot(self._student)
        elif self._best_state is None:
            self._best_state = self._adapter.snapshot(self._student)
        return {self._score_name(): score, "best": bool(improved)}

    def _record(self, record):
        self.history.append(record)
        self.workspace.log_metrics(record)
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in record.items())
        self.logger.info(shown)

    # ------------------------------------------------------------------ fit
    def fit(self):
        """Train the student and return the best one (a copy of the user's model class).

        With ``train_func`` set, calls ``train_func(student)`` (which calls the hooks);
        otherwise runs the built-in loop configured under ``distillation.train``.
        """
        self._require_student("fit")
        if self.criterion is None:
            self.criterion = self._build_criterion()
        if not self._teachers and self._needs_teacher():
            raise ModelError("fit: no teacher model. Set distiller.teacher_model first (or use "
                             "SelfKnowledgeDistillationLoss, which needs none).")
        self._seed(self.conf.tuning.random_seed)
        try:
            self._fit()
        except BaseException as exc:
            # A failed or interrupted run must not leave the teacher in eval mode or hooks
            # on the models.
            self._release_models()
            self._started = False
            checks.raise_clear_error(self, exc)
            raise
        return self.best_model

    def _fit(self):
        if self.train_func is not None:
            if self.eval_dataloader is None:
                self.eval_dataloader = self._config_dataloader("evaluation.accuracy", False)
            self.train_func(self._student)
            if not self._started:  # train_func never called a hook: nothing to finish
                self._start()
            self.on_train_end()
        else:
            if self.train_dataloader is None:
                self.train_dataloader = self._config_dataloader("distillation.train", True)
            if self.train_dataloader is None:
                raise DataError(
                    f"fit: no training data. Set distiller.train_dataloader, or name a dataset "
                    f"under distillation.train.dataloader.dataset in {self.conf_source}, or set "
                    f"distiller.train_func to use your own loop.")
            if self.eval_dataloader is None:
                self.eval_dataloader = self._config_dataloader("evaluation.accuracy", False)
            checks.check_train_dataloader(self, epoch_range(self.conf.distillation.train))
            self._adapter.run_builtin_loop(self)

    def __call__(self):
        return self.fit()

    def _config_dataloader(self, section, for_training):
        node = self.conf
        for key in section.split("."):
            node = node.get(key, {}) if isinstance(node, dict) else {}
        loader_config = node.get("dataloader") if isinstance(node, dict) else None
        if not loader_config or "dataset" not in loader_config:
            return None
        return self._adapter.build_dataloader(
            loader_config, f"{self.conf_source}: {section}.dataloader",
            seed=self.conf.tuning.random_seed, base_dir=self._config_dir())

    def _config_dir(self):
        if self.conf_source.startswith("<"):
            return os.getcwd()
        return os.path.dirname(os.path.abspath(self.conf_source))

    def _seed(self, seed):
        random.seed(seed)
        np.random.seed(seed % (2 ** 32))
        self._adapter.seed(seed)

    def _fresh_running_losses(self):
        # An adapter whose sums live in variables (TensorFlow) zeroes them in place: a user's
        # compiled step keeps updating the ones it captured when it was traced.
        reset = getattr(self._adapter, "reset_running_losses", None)
        if reset is not None and self._running is not None:
            return reset(self._running)
        return self._adapter.new_running_losses()

    # ------------------------------------------------------------------ progress
    def running_losses(self):
        """The mean losses of the current epoch so far, as floats (for progress bars)."""
        return self._adapter.read_running_losses(self._running) if self._running else {}


_METRIC_SECTION = Section({"metric": OneOf(METRICS, "metric")})
