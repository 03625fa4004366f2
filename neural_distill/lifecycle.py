"""The life of one distillation run: start, the hooks' bookkeeping, the end, and ``fit()``.

:class:`RunLifecycle` is what the hooks of :class:`neural_distill.Distillation` do. It reads the
experiment's public attributes (models, criterion, metric, dataloaders) when the run starts,
keeps the run's position and results in a :class:`~neural_distill.run_state.RunState`, and
writes the workspace.
"""

import os
import time

from . import rng
from .checkpoints import atomic_write
from .criterion.registry import needs_teacher
from .criterion.specs import criterion_name_and_args
from .errors import DataError, ModelError
from .evaluation import Evaluator, resolve_metric
from .events import Event, Hooks
from .run_state import RunState
from .durable import Durability, NoCheckpoints
from .step import DistillationStep
from .workspace import Workspace


class RunLifecycle:
    def __init__(self, distiller):
        self.distiller = distiller
        self.state = RunState()
        self.started = False
        self.ended = False   # on_train_end finished a run and no hook has started another
        self.workspace = None
        self.step = None
        self.evaluator = None
        self.durable = None      # checkpoints and resume, for a run of a built-in loop
        self._builtin = False
        self._epoch_started_at = time.perf_counter()

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, event, *args):
        if event is Event.AFTER_COMPUTE_LOSS and self.ended and not self.started:
            return self._loss_outside_run(*args)
        if event not in (Event.TRAIN_BEGIN, Event.TRAIN_END):
            self.start()  # any hook may be the first one a user's loop calls
        handler = getattr(self, event.value, None)
        if handler is None:  # an event this experiment does not react to
            return Hooks.dispatch(self, event, *args)
        return handler(*args)

    # ------------------------------------------------------------------ start / release
    def start(self, dataloader=None):
        """Everything on_train_begin does; reached lazily from any hook."""
        if self.started:
            return
        d = self.distiller
        adapter = d.adapter
        if adapter is None:
            raise ModelError("on_train_begin: no student model. Set distiller.student_model "
                             "first.")
        if d.criterion is None:
            d.criterion = build_criterion(d)
        adapter.check_criterion(d.criterion)
        if not d.teachers and needs_teacher(d.criterion):
            d.logger.warning("no teacher_model set: on_after_compute_loss will need the "
                             "teacher_output argument")
        metric = resolve_metric(d.metric, d.conf)
        if d.higher_is_better is None:
            d.higher_is_better = metric.higher_is_better if metric is not None else True
        adapter.move_to_device(d.criterion, adapter.model_device(d.student_model))
        # Only a built-in loop can be resumed: it tells where its data and optimizer are.
        self.durable = Durability(self) if self._builtin else None
        found = self.durable.find() if self.durable is not None else None
        self._enter_models(dataloader)
        self.workspace = (self.durable.workspace(found) if self.durable is not None
                          else Workspace(d.conf.tuning.workspace.path))
        self.workspace.write_config(d.conf)
        running = self.state.running_losses
        # Zeroed in place, not replaced: a user's compiled TensorFlow step keeps updating the
        # variable it captured when it was traced.
        self.state = RunState(running.reset() if running is not None
                              else adapter.new_running_losses())
        if found is not None:
            self.durable.restore(found, self.state)
        self.evaluator = Evaluator(adapter, metric, d.higher_is_better, self.state, d.logger)
        self.step = DistillationStep(adapter, d.criterion, d.teachers, d.teacher_weights)
        self._epoch_started_at = time.perf_counter()
        self.started, self.ended = True, False

    def _enter_models(self, dataloader=None):
        """Teachers frozen on the student's device, the criterion attached to the models and,
        given a dataloader, its feature matchers built by a dry run on one batch (before any
        optimizer step, so the built-in loop or a user reading criterion.parameters() trains
        them)."""
        d = self.distiller
        d.teacher_set.enter(d.adapter, d.adapter.model_device(d.student_model))
        try:
            if hasattr(d.criterion, "attach"):
                d.criterion.attach(d.student_model, d.teachers, d.teacher_set.keys)
            if dataloader is not None and getattr(d.criterion, "needs_preparation", False):
                d.adapter.dry_run(d.student_model, d.teachers, dataloader, d.criterion)
        except Exception:
            self.release()
            raise

    def release(self):
        """Teachers back to their own mode and device; no hook of ours left on any model."""
        d = self.distiller
        if d.adapter is not None:
            d.teacher_set.release(d.adapter)
        if hasattr(d.criterion, "detach"):
            d.criterion.detach()

    def abort(self):
        """A failed or interrupted run: models released, nothing more recorded."""
        self.release()
        self.started = False
        if self.durable is not None:
            self.durable.detach()

    def track(self, optimizer):
        """Called by a built-in loop once its optimizer exists: checkpoints of this run (and
        the resumed optimizer state). Returns what tells the loop which epochs and batches
        are left (``skip_epoch``, ``batches``)."""
        if self.durable is None:
            return NoCheckpoints()
        return self.durable.attach(optimizer)

    def save_best(self, final=False):
        """best_student (atomically): the student when it just improved, the best weights
        otherwise."""
        d, adapter, state = self.distiller, self.distiller.adapter, self.state
        if self.workspace is None or (final and state.best_weights is None):
            return None
        model = d.student_model if not final else adapter.copy_with_state(d.student_model,
                                                                          state.best_weights)
        path = self.workspace.file("best_student" + adapter.checkpoint_suffix)
        atomic_write(path, lambda temporary: adapter.save_weights(model, temporary))
        return path

    def _loss_outside_run(self, inputs, student_output, student_loss, teacher_output=None):
        """on_after_compute_loss after the run ended: the loss, with the teachers frozen only
        for this call (a finished run must not leave them in eval mode)."""
        self._enter_models()
        try:
            step = DistillationStep(self.distiller.adapter, self.distiller.criterion,
                                    self.distiller.teachers, self.distiller.teacher_weights)
            return step(inputs, student_output, student_loss, teacher_output)
        finally:
            self.release()

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, dataloader=None):
        if self.started:
            # Started lazily by an earlier hook: restore the teachers before freezing them
            # again, or their frozen mode would be recorded as their own.
            self.abort()
        self.start(dataloader)

    def on_epoch_begin(self, epoch):
        self.state.begin_epoch(epoch)
        self._epoch_started_at = time.perf_counter()

    def on_step_begin(self, batch_id):
        self.state.step = batch_id

    def on_after_compute_loss(self, inputs, student_output, student_loss, teacher_output=None):
        return self.step(inputs, student_output, student_loss, teacher_output,
                         running=self.state.running_losses)

    def on_step_end(self):
        self.state.end_step()
        if self.durable is not None and self.durable.optimizer is not None:
            self.durable.after_step()

    def on_epoch_end(self):
        """Logs the epoch's losses; evaluates the student every ``frequency`` epochs."""
        state = self.state
        state.epochs_done += 1
        record = {"epoch": state.epochs_done, "step": state.global_step,
                  **state.running_losses.read(),
                  "time_s": round(time.perf_counter() - self._epoch_started_at, 3)}
        state.running_losses.reset()
        if state.epochs_done % self.distiller.conf.distillation.train.frequency == 0:
            record.update(self.evaluate())
        self.record(record)
        if self.durable is not None and self.durable.optimizer is not None:
            self.durable.after_epoch()

    def on_train_end(self):
        """Final evaluation if due, teachers restored, best student built and saved."""
        if not self.started:
            return
        d, state = self.distiller, self.state
        if state.last_eval_epoch != state.epochs_done:
            final = self.evaluate()
            if final:
                self.record({"epoch": state.epochs_done, "step": state.global_step,
                             "final": True, **final})
        self.release()
        if self.durable is not None:
            self.durable.detach()
        adapter = d.adapter
        if adapter.has_parameters(d.criterion):
            # Trained matchers are part of the training state, not of the student.
            atomic_write(self.workspace.file("criterion" + adapter.checkpoint_suffix),
                         lambda temporary: adapter.save_weights(d.criterion, temporary))
        d.best_model = adapter.copy_with_state(d.student_model, state.best_weights)
        path = self.workspace.file("best_student" + adapter.checkpoint_suffix)
        atomic_write(path, lambda temporary: adapter.save_weights(d.best_model, temporary))
        d.logger.info("best student%s saved to %s", "" if state.best_score is None else
                      f" ({self.evaluator.score_name(d.eval_func)}={state.best_score:.4f})",
                      path)
        self.started, self.ended = False, True

    # ------------------------------------------------------------------ records
    def evaluate(self):
        d = self.distiller
        record, improved = self.evaluator.evaluate(d.student_model, d.eval_func,
                                                   d.eval_dataloader)
        if improved:
            self.save_best()  # a later crash or divergence never loses this student
        return record

    def record(self, record):
        self.state.history.append(record)
        self.workspace.log_metrics(record)
        self.distiller.logger.info(", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    # ------------------------------------------------------------------ fit
    def fit(self):
        """``train_func(student)`` (which calls the hooks) or the built-in loop."""
        d = self.distiller
        if d.adapter is None:
            raise ModelError("fit: no student model. Set distiller.student_model first.")
        if d.criterion is None:
            d.criterion = build_criterion(d)
        if not d.teachers and needs_teacher(d.criterion):
            raise ModelError("fit: no teacher model. Set distiller.teacher_model first (or use "
                             "SelfKnowledgeDistillationLoss, which needs none).")
        rng.seed_all(d.conf.tuning.random_seed, d.adapter)
        self.ended = False
        try:
            if d.train_func is not None:
                self._fit_train_func()
            else:
                self._fit_builtin()
        except BaseException:
            # A failed or interrupted run must not leave the teacher in eval mode or hooks
            # on the models, and keeps the best student it had (a diverged run too).
            started = self.started
            self.abort()
            if started:
                try:
                    self.save_best(final=True)
                except Exception:  # noqa: BLE001 - the original error matters more
                    d.logger.warning("could not save the best student after the failure")
            raise
        return d.best_model

    def _fit_train_func(self):
        d = self.distiller
        if d.eval_dataloader is None:
            d.eval_dataloader = self._config_dataloader("evaluation.accuracy")
        d.train_func(d.student_model)
        if self.ended and not self.started:
            return  # train_func finished the run itself (it called on_train_end)
        self.start()  # train_func may have called no hook at all
        d.on_train_end()

    def _fit_builtin(self):
        d = self.distiller
        if d.train_dataloader is None:
            d.train_dataloader = self._config_dataloader("distillation.train")
        if d.train_dataloader is None:
            raise DataError(
                f"fit: no training data. Set distiller.train_dataloader, or name a dataset "
                f"under distillation.train.dataloader.dataset in {d.conf_source}, or set "
                f"distiller.train_func to use your own loop.")
        if d.eval_dataloader is None:
            d.eval_dataloader = self._config_dataloader("evaluation.accuracy")
        self._builtin = True
        try:
            d.adapter.run_builtin_loop(d)
        finally:
            self._builtin = False

    def _config_dataloader(self, section):
        d = self.distiller
        node = d.conf
        for key in section.split("."):
            node = node.get(key, {}) if isinstance(node, dict) else {}
        loader_config = node.get("dataloader") if isinstance(node, dict) else None
        if not loader_config or "dataset" not in loader_config:
            return None
        base_dir = os.getcwd() if d.conf_source.startswith("<") else \
            os.path.dirname(os.path.abspath(d.conf_source))
        return d.adapter.build_dataloader(
            loader_config, f"{d.conf_source}: {section}.dataloader",
            seed=d.conf.tuning.random_seed, base_dir=base_dir)


def build_criterion(distiller):
    """The criterion the configuration describes, for the student's framework."""
    name, args = criterion_name_and_args(distiller.conf.distillation.train.criterion)
    return distiller.adapter.build_criterion(name, args)
