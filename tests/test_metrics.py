"""Metrics against values computed by hand or with plain NumPy, batch by batch."""

import numpy as np
import pytest

from neural_distill import ConfigError, DataError
from neural_distill.metrics import F1, MAE, MSE, RMSE, Accuracy, Loss, TopK, build_metric

LOGITS = np.array([[2.0, 1.0, 0.0],
                   [0.0, 3.0, 1.0],
                   [1.0, 0.0, 2.0],
                   [0.0, 2.0, 1.0]])
LABELS = np.array([0, 2, 2, 0])


def feed(metric, preds, labels, batch=2):
    metric.reset()
    for start in range(0, len(preds), batch):
        metric.update(preds[start:start + batch], labels[start:start + batch])
    return metric.result()


def test_top1_and_top2():
    assert feed(TopK(1), LOGITS, LABELS) == pytest.approx(2 / 4)
    # top-2 sets: {0,1} {1,2} {2,0} {1,2}: labels 0,2,2 hit, label 0 of the last row misses
    assert feed(TopK(2), LOGITS, LABELS) == pytest.approx(3 / 4)
    assert feed(Accuracy(), LOGITS, LABELS) == pytest.approx(2 / 4)


def test_unlabeled_samples_are_skipped_and_one_hot_labels_work():
    labels = np.array([0, -100, 2, -100])
    assert feed(Accuracy(), LOGITS, labels) == pytest.approx(1.0)
    one_hot = np.eye(3)[LABELS]
    assert feed(Accuracy(), LOGITS, one_hot) == pytest.approx(0.5)


def test_loss_is_mean_cross_entropy():
    shifted = LOGITS - LOGITS.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    want = -log_probs[np.arange(4), LABELS].mean()
    assert feed(Loss(), LOGITS, LABELS) == pytest.approx(want)
    assert not Loss.higher_is_better


def test_regression_metrics():
    preds = np.array([1.0, 2.0, 4.0, 0.5])
    target = np.array([1.5, 2.0, 2.0, 0.0])
    diff = preds - target
    assert feed(MSE(), preds, target) == pytest.approx((diff ** 2).mean())
    assert feed(RMSE(), preds, target) == pytest.approx(np.sqrt((diff ** 2).mean()))
    assert feed(MAE(), preds, target) == pytest.approx(np.abs(diff).mean())


def test_f1_macro_micro_binary():
    pred = LOGITS.argmax(1)  # [0, 1, 2, 1]
    # per class: 0: tp1 fp0 fn1 -> 2/3 ; 1: tp0 fp2 fn0 -> 0 ; 2: tp1 fp0 fn1 -> 2/3
    assert feed(F1("macro"), LOGITS, LABELS) == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)
    assert feed(F1("micro"), LOGITS, LABELS) == pytest.approx((pred == LABELS).mean())
    binary_logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    # class 1: tp 2, fp 1, fn 1 -> 2*2 / (4 + 1 + 1)
    assert feed(F1("binary"), binary_logits, np.array([1, 1, 0, 1])) == pytest.approx(4 / 6)


def test_build_metric_from_config_sections():
    assert isinstance(build_metric({"topk": 5}), TopK) and build_metric({"topk": 5}).k == 5
    assert isinstance(build_metric({"F1": {"average": "micro"}}), F1)
    assert isinstance(build_metric({"Accuracy": None}), Accuracy)
    with pytest.raises(ConfigError, match="unknown metric 'AUC'"):
        build_metric({"AUC": None})


def test_no_labeled_sample_is_a_clear_error():
    metric = Accuracy()
    metric.update(LOGITS, np.full(4, -100))
    with pytest.raises(DataError, match="no labeled sample"):
        metric.result()


def test_prediction_and_label_shapes_that_disagree():
    with pytest.raises(DataError, match=r"predictions \(4, 3\) and labels \(4, 2\)"):
        Accuracy().update(LOGITS, np.zeros((4, 2)))
