"""What a run keeps: evaluation records (the log line and ``metrics.jsonl``), the best student
(built, saved atomically) and the stop at the first non-finite loss, which keeps that student.

:class:`RunResults` is the base of :class:`~neural_distill.run.lifecycle.RunLifecycle`, which gives
it ``distiller``, ``state`` (``RunState``), ``evaluator`` (``Evaluator``), ``workspace`` and
``abort()``.
"""

from neural_distill.run import checks
from neural_distill.errors import DataError
from neural_distill.run.saving import with_save


class RunResults:
    @property
    def metric(self):
        """The metric the run evaluates with (None before the run or without one)."""
        return self.evaluator.metric if self.evaluator is not None else None

    def score_name(self):
        """The name the best score is logged under ('score' for an eval_func)."""
        if self.evaluator is None:
            return "score"
        return self.evaluator.score_name(self.distiller.eval_func)

    def evaluate(self):
        d = self.distiller
        record, improved = self.evaluator.evaluate(d.student_model, d.eval_func,
                                                   d.eval_dataloader)
        if improved:  # written now: a later crash or divergence never loses this student
            student = d.student_model
            if d.adapter.is_sharded(student) and self.workspace.writes:
                # Its weights were just gathered into the best weights: no second gathering
                # (the other processes are not here to take part).
                student = d.adapter.copy_with_state(student, self.state.best_weights)
            self.workspace.save_weights(d.adapter, student,
                                        "best_student" + d.adapter.checkpoint_suffix)
        return record

    def record(self, record):
        self.state.history.append(record)
        self.workspace.log_metrics(record)
        self.distiller.logger.info(", ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    def save_best(self):
        """``distiller.best_model`` from the best weights, saved atomically; returns the file's
        path (also after a failure or a Ctrl-C: ``durable``)."""
        d, adapter = self.distiller, self.distiller.adapter
        # with_save: model.save(path) works on what fit() returns (docs/saving.md).
        d.best_model = with_save(adapter.copy_with_state(d.student_model,
                                                         self.state.best_weights))
        return self.workspace.save_weights(adapter, d.best_model,
                                           "best_student" + adapter.checkpoint_suffix)

    def stop_if_diverged(self, bad):
        """At the first non-finite loss (``bad`` = (value, where)): stop, keeping (and saving)
        the best student evaluated so far, never the diverged one."""
        if bad is None:
            return
        self.abort()
        saved_to = self.save_best() if self.state.best_weights is not None else None
        raise DataError(checks.diverged_message(*bad, saved_to=saved_to,
                                                score=self.best_score_text()))

    def best_score_text(self):
        """`` (name=score)`` for the log, or "" before any evaluation."""
        if self.state.best_score is None:
            return ""
        return f" ({self.score_name()}={self.state.best_score:.4f})"
