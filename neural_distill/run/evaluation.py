"""Scoring the student and keeping the best one (its weights live in the run state).

``eval_func(model)`` may return a number, a list/tuple whose first item is the number, or a
dict of metrics (``{'acc': 0.9, 'loss': 0.3}``), as evaluation functions written for other
libraries often do. From a dict the configured metric's key is taken (its name, or the same name
with the ``eval_`` prefix trainers add), or the only key; the key used is logged once per run.
"""

import difflib
import math

from neural_distill.config.loader import validate
from neural_distill.config.nodes import OneOf, Section
from neural_distill.config.schema import METRICS
from neural_distill.errors import ConfigError, DataError
from neural_distill.core.logging_utils import get_logger, warn_once
from neural_distill.metrics import Metric, build_metric

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


def _metric_names(metric):
    name = getattr(metric, "name", None) if metric is not None else None
    return [name, f"eval_{name}"] if name else []


def _key_of(result, metric):
    """The key of an eval_func's dict result that holds the score."""
    keys = list(result)
    names = _metric_names(metric)
    found = next((n for n in names if n in result), None)
    if found is not None:
        return found
    if len(keys) == 1 and not names:
        return keys[0]
    if names:
        close = difflib.get_close_matches(names[0], [str(k) for k in keys], 1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise DataError(
            f"eval_func returned a dict with keys {sorted(map(str, keys))}, but the configured "
            f"metric is '{names[0]}'.{hint} Configure the metric whose key to use "
            f"(distiller.metric = neural_distill.metrics.Metric(name='...')), or return that "
            f"key from eval_func.")
    raise DataError(
        f"eval_func returned a dict with several keys {sorted(map(str, keys))} and no metric is "
        f"configured to choose one. Set distiller.metric = neural_distill.metrics.Metric("
        f"name='<key>') (or evaluation.accuracy.metric), or return one number.")


class Evaluator:
    """Scores the student by ``eval_func`` or by a metric over ``eval_dataloader``, and keeps
    its weights in ``state.best_weights`` whenever it is the best so far."""

    def __init__(self, adapter, metric, higher_is_better, state, logger):
        self.adapter = adapter
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.state = state
        self.logger = logger
        self.score_key = None  # the key of an eval_func's dict result, logged once

    def score_name(self, eval_func):
        if eval_func is not None or self.metric is None:
            return "score"
        return self.metric.name

    def score(self, student, eval_func, eval_dataloader):
        if eval_func is not None:
            return self.eval_func_score(eval_func(student))
        if eval_dataloader is None:
            return None
        if self.metric is None:
            self.metric = build_metric({"topk": 1})
            self.logger.info("no metric configured: evaluating top-1 accuracy")
        return self.adapter.evaluate(student, eval_dataloader, self.metric)

    def eval_func_score(self, result):
        """An eval_func's ``result`` (a number, a list/tuple, a dict of metrics) as a float."""
        if isinstance(result, dict):
            if not result:
                raise DataError("eval_func returned an empty dict; return a number or a dict "
                                "of metrics")
            key = _key_of(result, self.metric)
            if self.score_key != key:
                get_logger().info("eval_func returned a dict: using its '%s' value as the "
                                  "score", key)
                self.score_key = key
            score = result[key]
        elif isinstance(result, (list, tuple)):
            score = result[0] if result else result
        else:
            score = result
        try:
            return float(score)
        except (TypeError, ValueError):
            raise DataError(f"eval_func must return a number (or a dict of metrics), got "
                            f"{result!r}") from None

    def evaluate(self, student, eval_func, eval_dataloader):
        """The record of one evaluation (``{name: score, "best": bool}``, or {} without a
        score); returns it with ``improved`` (whether the best student changed)."""
        state = self.state
        state.last_eval_epoch = state.epochs_done
        score = self.score(student, eval_func, eval_dataloader)
        if score is None:
            if self.metric is not None:
                warn_once(self, "metric without data",
                          "a metric is configured (evaluation.accuracy.metric / "
                          "distiller.metric) but there is no evaluation data: the last student "
                          "is returned and no best score is kept. Set distiller.eval_dataloader "
                          "(or evaluation.accuracy.dataloader).")
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
