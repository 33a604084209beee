"""Importance from a checkpoint + Zarr cube: the right patches, the checkpoint's normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.metrics import jaccard_score

from cryonet.checkpoint import save_checkpoint
from cryonet.data import CubeSource, PatchSplit, SplitConfig, make_split
from cryonet.models import create_model
from cryonet.permutation import importance_from_checkpoint, load_test_patches
from glacierstack.grid import Grid
from glacierstack.store import open_cube, write_cube

BANDS = ["B04", "B08", "coherence"]
PATCH = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("imp")
    rng = np.random.default_rng(5)
    grid = Grid("EPSG:32645", (400000.0, 3100000.0, 401280.0, 3101280.0), 10.0)
    h, w = grid.shape
    f = rng.normal(size=(3, h, w)).astype(np.float32)
    labels = np.where(f[2] > 0.3, 1, np.where(f[2] < -0.8, 2, 0)).astype(np.uint8)
    labels[:, :2] = 255
    feats = xr.DataArray(f, dims=("band", "y", "x"), coords={"band": BANDS, **grid.coords()})
    labs = xr.DataArray(labels, dims=("y", "x"), coords=grid.coords())
    cube = write_cube(feats, labs, d / "c.zarr", grid=grid, chunk_size=64, progress=False)
    torch.manual_seed(1)
    model = create_model("unet-tiny", 3, 5)
    mean, std = [0.5, -0.5, 0.2], [2.0, 0.5, 1.0]
    ckpt = save_checkpoint(d / "m.pt", model, bands=BANDS, mean=mean, std=std)
    split = make_split(CubeSource(cube), SplitConfig(patch_size=PATCH, val_fraction=0.0, seed=3))
    (d / "run").mkdir()
    split.to_json(d / "run" / "split.json")
    yield d, cube, ckpt, model, np.array(mean), np.array(std)
    torch.set_num_threads(n)


def test_load_test_patches_uses_given_statistics(setup):
    d, cube, _, _, mean, std = setup
    split = PatchSplit.from_json(d / "run" / "split.json")
    win = split.subset("test")
    x, y = load_test_patches(cube, win, PATCH, mean=mean, std=std)
    ds = open_cube(cube)
    raw = ds["features"].values
    y0, x0 = win[0]
    ref = (raw[:, y0 : y0 + PATCH, x0 : x0 + PATCH] - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(x[0], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y[0], ds["labels"].values[y0 : y0 + PATCH, x0 : x0 + PATCH])


def test_importance_from_checkpoint_baseline_and_files(setup, tmp_path):
    d, cube, ckpt, model, mean, std = setup
    res = importance_from_checkpoint(
        ckpt, cube, tmp_path, split=d / "run", repeats=2, progress=False, max_samples=2
    )
    assert res.n_samples == 2 and res.bands == tuple(BANDS)
    wins = np.asarray(res.meta["windows"])
    test = {tuple(w) for w in PatchSplit.from_json(d / "run" / "split.json").subset("test")}
    assert {tuple(w) for w in wins} <= test  # only never-trained-on patches
    # independent baseline: NumPy normalisation, model forward, scikit-learn IoU
    raw = open_cube(cube)["features"].values
    lab = open_cube(cube)["labels"].values
    ts, ps = [], []
    model.eval()
    for y0, x0 in wins:
        xin = (raw[:, y0 : y0 + PATCH, x0 : x0 + PATCH] - mean[:, None, None]) / std[:, None, None]
        with torch.no_grad():
            p = model(torch.from_numpy(xin.astype(np.float32))[None]).argmax(1)[0].numpy()
        t = lab[y0 : y0 + PATCH, x0 : x0 + PATCH]
        ts.append(t[t != 255])
        ps.append(p[t != 255])
    t, p = np.concatenate(ts), np.concatenate(ps)
    present = sorted(set(t) | set(p))
    iou = jaccard_score(t, p, labels=present, average=None, zero_division=0)
    assert res.baseline["miou"] == pytest.approx(iou.mean())
    assert res.baseline["accuracy"] == pytest.approx((t == p).mean())
    assert (tmp_path / "importance.csv").exists() and (tmp_path / "importance.png").exists()


def test_importance_from_checkpoint_rejects_other_cube(setup, tmp_path):
    d, cube, ckpt, *_ = setup
    other = PatchSplit.from_json(d / "run" / "split.json")
    bad = PatchSplit(
        other.patch_size, other.windows, other.train, other.val, other.test, (10, 10), {}
    )
    bad.to_json(tmp_path / "split.json")
    with pytest.raises(ValueError, match="split was made for"):
        importance_from_checkpoint(ckpt, cube, split=tmp_path / "split.json", progress=False)
