import numpy as np
import pytest

from model.metrics import average_precision, best_threshold, dice_precision_recall, success_rate


def test_average_precision_of_a_known_ranking():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0])
    assert average_precision(scores, labels) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))


def test_average_precision_keeps_ties_together():
    assert average_precision(np.zeros(10), np.array([1] * 2 + [0] * 8)) == pytest.approx(0.2)


def test_no_positives_is_nan():
    assert np.isnan(average_precision(np.ones(3), np.zeros(3)))
    assert np.isnan(dice_precision_recall(np.ones(3), np.zeros(3), 0.5)["dice"])


def test_best_threshold_maximises_dice():
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    labels = np.array([1, 1, 0, 0])
    t = best_threshold(scores, labels)
    assert t == pytest.approx(0.8)
    assert dice_precision_recall(scores, labels, t) == {"dice": 1.0, "precision": 1.0, "recall": 1.0}


def test_success_rate():
    scores = np.arange(100, dtype=float)[::-1]
    labels = np.zeros(100)
    labels[[0, 1, 50, 99]] = 1
    sr = success_rate(scores, labels, (0.01, 0.05, 0.6))
    assert sr == {"0.01": 0.25, "0.05": 0.5, "0.6": 0.75}
    constant = success_rate(np.zeros(100), labels, (0.1, 0.2))
    assert constant == {"0.1": pytest.approx(0.1), "0.2": pytest.approx(0.2)}
