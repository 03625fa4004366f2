"""Scoring the student and keeping the best one (its weights live in the run state)."""

import math

from .config.loader import validate
from .config.nodes import OneOf, Section
from .config.schema import METRICS
from .errors import ConfigError, DataError
from .metrics import Metric, build_metric

_METRIC_SECTION = Section({"metric": OneOf(METRICS, "metric")})


def resolve_metric(metric, conf):
    """A Metric from ``distiller.metric`` (an object, a name or {name: params}) or, when that
    is None, from ``evaluation.accuracy.metric``; None if neither names one."""
    if metric is None:
        metric = conf.evaluation.get("accuracy", {}).get("metric")
        if metric is None:
            return None
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        metric = {metric: None} if metric != "topk" else {"topk": 1}
    if isinstance(metric, dict):
        checked = validate({"metric": metric}, "distiller.metric", node=_METRIC_SECTION)
        return build_metric(checked["metric"])
    raise ConfigError(f"distiller.metric: expected a neural_distill.metrics.Metric, a metric "
                      f"name or a {{name: params}} dict, got {type(metric).__name__}")


class Evaluator:
    """Scores the student by ``eval_func`` or by a metric over ``eval_dataloader``, and keeps
    its weights in ``state.best_weights`` whenever it is the best so far."""

    def __init__(self, adapter, metric, higher_is_better, state, logger):
        self.adapter = adapter
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.state = state
        self.logger = logger

    def score_name(self, eval_func):
        if eval_func is not None or self.metric is None:
            return "score"
        return self.metric.name

    def score(self, student, eval_func, eval_dataloader):
        if eval_func is not None:
            score = eval_func(student)
            if isinstance(score, (list, tuple)):
                score = score[0]
            try:
                return float(score)
            except (TypeError, ValueError):
                raise DataError(f"eval_func must return a number, got {score!r}") from None
        if eval_dataloader is None:
            return None
        if self.metric is None:
            self.metric = build_metric({"topk": 1})
            self.logger.info("no metric configured: evaluating top-1 accuracy")
        return self.adapter.evaluate(student, eval_dataloader, self.metric)

    def evaluate(self, student, eval_func, eval_dataloader):
        """The record of one evaluation (``{name: score, "best": bool}``, or {} without a
        score); returns it with ``improved`` (whether the best student changed)."""
        state = self.state
        state.last_eval_epoch = state.epochs_done
        score = self.score(student, eval_func, eval_dataloader)
        if score is None:
            # Nothing to judge by: the latest student is the best one we know.
            state.best_weights = self.adapter.snapshot(student)
            return {}, True
        # A NaN score (a diverged student) never becomes the best, not even the first time.
        improved = not math.isnan(score) and (
            state.best_score is None
            or (score > state.best_score if self.higher_is_better else score < state.best_score))
        if improved:
            state.best_score = score
            state.best_weights = self.adapter.snapshot(student)
        elif state.best_weights is None:
            state.best_weights = self.adapter.snapshot(student)
        return {self.score_name(eval_func): score, "best": bool(improved)}, improved
