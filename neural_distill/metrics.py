"""Evaluation metrics, computed on NumPy arrays so every framework shares one implementation.

Names follow the experiment files users bring: ``topk``, ``Accuracy``, ``Loss``, ``MSE``,
``RMSE``, ``MAE``, ``F1``. Labels equal to -100 mark unlabeled samples and are skipped.

``Metric(name="eval_accuracy")`` (the reference documents' form) computes nothing itself: it names
one value of a trainer's evaluation results (``NLPTrainer.evaluate()``), which a trainer
integration reads with :meth:`Metric.value_from`.
"""

import difflib

import numpy as np

from neural_distill.errors import ConfigError, DataError
from neural_distill.core.logging_utils import warn_once

IGNORE_INDEX = -100


class Metric:
    """Accumulates predictions batch by batch; ``result()`` gives one float.

    Subclasses implement ``update``. ``Metric(name=...)`` itself names a value of a trainer's
    evaluation results instead (see :attr:`reads_results`).

    Args:
        name: the key of the evaluation results to read, e.g. ``"eval_accuracy"``
            (``"accuracy"`` finds ``"eval_accuracy"`` too: trainers prefix their keys).
        greater_is_better: whether a larger value is a better model. Default: True, except for
            a name ending in "loss" (``"eval_loss"``), as ``transformers`` decides it too.
    """

    name = "metric"
    higher_is_better = True

    def __init__(self, name=None, greater_is_better=None):
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"Metric: name: expected a non-empty string naming a value of "
                                  f"the evaluation results (e.g. 'eval_accuracy'), got {name!r}")
            self.name = name
        if greater_is_better is not None:
            if not isinstance(greater_is_better, bool):
                raise ConfigError(f"Metric: greater_is_better: expected True or False, got "
                                  f"{greater_is_better!r}")
            self.higher_is_better = greater_is_better
        elif name is not None and self.reads_results and name.endswith("loss"):
            self.higher_is_better = False
        self.reset()

    @property
    def greater_is_better(self):
        """The reference documents' name for ``higher_is_better``."""
        return self.higher_is_better

    @greater_is_better.setter
    def greater_is_better(self, value):
        self.higher_is_better = value

    @property
    def reads_results(self):
        """True when this metric only names a value of a trainer's evaluation results.

        Decided by the class (no ``update`` of its own), not by whether a name was given: a
        subclass that computes itself may still choose its own name.
        """
        return type(self).update is Metric.update

    def value_from(self, results, where="evaluation results"):
        """This metric's value in ``results`` (a dict such as ``trainer.evaluate()`` returns)."""
        keys = [self.name, f"eval_{self.name}"]
        key = next((k for k in keys if k in results), None)
        if key is None:
            close = difflib.get_close_matches(self.name, list(results), 1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise DataError(
                f"metric '{self.name}': expected a key of the {where}, which has "
                f"{sorted(results)}.{hint} Name one of them in Metric(name=...); a trainer "
                f"reports the values of its compute_metrics with the prefix 'eval_'.")
        value = results[key]
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"metric '{self.name}': expected a number in the {where}, got "
                            f"{key}={value!r}") from None

    def reset(self):
        self._sum = 0.0
        self._count = 0

    def update(self, preds, labels):
        # Only reached by Metric(name=...) itself (or a subclass that forgot update): it names a
        # trainer's result and has no formula to apply to predictions.
        raise DataError(
            f"metric '{self.name}': Metric(name=...) names a value of a trainer's evaluation "
            f"results; it cannot be computed from predictions. Use it with "
            f"neural_distill.integrations.transformers.NLPTrainer, or give a metric that "
            f"computes itself, e.g. neural_distill.metrics.Accuracy() or {{'topk': 1}}.")

    def __repr__(self):
        if self.reads_results:
            return f"Metric(name={self.name!r}, greater_is_better={self.higher_is_better})"
        return super().__repr__()

    def result(self):
        if self._count == 0:
            raise DataError(f"metric {self.name}: no labeled sample was seen during evaluation; "
                            f"the eval dataloader must yield (inputs, labels) batches")
        return self._sum / self._count


