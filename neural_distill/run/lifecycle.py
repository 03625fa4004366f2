"""The life of one distillation run: start, the hooks' bookkeeping and the end.

:class:`RunLifecycle` is what the hooks of :class:`neural_distill.Distillation` do. It reads the
experiment's public attributes (models, criterion, metric, dataloaders) when the run starts,
keeps the run's position and results in a :class:`~neural_distill.run.state.RunState`, and
writes the workspace. Its evaluation records and best-student keeping come from
:class:`~neural_distill.run.results.RunResults`; ``fit()`` is driven by ``run/fitting.py``.
"""

import time

from neural_distill.run import checks, fitting
from neural_distill.core.batches import is_one_shot
from neural_distill.criterion.base import DistillationCriterion
from neural_distill.criterion.registry import needs_teacher
from neural_distill.run.durable import Durability, NoCheckpoints
from neural_distill.errors import ModelError
from neural_distill.run.evaluation import Evaluator, resolve_metric
from neural_distill.events import Event, Hooks
from neural_distill.run.fitting import build_criterion, config_dataloader, teacher_missing
from neural_distill.language.tokens import is_causal_lm
from neural_distill.run.matcher_training import MatcherTraining
from neural_distill.core.output_check import OutputCheck
from neural_distill.pruning.run import run_pruner
from neural_distill.run.prepared_epoch import PreparedEpoch, defers_checks
from neural_distill.run.results import RunResults
from neural_distill.run.state import RunState
from neural_distill.run.step import DistillationStep
from neural_distill.teacher_cache.run_cache import build_run_cache
from neural_distill.teacher_cache.token_records import TokenOutputs
from neural_distill.run.workspace import Workspace


