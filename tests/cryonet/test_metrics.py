"""Metrics against hand-computed confusion matrices and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import jaccard_score, precision_score, recall_score

from cryonet.metrics import ConfusionMatrix, SegmentationMetrics, confusion_matrix


def test_confusion_by_hand_ignores_255():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    cm = confusion_matrix(target, pred, 3)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    np.testing.assert_array_equal(cm, expected)


def test_metrics_hand_computed_3x3():
    # rows = reference, cols = prediction
    cm = np.array([[50, 2, 3], [5, 30, 5], [0, 10, 20]])
    m = SegmentationMetrics.from_confusion(cm, ["a", "b", "c"])
    # class a: TP 50, FP 5, FN 5 ; b: TP 30, FP 12, FN 10 ; c: TP 20, FP 8, FN 10
    np.testing.assert_allclose(m.iou, [50 / 60, 30 / 52, 20 / 38])
    np.testing.assert_allclose(m.precision, [50 / 55, 30 / 42, 20 / 28])
    np.testing.assert_allclose(m.recall, [50 / 55, 30 / 40, 20 / 30])
    assert m.miou == pytest.approx((50 / 60 + 30 / 52 + 20 / 38) / 3)
    assert m.mean_precision == pytest.approx((50 / 55 + 30 / 42 + 20 / 28) / 3)
    assert m.mean_recall == pytest.approx((50 / 55 + 30 / 40 + 20 / 30) / 3)
    assert m.overall_accuracy == pytest.approx(100 / 125)
    assert m.total_pixels == 125


def test_absent_class_is_nan_and_left_out_of_means():
    cm = np.array([[4, 1, 0], [2, 3, 0], [0, 0, 0]])
    m = SegmentationMetrics.from_confusion(cm, ["a", "b", "c"])
    assert np.isnan(m.iou[2]) and np.isnan(m.precision[2]) and np.isnan(m.recall[2])
    assert m.miou == pytest.approx((4 / 7 + 3 / 6) / 2)
    d = m.to_dict()
    assert d["iou"]["c"] is None and d["overall_accuracy"] == pytest.approx(0.7)


def test_never_predicted_class_counts_as_zero_precision():
    cm = np.array([[5, 0], [3, 0]])  # class 1 present, never predicted
    m = SegmentationMetrics.from_confusion(cm, ["a", "b"])
    assert m.precision[1] == 0.0 and m.recall[1] == 0.0 and m.iou[1] == 0.0
    assert m.mean_precision == pytest.approx((5 / 8 + 0) / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, 4000)
    p = np.where(rng.random(4000) < 0.7, t, rng.integers(0, 5, 4000))
    t_with_nodata = t.copy()
    t_with_nodata[rng.random(4000) < 0.1] = 255
    keep = t_with_nodata != 255
    cm = confusion_matrix(t_with_nodata, p, 5)
    np.testing.assert_array_equal(cm, sk_confusion(t[keep], p[keep], labels=range(5)))
    m = SegmentationMetrics.from_confusion(cm)
    kw = {"labels": list(range(5)), "average": None, "zero_division": 0}
    np.testing.assert_allclose(m.iou, jaccard_score(t[keep], p[keep], **kw))
    np.testing.assert_allclose(m.precision, precision_score(t[keep], p[keep], **kw))
    np.testing.assert_allclose(m.recall, recall_score(t[keep], p[keep], **kw))
    assert m.overall_accuracy == pytest.approx(np.mean(t[keep] == p[keep]))


def test_accumulator_over_batches_equals_one_shot():
    rng = np.random.default_rng(3)
    logits = torch.as_tensor(rng.standard_normal((6, 5, 8, 8)), dtype=torch.float32)
    target = torch.as_tensor(rng.integers(0, 5, (6, 8, 8)))
    target[0, :2] = 255
    acc = ConfusionMatrix(5)
    for i in range(0, 6, 2):
        acc.update(logits[i : i + 2], target[i : i + 2])
    ref = confusion_matrix(target.numpy(), logits.argmax(1).numpy(), 5)
    np.testing.assert_array_equal(acc.compute().confusion, ref)
    acc.reset()
    assert acc.compute().total_pixels == 0


def test_out_of_range_values_are_named():
    with pytest.raises(ValueError, match=r"\[7\]"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), 5)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros(3), np.zeros(4), 5)
