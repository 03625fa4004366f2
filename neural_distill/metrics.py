"""Evaluation metrics, computed on NumPy arrays so every framework shares one implementation.

Names follow the experiment files users bring: ``topk``, ``Accuracy``, ``Loss``, ``MSE``,
``RMSE``, ``MAE``, ``F1``. Labels equal to -100 mark unlabeled samples and are skipped.
"""

import numpy as np

from .errors import ConfigError, DataError

IGNORE_INDEX = -100


class Metric:
    """Accumulates predictions batch by batch; ``result()`` gives one float."""

    name = "metric"
    higher_is_better = True

    def __init__(self):
        self.reset()

    def reset(self):
        self._sum = 0.0
        self._count = 0

    def update(self, preds, labels):  # pragma: no cover - interface
        raise NotImplementedError

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
