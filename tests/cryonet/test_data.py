"""Patch windows, splits, normalisation, augmentation, sampling and class weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.utils.class_weight import compute_class_weight

from cryonet.data import (
    CubeSource,
    PatchDataset,
    PatchSampler,
    PatchSplit,
    SplitConfig,
    batch_loader,
    class_counts,
    class_weights,
    make_split,
    patch_windows,
)
from cryonet.testing import write_toy_cube
from glacierstack.store import open_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return write_toy_cube(tmp_path_factory.mktemp("cube") / "toy.zarr", (200, 168), 3, chunks=64)


def test_toy_cube_is_a_contract_cube(cube):
    ds = open_cube(cube)
    assert ds["features"].dims == ("band", "y", "x") and ds["features"].dtype == np.float32
    assert ds.attrs["complete"] is True
    src = CubeSource(cube)
    assert src.labels.dtype == np.uint8 and set(np.unique(src.labels)) <= {0, 1, 2, 3, 4, 255}


def test_windows_match_manual_grid():
    labels = xr.DataArray(np.zeros((100, 70), np.uint8), dims=("y", "x"))
    w = patch_windows(labels, 32, overlap=8)
    ys, xs = range(0, 100 - 32 + 1, 24), range(0, 70 - 32 + 1, 24)
    expected = {(y, x) for y in ys for x in xs}
    assert {tuple(v) for v in w.tolist()} == expected


def test_memory_and_zarr_reads_equal_direct_zarr_slicing(cube):
    mem, lazy = CubeSource(cube, cache="memory"), CubeSource(cube, cache="zarr", chunk_cache=2)
    assert mem.mode == "memory" and lazy.mode == "zarr"
    ref = open_cube(cube)["features"].values
    for y0, x0 in [(0, 0), (50, 30), (63, 63), (136, 104), (100, 0)]:
        expect = ref[:, y0 : y0 + 64, x0 : x0 + 64]
        np.testing.assert_array_equal(mem.read_features(y0, x0, 64), expect)
        np.testing.assert_array_equal(lazy.read_features(y0, x0, 64), expect)


def test_normalisation_and_nodata(cube):
    src = CubeSource(cube)
    ds = open_cube(cube)
    mean, std = ds["band_mean"].values, ds["band_std"].values
    dset = PatchDataset(src, np.array([[0, 16]]), 32)
    x, y = dset[0]
    raw = ds["features"].values[:, 0:32, 16:48]
    expect = (raw - mean[:, None, None]) / std[:, None, None]
    expect = np.where(np.isnan(expect), 0.0, expect)
    np.testing.assert_allclose(x.numpy(), expect, rtol=1e-5, atol=1e-5)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert (y[:8] == 255).all()  # the toy cube's top rows are nodata


@pytest.mark.parametrize("code", range(8))
def test_augmentation_is_a_dihedral_transform_of_features_and_labels(cube, code):
    src = CubeSource(cube)
    dset = PatchDataset(src, np.array([[40, 40]]), 32)
    x0, y0 = dset[0]
    x, y = dset[(0, code)]
    ref_x, ref_y = torch.rot90(x0, code % 4, (-2, -1)), torch.rot90(y0, code % 4, (-2, -1))
    if code >= 4:
        ref_x, ref_y = ref_x.flip(-1), ref_y.flip(-1)
    assert torch.equal(x, ref_x) and torch.equal(y, ref_y)


def test_random_split_is_disjoint_seeded_and_sized(cube):
    src = CubeSource(cube)
    cfg = SplitConfig(patch_size=32, test_fraction=0.2, val_fraction=0.1, seed=4)
    a, b = make_split(src, cfg), make_split(src, cfg)
    c = make_split(src, SplitConfig(patch_size=32, seed=5))
    n = len(a.windows)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)
    parts = np.concatenate([a.train, a.val, a.test])
    assert len(np.unique(parts)) == len(parts) == n
    assert len(a.test) == round(0.2 * n) and len(a.val) == round(0.1 * n)


def _pixels(windows, size):
    return {(int(y + i), int(x + j)) for y, x in windows for i in range(size) for j in range(size)}


@pytest.mark.parametrize("method", ["random", "blocked"])
def test_no_pixel_in_two_subsets_with_overlapping_windows(cube, method):
    src = CubeSource(cube)
    cfg = SplitConfig(patch_size=32, overlap=16, method=method, block_size=64, seed=1)
    sp = make_split(src, cfg)
    tr, va, te = (_pixels(sp.subset(k), 32) for k in ("train", "val", "test"))
    assert not (tr & te) and not (tr & va) and not (va & te)
    assert len(sp.train) > 0 and len(sp.test) > 0


def test_blocked_split_assigns_whole_blocks(cube):
    src = CubeSource(cube)
    sp = make_split(src, SplitConfig(patch_size=32, method="blocked", block_size=64, seed=2))
    block = lambda w: tuple((w + 16) // 64)  # noqa: E731
    test_blocks = {block(w) for w in sp.subset("test")}
    assert not test_blocks & {block(w) for w in sp.subset("train")}


def test_windows_without_labels_are_dropped(cube):
    src = CubeSource(cube)
    sp = make_split(src, SplitConfig(patch_size=8, min_valid_fraction=0.5))
    assert sp.windows[:, 0].min() >= 8  # rows 0..7 are nodata


def test_split_json_roundtrip(cube, tmp_path):
    src = CubeSource(cube)
    sp = make_split(src, SplitConfig(patch_size=32))
    sp.to_json(tmp_path / "split.json")
    back = PatchSplit.from_json(tmp_path / "split.json")
    for k in ("windows", "train", "val", "test"):
        assert np.array_equal(getattr(sp, k), getattr(back, k))
    assert json.loads((tmp_path / "split.json").read_text())["config"]["patch_size"] == 32
    other = write_toy_cube(tmp_path / "other.zarr", (96, 96), 3)
    with pytest.raises(ValueError, match="split was made for"):
        back.check_cube(CubeSource(other))


def test_class_weights_match_sklearn_balanced(cube):
    src = CubeSource(cube)
    sp = make_split(src, SplitConfig(patch_size=32))
    counts = class_counts(src, sp.subset("train"), 32)
    labels = np.concatenate([src.read_labels(y, x, 32).ravel() for y, x in sp.subset("train")])
    labels = labels[labels != 255]
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=5))
    present = np.unique(labels)
    ref = compute_class_weight("balanced", classes=present, y=labels)
    np.testing.assert_allclose(class_weights(counts, "inverse")[present], ref, rtol=1e-6)
    np.testing.assert_allclose(class_weights(counts, "sqrt_inverse")[present], np.sqrt(ref), 1e-6)
    freq = counts / counts.sum()
    np.testing.assert_allclose(class_weights(counts, "median"), np.median(freq) / freq, 1e-6)
    assert class_weights(np.array([5, 0, 5]), "inverse")[1] == 0.0


def test_sampler_is_deterministic_resumable_and_sharded():
    s = PatchSampler(23, seed=3, augment=True)
    s.set_epoch(2)
    full = list(s)
    assert sorted(i for i, _ in full) == list(range(23))
    assert all(0 <= c < 8 for _, c in full)
    s.set_epoch(2)
    s.set_start(7)
    assert list(s) == full[7:] and len(s) == 16
    s.set_epoch(3)
    assert [i for i, _ in s] != [i for i, _ in full]
    shards = [list(PatchSampler(23, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert [len(sh) for sh in shards] == [11, 11]  # equal shards for training
    assert not set(shards[0]) & set(shards[1])
    ev = [
        list(PatchSampler(23, shuffle=False, rank=r, world_size=2, equal_shards=False))
        for r in (0, 1)
    ]
    assert sorted(ev[0] + ev[1]) == list(range(23))


def test_sampler_repeats_are_whole_passes():
    one = PatchSampler(23, seed=3, augment=True)
    one.set_epoch(2)
    s = PatchSampler(23, seed=3, augment=True, repeats=3)
    s.set_epoch(2)
    items = list(s)
    assert len(items) == len(s) == 69
    assert items[:23] != list(one)  # codes are drawn after all three orders
    for k in range(3):  # every pass holds every patch once
        assert sorted(i for i, _ in items[23 * k : 23 * (k + 1)]) == list(range(23))
    assert [i for i, _ in items[:23]] == [i for i, _ in one]  # first pass = the plain order
    s.set_epoch(2)
    s.set_start(30)
    assert list(s) == items[30:]
    shards = [list(PatchSampler(23, seed=3, repeats=2, rank=r, world_size=2)) for r in (0, 1)]
    assert [len(sh) for sh in shards] == [23, 23]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        PatchSampler(23, repeats=0)


def test_batch_loader_equals_plain_dataloader_with_and_without_workers(cube):
    src = CubeSource(cube, cache="zarr")
    sp = make_split(src, SplitConfig(patch_size=32))
    ds = PatchDataset(src, sp.subset("train"), 32)

    def sampler():
        return PatchSampler(len(ds), seed=0, augment=True)

    plain = list(torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler()))
    for workers in (0, 2):
        fast = list(batch_loader(ds, sampler(), 4, num_workers=workers))
        assert len(fast) == len(plain)
        for (xa, ya), (xb, yb) in zip(plain, fast, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_errors_name_the_problem(cube, tmp_path):
    src = CubeSource(cube)
    with pytest.raises(ValueError, match="larger than the cube"):
        make_split(src, SplitConfig(patch_size=512))
    with pytest.raises(ValueError, match="test_fraction"):
        make_split(src, SplitConfig(test_fraction=1.0))
    # test_fraction 0 is accepted: no test patches (e.g. a separate test area scored later)
    no_test = make_split(src, SplitConfig(patch_size=16, test_fraction=0.0, val_fraction=0.2))
    assert len(no_test.test) == 0 and len(no_test.train) > 0 and len(no_test.val) > 0
    with pytest.raises(FileNotFoundError):
        CubeSource(tmp_path / "missing.zarr")
