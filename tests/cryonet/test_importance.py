"""Permutation channel importance against independent references (NumPy / scikit-learn)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, jaccard_score, recall_score

from cryonet.permutation import (
    metrics_from_confusion,
    permutation_importance,
    plot_importance,
    shuffle_band,
    shuffle_rng,
)
from glacierstack.classes import CLASS_NAMES

BANDS = ("B03", "B08", "coherence", "slope")
RELEVANT = 2  # the only band the toy model looks at


def _toy_model() -> torch.nn.Module:
    """1x1 conv: class 1 where x[2] > 0.5, class 2 where x[2] < -0.5, else class 0."""
    conv = torch.nn.Conv2d(len(BANDS), 5, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.0, -0.5, -0.5, -10.0, -10.0]))
        conv.weight[1, RELEVANT] = 1.0
        conv.weight[2, RELEVANT] = -1.0
    return conv


def _numpy_rule(x: np.ndarray) -> np.ndarray:
    """The toy model's decision, written independently in NumPy."""
    b = x[:, RELEVANT]
    return np.where(b > 0.5, 1, np.where(b < -0.5, 2, 0))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    n, h, w = 8, 16, 16
    yy, xx = np.mgrid[0:h, 0:w]
    x = rng.normal(0, 0.3, (n, len(BANDS), h, w)).astype(np.float32)
    for i in range(n):  # spatially structured relevant band, different per sample
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        x[i, RELEVANT] = 1.5 * np.cos((xx - cx) / 3.0) * np.sin((yy - cy) / 4.0)
    y = _numpy_rule(x).astype(np.uint8)
    y[:, :2, :] = 255  # nodata rows, ignored by the metrics
    return x, y


def test_metrics_from_confusion_hand_computed():
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 0]])
    m = metrics_from_confusion(cm, ("a", "b", "c"))
    assert m["accuracy"] == pytest.approx(8 / 12)
    assert m["iou_a"] == pytest.approx(5 / (6 + 7 - 5))
    assert m["iou_b"] == pytest.approx(3 / (6 + 4 - 3))
    assert m["iou_c"] == pytest.approx(0.0)  # predicted once, never present: union 1, TP 0
    assert m["miou"] == pytest.approx(np.mean([5 / 8, 3 / 7, 0.0]))
    assert m["acc_b"] == pytest.approx(3 / 6)
    assert np.isnan(m["acc_c"])
    cm2 = np.array([[4, 0], [0, 0]])
    m2 = metrics_from_confusion(cm2, ("a", "b"))
    assert np.isnan(m2["iou_b"]) and m2["miou"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 classes"):
        metrics_from_confusion(np.eye(2), ("a", "b", "c"))


def test_shuffle_band_samples_is_a_derangement(data):
    x, _ = data
    xs = shuffle_band(x, 1, np.random.default_rng(0))
    others = [b for b in range(x.shape[1]) if b != 1]
    np.testing.assert_array_equal(xs[:, others], x[:, others])
    np.testing.assert_array_equal(np.sort(xs[:, 1].ravel()), np.sort(x[:, 1].ravel()))
    for i in range(len(x)):  # each sample got another sample's band, never its own
        matches = [j for j in range(len(x)) if np.array_equal(xs[i, 1], x[j, 1])]
        assert matches and i not in matches
    assert x is not xs


def test_shuffle_band_pixels_respects_valid_mask(data):
    x, y = data
    valid = y != 255
    xs = shuffle_band(x, 0, np.random.default_rng(1), mode="pixels", valid=valid)
    np.testing.assert_array_equal(xs[:, 0][~valid], x[:, 0][~valid])
    np.testing.assert_array_equal(np.sort(xs[:, 0][valid]), np.sort(x[:, 0][valid]))
    assert not np.array_equal(xs[:, 0], x[:, 0])
    with pytest.raises(ValueError, match="at least 2"):
        shuffle_band(x[:1], 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="out of range"):
        shuffle_band(x, 9, np.random.default_rng(0))


def test_importance_matches_sklearn_reference(data):
    x, y = data
    res = permutation_importance(
        _toy_model(), x, y, bands=BANDS, repeats=3, seed=7, batch_size=3, progress=False
    )
    assert res.baseline["accuracy"] == pytest.approx(1.0)
    assert res.baseline["miou"] == pytest.approx(1.0)
    valid = y != 255
    for r in range(3):
        xs = shuffle_band(x, RELEVANT, shuffle_rng(7, r, RELEVANT), valid=valid)
        pred = _numpy_rule(xs)
        t, p = y[valid], pred[valid]
        acc = accuracy_score(t, p)
        iou = jaccard_score(t, p, labels=[0, 1, 2], average=None, zero_division=0)
        rec = recall_score(t, p, labels=[0, 1, 2], average=None, zero_division=0)
        assert res.drops["accuracy"][r, RELEVANT] == pytest.approx(1.0 - acc)
        assert res.drops["miou"][r, RELEVANT] == pytest.approx(1.0 - iou.mean())
        assert res.drops["iou_debris"][r, RELEVANT] == pytest.approx(1.0 - iou[2])
        assert res.drops["acc_clean_ice"][r, RELEVANT] == pytest.approx(1.0 - rec[1])
    irrelevant = [b for b in range(len(BANDS)) if b != RELEVANT]
    for key in ("miou", "accuracy", "iou_clean_ice", "iou_debris"):
        np.testing.assert_array_equal(res.drops[key][:, irrelevant], 0.0)
        assert res.drops[key][:, RELEVANT].mean() > 0.05
    assert res.ranking("miou")[0] == "coherence"
    tab = res.table()
    assert tab.index[0] == "coherence"
    assert tab.loc["coherence", "miou_drop_std"] == pytest.approx(
        np.std(res.drops["miou"][:, RELEVANT], ddof=1)
    )
    assert tab.loc["coherence", "miou_drop_std"] > 0  # repeats differ: a real spread


def test_importance_is_order_independent_and_seeded(data):
    x, y = data
    a = permutation_importance(_toy_model(), x, y, bands=BANDS, repeats=2, seed=3, progress=False)
    b = permutation_importance(
        _toy_model(), x, y, bands=BANDS, repeats=2, seed=3, batch_size=1, progress=False
    )
    c = permutation_importance(_toy_model(), x, y, bands=BANDS, repeats=2, seed=4, progress=False)
    np.testing.assert_array_equal(a.drops["miou"], b.drops["miou"])
    assert not np.array_equal(a.drops["miou"], c.drops["miou"])


def test_importance_outputs_csv_and_figure(data, tmp_path):
    x, y = data
    res = permutation_importance(_toy_model(), x, y, bands=BANDS, repeats=2, progress=False)
    csv = res.to_csv(tmp_path / "importance.csv")
    df = pd.read_csv(csv, index_col="band")
    assert list(df.index)[0] == "coherence"
    assert set(df.index) == set(BANDS)
    for k in ("miou", "accuracy", "iou_clean_ice", "iou_debris", "acc_debris"):
        assert f"{k}_drop_mean" in df and f"{k}_drop_std" in df
    assert (tmp_path / "importance.json").exists()
    png = plot_importance(res, tmp_path / "importance.png", top=15)
    assert png.stat().st_size > 5000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importance_rejects_bad_inputs(data):
    x, y = data
    with pytest.raises(ValueError, match="band names"):
        permutation_importance(_toy_model(), x, y, bands=BANDS[:2], progress=False)
    with pytest.raises(ValueError, match="needs >= 2"):
        permutation_importance(_toy_model(), x[:1], y[:1], bands=BANDS, progress=False)
    assert len(CLASS_NAMES) == 5
