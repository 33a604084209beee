"""Transfer (evaluate -> fine-tune -> evaluate) on tiny in-test cubes, against sklearn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from sklearn.metrics import confusion_matrix as sk_confusion

from cryonet.checkpoint import load_model, save_checkpoint
from cryonet.data import PatchSplit
from cryonet.models import create_model
from cryonet.transfer import FinetuneConfig, finetune, transfer_table
from glacierstack.grid import Grid
from glacierstack.store import open_cube, write_cube

BANDS = ["B08", "NDWI", "coherence", "slope"]
PATCH = 32


def _smooth(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.normal(size=shape), scale) * scale


def _write_tiny_cube(path, seed: int, shift: float = 0.0, bands=BANDS):
    """A 128x128 px cube whose labels follow simple rules on two bands."""
    rng = np.random.default_rng(seed)
    grid = Grid("EPSG:32632", (300000.0, 5000000.0, 301280.0, 5001280.0), 10.0)
    h, w = grid.shape
    f = np.stack([_smooth(rng, (h, w), 4.0) for _ in bands]).astype(np.float32)
    f[0] += shift  # a regional offset in one band
    coh, wet = f[2], f[1]
    labels = np.zeros((h, w), np.uint8)
    labels[coh < -0.3] = 1
    labels[(coh < -0.3) & (f[3] > 0.4)] = 2
    labels[wet > 0.8] = 3
    labels[(coh > 0.6) & (wet < 0.0)] = 4
    labels[:3, :] = 255
    f[:, :3, :] = np.nan
    feats = xr.DataArray(f, dims=("band", "y", "x"), coords={"band": list(bands), **grid.coords()})
    labs = xr.DataArray(labels, dims=("y", "x"), coords=grid.coords())
    return write_cube(feats, labs, path, grid=grid, chunk_size=64, progress=False)


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    d = tmp_path_factory.mktemp("transfer")
    source = _write_tiny_cube(d / "source.zarr", seed=1)
    target = _write_tiny_cube(d / "target.zarr", seed=2, shift=0.5)
    torch.manual_seed(0)
    model = create_model("unet-tiny", len(BANDS), 5)
    # stats deliberately unlike the target cube's, so the choice of normalisation shows
    ckpt = save_checkpoint(
        d / "source.pt", model, bands=BANDS, mean=[0.1, -0.2, 0.0, 0.3], std=[0.5, 2.0, 1.0, 1.5]
    )
    return d, source, target, ckpt


def _manual_metrics(ckpt, cube, windows, patch):
    """Evaluate a checkpoint on windows with NumPy normalisation + sklearn confusion matrix."""
    model, meta = load_model(ckpt)
    ds = open_cube(cube)
    feats = ds["features"].values
    labels = ds["labels"].values
    mean = np.asarray(meta["mean"])[:, None, None]
    std = np.asarray(meta["std"])[:, None, None]
    ys, ps = [], []
    for y0, x0 in windows:
        x = (feats[:, y0 : y0 + patch, x0 : x0 + patch] - mean) / std
        x = np.nan_to_num(x, nan=0.0).astype(np.float32)
        with torch.no_grad():
            p = model(torch.from_numpy(x)[None]).argmax(1)[0].numpy()
        ys.append(labels[y0 : y0 + patch, x0 : x0 + patch].ravel())
        ps.append(p.ravel())
    y, p = np.concatenate(ys), np.concatenate(ps)
    keep = y != 255
    cm = sk_confusion(y[keep], p[keep], labels=list(range(5)))
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return iou, tp.sum() / cm.sum()


def test_finetune_before_after_against_manual_evaluation(cubes, tmp_path):
    _, _, target, ckpt = cubes
    cfg = FinetuneConfig(iterations=25, patch_size=PATCH, lr=3e-3, batch_size=8)
    res = finetune(ckpt, target, tmp_path, cfg, progress=False)
    split = PatchSplit.from_json(tmp_path / "split.json")
    test_windows = split.subset("test")
    assert res.n_test == len(test_windows) >= 2 and res.n_train == len(split.subset("train"))
    assert not set(map(tuple, split.subset("train"))) & set(map(tuple, test_windows))

    iou, oa = _manual_metrics(ckpt, target, test_windows, PATCH)
    np.testing.assert_allclose(res.before.iou, iou, equal_nan=True)
    assert res.before.overall_accuracy == pytest.approx(oa)

    assert res.checkpoint is not None and res.checkpoint.exists()
    iou2, oa2 = _manual_metrics(res.checkpoint, target, test_windows, PATCH)
    np.testing.assert_allclose(res.after.iou, iou2, equal_nan=True)
    assert res.after.overall_accuracy == pytest.approx(oa2)

    assert len(res.losses) == 25
    assert np.mean(res.losses[-8:]) < np.mean(res.losses[:8])
    assert res.after.miou > res.before.miou
    _, meta = load_model(res.checkpoint)
    assert meta["mean"] == pytest.approx([0.1, -0.2, 0.0, 0.3])  # checkpoint stats kept
    assert meta["extra"]["finetuned_from"] == str(ckpt)

    df = pd.read_csv(tmp_path / "transfer_metrics.csv", index_col="class")
    assert df.loc["mean", "IoU before"] == pytest.approx(res.before.miou, abs=1e-6)
    assert df.loc["mean", "IoU after"] == pytest.approx(res.after.miou, abs=1e-6)
    assert df.loc["overall accuracy", "IoU after"] == pytest.approx(oa2, abs=1e-6)
    md = (tmp_path / "transfer_metrics.md").read_text()
    assert "| mean |" in md and "IoU before" in md
    summary = json.loads((tmp_path / "transfer.json").read_text())
    assert summary["n_test"] == res.n_test and summary["config"]["iterations"] == 25
    assert len((tmp_path / "finetune_log.csv").read_text().splitlines()) == 26


def test_finetune_zero_iterations_and_target_normalisation(cubes, tmp_path):
    _, _, target, ckpt = cubes
    cfg = FinetuneConfig(iterations=0, patch_size=PATCH, normalization="target")
    res = finetune(ckpt, target, tmp_path, cfg, progress=False)
    assert res.checkpoint is None and res.losses == ()
    assert res.after is res.before  # nothing trained: the same evaluation is reported twice
    assert not (tmp_path / "finetuned.pt").exists()
    # target normalisation differs from checkpoint normalisation -> (generally) other metrics
    cfg = FinetuneConfig(iterations=0, patch_size=PATCH)
    res_ck = finetune(ckpt, target, tmp_path / "ck", cfg, progress=False)
    assert not np.allclose(res.before.confusion, res_ck.before.confusion)
    # the before/after table of two different evaluations: rows in class-id order, Δ per class
    tab = transfer_table(res_ck.before, res.before)
    assert list(tab.index[:5]) == ["background", "clean_ice", "debris", "water", "vegetation"]
    delta = np.asarray(res.before.iou) - np.asarray(res_ck.before.iou)
    np.testing.assert_allclose(tab["Δ IoU"].to_numpy()[:5], delta, equal_nan=True)
    assert np.nanmax(np.abs(delta)) > 0


def test_finetune_freeze_encoder_keeps_encoder(cubes, tmp_path):
    _, _, target, ckpt = cubes
    cfg = FinetuneConfig(iterations=3, patch_size=PATCH, freeze_encoder=True)
    res = finetune(ckpt, target, tmp_path, cfg, progress=False)
    m0, _ = load_model(ckpt)
    m1, _ = load_model(res.checkpoint)
    for (k, a), b in zip(
        m0.encoder.state_dict().items(), m1.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k
    dec0 = [p for n, p in m0.named_parameters() if not n.startswith("encoder.")]
    dec1 = [p for n, p in m1.named_parameters() if not n.startswith("encoder.")]
    assert any(not torch.equal(a, b) for a, b in zip(dec0, dec1, strict=True))


def test_finetune_rejects_other_bands(cubes, tmp_path):
    d, _, _, ckpt = cubes
    other = _write_tiny_cube(d / "other.zarr", seed=3, bands=["B08", "NDWI", "lst", "slope"])
    with pytest.raises(ValueError, match="coherence"):
        finetune(ckpt, other, tmp_path, FinetuneConfig(iterations=1, patch_size=PATCH))
    with pytest.raises(ValueError, match="iterations"):
        FinetuneConfig(iterations=-1)
