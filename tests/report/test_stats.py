"""The report's figures against values computed by hand."""

import math

import numpy as np
import pytest

from neural_distill.report import stats


def test_agreement_counts_equal_top1_classes():
    teacher = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0]])
    student = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 9.0], [0.0, 1.0, 0.0]])
    assert stats.agreement(teacher, student) == 0.75


def test_mean_kl_of_probability_rows():
    teacher = np.array([[0.5, 0.5], [1.0, 0.0]])
    student = np.array([[0.25, 0.75], [0.5, 0.5]])
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75), then 1 * ln(1/0.5) (0 ln 0 = 0): mean of the two
    expected = (0.5 * math.log(2) + 0.5 * math.log(2 / 3) + math.log(2)) / 2
    assert stats.mean_kl(teacher, student) == pytest.approx(expected, abs=1e-9)


def test_logits_are_turned_into_probabilities():
    logits = np.array([[0.0, math.log(3.0)]])
    np.testing.assert_allclose(stats.probabilities(logits), [[0.25, 0.75]], atol=1e-12)
    assert stats.mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)


def test_expected_calibration_error_by_hand():
    probs = np.array([[0.95, 0.03, 0.02], [0.95, 0.03, 0.02], [0.6, 0.3, 0.1], [0.1, 0.6, 0.3]])
    labels = np.array([0, 1, 0, 1])
    # bin [0.9, 1.0): 2 samples, confidence 0.95, accuracy 0.5 -> 0.5 * 0.45
    # bin [0.6, 0.7): 2 samples, confidence 0.6, accuracy 1.0 -> 0.5 * 0.4
    assert stats.expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.425)
    counts, confidence, accuracy = stats.reliability_bins(probs, labels, bins=10)
    assert counts.tolist() == [0, 0, 0, 0, 0, 0, 2, 0, 0, 2]
    assert accuracy[9] == 0.5 and confidence[6] == pytest.approx(0.6)


def test_unlabeled_samples_are_left_out_of_calibration():
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert stats.expected_calibration_error(probs, np.array([0, -100])) == pytest.approx(0.0)
    assert math.isnan(stats.expected_calibration_error(probs, np.array([-100, -100])))