def _class_scores(preds, labels, what):
    preds = np.asarray(preds)
    labels = np.asarray(labels)
    if labels.ndim == preds.ndim and labels.shape == preds.shape and preds.ndim >= 2:
        labels = labels.argmax(-1)  # one-hot labels
    if preds.ndim != labels.ndim + 1:
        raise DataError(f"metric {what}: expected predictions of shape (N, classes) for labels "
                        f"of shape (N,), got predictions {preds.shape} and labels {labels.shape}")
    preds = preds.reshape(-1, preds.shape[-1])
    labels = labels.reshape(-1).astype(np.int64)
    keep = labels != IGNORE_INDEX
    return preds[keep], labels[keep]


class TopK(Metric):
    higher_is_better = True

    def __init__(self, k=1):
        self.k = k
        self.name = f"top{k}"
        super().__init__()

    def update(self, preds, labels):
        preds, labels = _class_scores(preds, labels, self.name)
        if self.k >= preds.shape[-1]:
            warn_once(self, "topk", f"metric topk: k={self.k} but the model predicts "
                      f"{preds.shape[-1]} classes, so every prediction counts as correct (score "
                      f"1.0). Use a k below {preds.shape[-1]}.")
        k = min(self.k, preds.shape[-1])
        top = np.argpartition(-preds, k - 1, axis=-1)[:, :k]
        self._sum += float((top == labels[:, None]).any(axis=-1).sum())
        self._count += labels.shape[0]


class Accuracy(TopK):
    def __init__(self):
        super().__init__(1)
        self.name = "Accuracy"


class Loss(Metric):
    """Mean cross-entropy of the predictions (logits) against the labels."""

    name = "Loss"
    higher_is_better = False

    def update(self, preds, labels):
        preds, labels = _class_scores(preds, labels, self.name)
        preds = preds.astype(np.float64)
        shifted = preds - preds.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        self._sum += float(-log_probs[np.arange(labels.shape[0]), labels].sum())
        self._count += labels.shape[0]


class _Regression(Metric):
    higher_is_better = False

    def __init__(self, compare_label=True):
        super().__init__()

    def update(self, preds, labels):
        preds = np.asarray(preds, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        if preds.size != labels.size:
            raise DataError(f"metric {self.name}: predictions {preds.shape} and labels "
                            f"{labels.shape} hold different numbers of values")
        self._accumulate(preds.reshape(-1) - labels.reshape(-1))

    def _accumulate(self, diff):
        self._sum += float((diff ** 2).sum())
        self._count += diff.size


class MSE(_Regression):
    name = "MSE"


class RMSE(_Regression):
    name = "RMSE"

    def result(self):
        return float(np.sqrt(super().result()))


class MAE(_Regression):
    name = "MAE"

    def _accumulate(self, diff):
        self._sum += float(np.abs(diff).sum())
        self._count += diff.size


class F1(Metric):
    name = "F1"
    higher_is_better = True

    def __init__(self, average="macro"):
        self.average = average
        super().__init__()

    def reset(self):
        self._preds, self._labels = [], []

    def update(self, preds, labels):
        preds, labels = _class_scores(preds, labels, self.name)
        self._preds.append(preds.argmax(-1))
        self._labels.append(labels)

    def result(self):
        if not self._labels:
            return super().result()  # raises the "no labeled sample" error
        pred = np.concatenate(self._preds)
        true = np.concatenate(self._labels)
        if self.average == "micro":
            return float((pred == true).mean())  # micro F1 equals accuracy for single-label
        classes = [1] if self.average == "binary" else np.union1d(pred, true)
        scores = []
        for c in classes:
            tp = np.sum((pred == c) & (true == c))
            fp = np.sum((pred == c) & (true != c))
            fn = np.sum((pred != c) & (true == c))
            denom = 2 * tp + fp + fn
            scores.append(2 * tp / denom if denom else 0.0)
        return float(np.mean(scores))


METRICS = {"topk": TopK, "Accuracy": Accuracy, "Loss": Loss, "MSE": MSE, "RMSE": RMSE,
           "MAE": MAE, "F1": F1}


def build_metric(metric_config):
    """A Metric from a validated config section like ``{"topk": 1}`` or ``{"F1": {...}}``."""
    (name, params), = metric_config.items()
    if name not in METRICS:
        raise ConfigError(f"evaluation.accuracy.metric: unknown metric '{name}'. Expected one of "
                          f"{{{', '.join(METRICS)}}}")
    if name == "topk":
        return TopK(int(params))
    return METRICS[name](**(params or {}))
