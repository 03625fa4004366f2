"""The number an ``eval_func`` returns, read from whatever form it takes.

``eval_func(model)`` may return a number, a list/tuple whose first item is the number, or a
dict of metrics (``{'acc': 0.9, 'loss': 0.3}``), as evaluation functions written for other
libraries often do. From a dict the configured metric's key is taken (its name, or the same name
with the ``eval_`` prefix trainers add), or the only key; the key used is logged once per run.
"""

import difflib

from .errors import DataError
from .logging_utils import get_logger


def _metric_names(metric):
    if metric is None:
        return []
    name = getattr(metric, "name", None)
    return [name, f"eval_{name}"] if name else []


def _key_of(result, metric):
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


def eval_score(result, metric, owner):
    """``result`` of an eval_func as a float; ``owner`` remembers which dict key was logged."""
    if isinstance(result, dict):
        if not result:
            raise DataError("eval_func returned an empty dict; return a number or a dict of "
                            "metrics")
        key = _key_of(result, metric)
        if getattr(owner, "_eval_score_key", None) != key:
            get_logger().info("eval_func returned a dict: using its '%s' value as the score",
                              key)
            owner._eval_score_key = key
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