class RunLifecycle(RunResults):
    pruner = None  # the config's `pruning:` section, driven by the same hooks (set at start)

    def __init__(self, distiller):
        self.distiller = distiller
        self.state = RunState()
        self.started = False
        self.ended = False   # on_train_end finished a run and no hook has started another
        self.workspace = None
        self.step = None
        self.evaluator = None
        self.output_check = OutputCheck()  # outputs vs from_logits, once per criterion
        self.matchers = None  # MatcherTraining of the criterion (kept across runs)
        self.guard = None  # the run's checks.LossGuard
        self.student_classes = None  # read on the first batch, for clearer label errors
        self.durable = None      # checkpoints and resume, for a run of a built-in loop
        self.builtin = False  # a built-in loop drives the run (set by fitting): resumable
        self._sparse_best = False  # the best student was evaluated at the final sparsity
        self.prepared = None  # a built-in loop's first epoch, opened for the first batch
        self.first_step = None  # the first batch, until its step's outputs are checked
        self.first_teacher_output = None  # (the teacher's output on it,) for its step
        self._epoch_started_at = time.perf_counter()

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, event, *args):
        if event is Event.AFTER_COMPUTE_LOSS and self.ended and not self.started:
            return self._loss_outside_run(*args)
        if event not in (Event.TRAIN_BEGIN, Event.TRAIN_END):
            self.start()  # any hook may be the first one a user's loop calls
        if self.pruner is not None and event in (Event.EPOCH_END, Event.TRAIN_END):
            self._pruning_checkpoint(event)
        handler = getattr(self, event.value, None)
        if handler is None:  # an event this experiment does not react to
            result = Hooks.dispatch(self, event, *args)
        else:
            result = handler(*args)
        if self.pruner is not None and event not in (Event.AFTER_COMPUTE_LOSS, Event.TRAIN_END):
            getattr(self.pruner, event.value)(*args)
        return result

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
        runs_teacher = needs_teacher(d.criterion)
        # Shared since assignment? A criterion that runs no teacher runs none, even the student
        # given as one (INC's self-distillation): the teachers are set aside for the run.
        checks.check_models(adapter, d.student_model, d.teachers, runs_teacher)
        if not runs_teacher:
            d.teacher_set.set_aside()
        if self.matchers is None or self.matchers.criterion is not d.criterion:
            self.matchers = MatcherTraining(adapter.name, d.criterion,
                                            d.conf.distillation.train.optimizer)
        if teacher_missing(d):
            d.logger.warning("no teacher_model set: on_after_compute_loss will need the "
                             "teacher_output argument")
        metric = resolve_metric(d.metric, d.conf)
        if d.higher_is_better is None:
            d.higher_is_better = metric.higher_is_better if metric is not None else True
        adapter.move_to_device(d.criterion, adapter.model_device(d.student_model))
        self._enter_models(dataloader)
        # Only a built-in loop can be resumed: it tells where its data and optimizer are.
        self.durable = Durability(self) if self.builtin else None
        found = self.durable.find() if self.durable is not None else None
        self.workspace = (self.durable.workspace(found) if self.durable is not None
                          else Workspace(d.conf.tuning.workspace.path))
        self.workspace.write_config(d.conf)
        self.workspace.write_run_info(d.conf_source, d.conf.tuning.random_seed,
                                      d.conf.tuning.get("deterministic", False))
        running = self.state.running_losses
        # Zeroed in place, not replaced: a user's compiled TensorFlow step keeps updating the
        # variable it captured when it was traced.
        self.state = RunState(running.reset() if running is not None
                              else adapter.new_running_losses())
        if found is not None:
            self.durable.restore(found, self.state)
        self.guard = checks.LossGuard(adapter.name)
        self.evaluator = Evaluator(adapter, metric, d.higher_is_better, self.state, d.logger)
        self.step = DistillationStep(adapter, d.criterion, d.teachers, d.teacher_weights,
                                     cache=build_run_cache(
                                         fitting.cache_options(d), adapter,
                                         d.criterion, d.teachers, d.teacher_weights,
                                         self.workspace.file("teacher_cache")),
                                     matchers=self.matchers, output_check=self.output_check,
                                     causal=is_causal_lm(d.student_model),
                                     teacher_context=self._teacher_context())
        self._epoch_started_at = time.perf_counter()
        self.pruner = run_pruner(d.conf, adapter.name, d.student_model)
        if self.pruner is not None and found is not None:
            self.pruner.resume(self.state.global_step, self.state.epoch)
        self._sparse_best = False
        self.started, self.ended = True, False

    def _enter_models(self, dataloader=None):
        """Teachers frozen on the student's device, the criterion attached to the models and,
        given a dataloader, the first-batch pass (:meth:`_first_batch`)."""
        d = self.distiller
        d.teacher_set.enter(d.adapter, d.adapter.model_device(d.student_model))
        try:
            if d.criterion is not None:
                d.criterion.attach(d.student_model, d.teachers, d.teacher_set.keys)
            # Peeking at a one-shot iterator loses its batch: only when matchers need it (a
            # built-in PyTorch loop trains on the batch it looked at: nothing is lost).
            if dataloader is not None and (d.criterion.needs_preparation
                                           or not is_one_shot(dataloader)
                                           or self._prepares(dataloader)):
                self._first_batch(dataloader)
        except Exception:
            self.release()
            raise

    def _first_batch(self, dataloader):
        """One forward pass of every model on the first batch, changing nothing, before any
        step: the criterion builds its feature matchers from it (before any optimizer exists,
        so the built-in loop or a user reading criterion.parameters() trains them), and the
        outputs are checked while they are eager (a compiled TensorFlow step cannot be)."""
        d = self.distiller
        # A teacher cache promises one teacher pass per sample: its teachers are not run here
        # (cached criteria build no matchers, and the student's outputs are still checked).
        cached = fitting.cache_options(d).in_use and not d.criterion.needs_preparation
        teachers = [] if cached else d.teachers
        if self._prepares(dataloader):
            self.prepared = PreparedEpoch(d.adapter, dataloader)
            batch = self.prepared.first
        else:
            batch = d.adapter.first_batch(dataloader)
        checks.check_batch(d.adapter, d.student_model, batch)
        if self.prepared is not None and defers_checks(d.adapter, d.criterion, d.teachers,
                                                       cached):
            self.first_step = batch  # checked on the first step's own outputs
            return
        try:
            student_output, teacher_outputs = d.adapter.dry_run(d.student_model, teachers,
                                                                batch, d.criterion)
        except (TypeError, ValueError, RuntimeError) as exc:
            checks.explain_first_batch_error(d.adapter, d.student_model, teachers, batch, exc)
            raise
        self.output_check.check(d.adapter, d.criterion, student_output, teacher_outputs)
        self.student_classes = checks.check_first_batch(d.adapter, d.criterion, batch,
                                                        student_output, teacher_outputs, self)

    def _prepares(self, dataloader):
        """A PyTorch built-in loop takes its first epoch from :class:`PreparedEpoch`."""
        return (self.builtin and self.distiller.adapter.checks_first_step_outputs
                and dataloader is not None)

    def take_prepared(self, loader):
        """The first epoch opened for the first batch, once, if it is ``loader``'s."""
        prepared, self.prepared = self.prepared, None
        return prepared if prepared is not None and prepared.loader is loader else None

    def _check_first_step(self, inputs, student_output, teacher_output, labels=None):
        """The first-batch checks on the first training step's outputs; returns the teacher
        output the step then uses (the teacher ran once, for both). ``labels``: the step's
        (else the batch's), which say which tokens a per-token cache keeps."""
        d, batch = self.distiller, self.first_step
        self.first_step = None
        if teacher_output is None:
            if labels is None and batch is not None:
                labels = d.adapter.split_batch(batch)[1]
            teacher_output = self.step.teacher_output(inputs, student_output, labels=labels)
        # Top-k records of a per-token cache are no logits to check (token_records.py).
        teacher_outputs = ([teacher_output] if teacher_output is not None
                           and not isinstance(teacher_output, TokenOutputs) else [])
        self.output_check.check(d.adapter, d.criterion, student_output, teacher_outputs)
        self.student_classes = checks.check_first_batch(d.adapter, d.criterion, batch,
                                                        student_output, teacher_outputs, self)
        return teacher_output

    def release(self):
        """Teachers back to their own mode and device; no hook of ours left on any model."""
        d = self.distiller
        if d.adapter is not None:
            d.teacher_set.release(d.adapter)
        d.teacher_set.bring_back()
        if isinstance(d.criterion, DistillationCriterion):  # not one refused at start
            d.criterion.detach()
        if self.durable is not None:
            self.durable.detach()

    def track(self, optimizer):
        """Called by a built-in loop once its optimizer exists: checkpoints of this run (and
        the resumed optimizer state). Returns what tells the loop which epochs and batches
        are left (``skip_epoch``, ``batches``)."""
        if self.durable is None:
            return NoCheckpoints()
        return self.durable.attach(optimizer)

    def abort(self):
        """A failed or interrupted run: models released, the checkpoint being written on disk
        (its error only logged: the run's own error is on its way), nothing more recorded."""
        if self.durable is not None:
            self.durable.flush(raise_errors=False)
        self.release()
        self.started = False
        self.prepared = self.first_step = self.first_teacher_output = None

    def _teacher_context(self):
        d = self.distiller
        return d.adapter.teacher_precision(d.conf.model.get("teacher_precision"),
                                           d.adapter.model_device(d.student_model))

    def _loss_outside_run(self, inputs, student_output, student_loss, teacher_output=None,
                          labels=None):
        """on_after_compute_loss after the run ended: the loss, with the teachers frozen only
        for this call (a finished run must not leave them in eval mode)."""
        self._enter_models()
        try:
            d = self.distiller
            step = DistillationStep(d.adapter, d.criterion, d.teachers, d.teacher_weights,
                                    causal=is_causal_lm(d.student_model),
                                    teacher_context=self._teacher_context())
            return step(inputs, student_output, student_loss, teacher_output, labels=labels)
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

    def check_first_output(self, inputs, student_output, generated_labels=None):
        """Called by the PyTorch built-in loop between the student's forward and its loss on
        every step: on the first, the first-batch checks (before the loss can fail on a label)
        and the teacher's output, kept for ``on_after_compute_loss``. ``generated_labels``:
        the step trains on generated completions (on-policy), checked instead of the batch."""
        if self.first_step is not None:
            if generated_labels is not None and isinstance(inputs, dict):
                self.first_step = {**inputs, "labels": generated_labels}
            self.first_teacher_output = (self._check_first_step(inputs, student_output, None),)

    def on_after_compute_loss(self, inputs, student_output, student_loss, teacher_output=None,
                              labels=None):
        if self.first_teacher_output is not None:
            if teacher_output is None:
                teacher_output = self.first_teacher_output[0]
            self.first_teacher_output = None
        elif self.first_step is not None:
            teacher_output = self._check_first_step(inputs, student_output, teacher_output,
                                                    labels)
        loss = self.step(inputs, student_output, student_loss, teacher_output,
                         running=self.state.running_losses, labels=labels)
        self.stop_if_diverged(self.guard.observe(loss, self._where()))
        return loss

    def on_after_optimizer_step(self):
        self.matchers.step_pending()  # matchers created after the user's optimizer

    def on_step_end(self):
        self.matchers.step_pending()
        self.state.end_step()
        self.stop_if_diverged(self.guard.poll(self._where()))
        if self.durable is not None and self.durable.optimizer is not None:
            self.durable.after_step()

    def on_epoch_end(self):
        """Logs the epoch's losses; evaluates the student every ``frequency`` epochs."""
        state = self.state
        self.matchers.step_pending()
        self.stop_if_diverged(self.guard.poll(self._where(), wait=True))
        self.guard.end_epoch(state.global_step, state.epochs_done)
        state.epochs_done += 1
        record = {"epoch": state.epochs_done, "step": state.global_step,
                  **self.distiller.adapter.mean_over_processes(state.running_losses.read()),
                  "time_s": round(time.perf_counter() - self._epoch_started_at, 3)}
        state.running_losses.reset()
        if self.step.cache is not None:
            cache_stats = self.step.cache.end_epoch()
            record["teacher_cache_hit_rate"] = round(cache_stats["hit_rate"], 4)
            if cache_stats.get("bytes_per_token") is not None:  # per-token records
                record["teacher_cache_bytes_per_token"] = cache_stats["bytes_per_token"]
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
        self.stop_if_diverged(self.guard.poll(self._where(), wait=True))
        if state.last_eval_epoch != state.epochs_done:
            final = self.evaluate()
            if final:
                self.record({"epoch": state.epochs_done, "step": state.global_step,
                             "final": True, **final})
        self.release()
        self.started, self.ended = False, True  # ended, even if a check or a save fails
        adapter = d.adapter
        if adapter.has_parameters(d.criterion):
            # Trained matchers are part of the training state, not of the student.
            self.workspace.save_weights(adapter, d.criterion,
                                        "criterion" + adapter.checkpoint_suffix)
        checks.check_returned_weights(adapter, state.best_weights)
        d.logger.info("best student%s saved to %s", self.best_score_text(), self.save_best())
        if self.durable is not None:
            # The last checkpoint was written while the best student was copied and saved:
            # on disk now (its error raised) before fit() returns.
            self.durable.flush()

    def _pruning_checkpoint(self, event):
        """A student evaluated before the sparsity schedule ended is not the sparse student
        asked for: the best one is chosen among evaluations after it ended."""
        if event is Event.TRAIN_END:
            self.pruner.on_train_end()  # masks folded in before the best student is saved
        elif not self.pruner.finished() or not self._sparse_best:
            # Until the first evaluation after the schedule, each evaluation replaces the last.
            self.state.best_score, self.state.best_weights = None, None
            self._sparse_best = self.pruner.finished()

    def _where(self):
        return self.state.epoch, self.state.step

    # ------------------------------------------------------------------ fit
    def fit(self):
        """``train_func(student)`` (which calls the hooks) or the built-in loop (``fitting``)."""
        return fitting.fit(self)

    def config_dataloader(self, section, adapter=None):
        """The dataloader a config section (``distillation.train``...) describes, or None;
        built by ``adapter`` (default: the student's)."""
        return config_dataloader(self.distiller, section, adapter)
