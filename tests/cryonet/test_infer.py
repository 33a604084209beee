"""Tiled inference: blending exactness, chunk invariance, resume, Zarr layout, distributed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import torch
import xarray as xr
import zarr

from cryonet.infer import (
    PROBABILITY_SCALE,
    InMemoryModel,
    LoadedModel,
    TilingOptions,
    clear_model_cache,
    model_load_count,
    open_mosaic,
    predict,
    predict_array,
    tile_starts,
)
from glacierstack.classes import NODATA_LABEL, class_table
from glacierstack.grid import Grid
from glacierstack.store import write_cube

BANDS = ("B02", "B03", "B04", "elevation")
K = 5


# ------------------------------------------------------------------------------------ fixtures
def make_cube(
    path: Path, h: int, w: int, *, seed: int = 0, chunk: int = 64, edit: Any = None
) -> Path:
    """A tiny cube in the contract layout (features, labels, band_mean/std, attrs).

    ``edit(feats)`` may change the features in place before they are written.
    """
    rng = np.random.default_rng(seed)
    grid = Grid(
        "EPSG:32645", (500_000.0, 3_100_000.0, 500_000.0 + 10 * w, 3_100_000.0 + 10 * h), 10
    )
    feats = rng.normal(size=(len(BANDS), h, w)).astype(np.float32)
    # smooth structure so a conv model sees context
    yy, xx = np.mgrid[0:h, 0:w]
    feats[0] += np.sin(yy / 7.0) + np.cos(xx / 5.0)
    if edit is not None:
        edit(feats)
    fa = xr.DataArray(feats, dims=("band", "y", "x"), coords={"band": list(BANDS), **grid.coords()})
    fa.attrs["grid"] = grid.to_attrs()
    labels = xr.DataArray(np.zeros((h, w), np.uint8), dims=("y", "x"), coords=grid.coords())
    write_cube(fa, labels, path, grid=grid, stac_items=["item-a"], chunk_size=chunk, progress=False)
    return path


class ConstantLogits(torch.nn.Module):
    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        return self.logits.view(1, -1, 1, 1).expand(n, -1, h, w).clone()


class SmallConv(torch.nn.Module):
    """Two 3x3 convs (zero padding): outputs near tile edges depend on the tile position."""

    def __init__(self, seed: int = 0, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after  # forward calls before a simulated crash (not a weight)
        g = torch.Generator().manual_seed(seed)
        self.c1 = torch.nn.Conv2d(len(BANDS), 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, K, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated interruption")
        self.calls += 1
        return self.c2(torch.relu(self.c1(x)))


def loaded(module: torch.nn.Module, mean=None, std=None) -> LoadedModel:
    return LoadedModel(
        module,
        BANDS,
        np.zeros(len(BANDS)) if mean is None else mean,
        np.ones(len(BANDS)) if std is None else std,
    )


def softmax_np(z: np.ndarray, axis: int = 0) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def naive_mosaic(feats: np.ndarray, model: LoadedModel, t: int, ov: int) -> np.ndarray:
    """Independent reference: plain loops over one global tile grid, float64 accumulators."""
    c, h, w = feats.shape
    x = (feats - model.mean[:, None, None]) / model.std[:, None, None]
    x = np.nan_to_num(x.astype(np.float32))
    stride = t - ov
    ys = sorted(set(list(range(0, max(h - t, 0), stride)) + [max(h - t, 0)]))
    xs = sorted(set(list(range(0, max(w - t, 0), stride)) + [max(w - t, 0)]))
    win = np.hanning(t + 2)[1:-1]
    win = win[:, None] * win[None, :]
    acc = np.zeros((K, h, w))
    wsum = np.zeros((h, w))
    for y in ys:
        for x0 in xs:
            tile = torch.from_numpy(np.ascontiguousarray(x[None, :, y : y + t, x0 : x0 + t]))
            with torch.no_grad():
                p = torch.softmax(model.module(tile), 1)[0].numpy().astype(np.float64)
            acc[:, y : y + t, x0 : x0 + t] += p * win
            wsum[y : y + t, x0 : x0 + t] += win
    return acc / wsum


def read(out: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    g = zarr.open_group(out, mode="r")
    return np.asarray(g["classes"][:]), np.asarray(g["probabilities"][:]), dict(g.attrs)


# ------------------------------------------------------------------------------------ tiling
@pytest.mark.parametrize(
    ("n", "t", "ov"), [(1, 8, 2), (8, 8, 2), (9, 8, 2), (100, 16, 4), (97, 32, 31)]
)
def test_tile_starts_cover_axis_with_overlap(n: int, t: int, ov: int) -> None:
    s = tile_starts(n, t, ov)
    cover = np.zeros(max(n, t), int)
    for a in s:
        cover[a : a + t] += 1
    assert cover[:n].min() >= 1
    assert s[0] == 0 and (n <= t or s[-1] + t == n)
    assert np.all(np.diff(s) <= t - ov) and np.all(np.diff(s) > 0)


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TilingOptions(tile_size=32, overlap=32)


# ------------------------------------------------------------------------------------ blending
def test_constant_logits_give_constant_mosaic(tmp_path: Path) -> None:
    logits = np.array([0.3, 2.0, -1.0, 0.5, 1.2])
    cube = make_cube(tmp_path / "cube.zarr", 150, 170)
    src = InMemoryModel(loaded(ConstantLogits(logits)))
    out = predict(
        src,
        cube,
        tmp_path / "m.zarr",
        tile_size=64,
        overlap=16,
        chunk_size=48,
        device="cpu",
        progress=False,
    )
    classes, probs, attrs = read(out)
    expected = softmax_np(logits)
    assert np.all(classes == np.argmax(logits))
    want = np.rint(expected * PROBABILITY_SCALE).astype(np.uint8)[:, None, None]
    assert np.array_equal(probs, np.broadcast_to(want, probs.shape))
    # float path: exact up to rounding, including region borders and chunk seams
    feats = np.asarray(zarr.open_group(cube)["features"][:])
    p, _ = predict_array(feats, loaded(ConstantLogits(logits)), TilingOptions(64, 16, device="cpu"))
    assert np.abs(p - expected[:, None, None]).max() < 1e-6
    assert attrs["complete"] is True


def test_matches_naive_reference_and_is_chunk_invariant(tmp_path: Path) -> None:
    cube = make_cube(tmp_path / "cube.zarr", 130, 110, seed=3)
    feats = np.asarray(zarr.open_group(cube)["features"][:])
    model = loaded(SmallConv(), mean=feats.mean(axis=(1, 2)), std=feats.std(axis=(1, 2)))
    ref = naive_mosaic(feats, model, 48, 16)
    src = InMemoryModel(model)
    one = predict(
        src,
        cube,
        tmp_path / "one.zarr",
        tile_size=48,
        overlap=16,
        batch_size=1,
        chunk_size=512,
        device="cpu",
        progress=False,
    )
    many = predict(
        src,
        cube,
        tmp_path / "many.zarr",
        tile_size=48,
        overlap=16,
        batch_size=1,
        chunk_size=32,
        device="cpu",
        scheduler="threads",
        threads=2,
        progress=False,
    )
    c1, p1, _ = read(one)
    c2, p2, _ = read(many)
    assert np.array_equal(c1, c2) and np.array_equal(p1, p2)  # bit-identical with batch 1
    assert np.abs(p1 / PROBABILITY_SCALE - ref).max() <= 0.5 / PROBABILITY_SCALE + 1e-6
    # batched forward passes: equal within float tolerance
    pa, ca = predict_array(feats, model, TilingOptions(48, 16, batch_size=7, device="cpu"))
    assert np.abs(pa - ref).max() < 1e-5
    margin = np.sort(ref, axis=0)[-1] - np.sort(ref, axis=0)[-2]
    assert np.array_equal(ca[margin > 1e-4], np.argmax(ref, 0)[margin > 1e-4])
    # a sub-region equals the same pixels of the whole region
    sub = (slice(37, 90), slice(5, 61))
    ps, _ = predict_array(
        feats, model, TilingOptions(48, 16, batch_size=1, device="cpu"), target=sub
    )
    pw, _ = predict_array(feats, model, TilingOptions(48, 16, batch_size=1, device="cpu"))
    assert np.array_equal(ps, pw[:, sub[0], sub[1]])


def test_region_smaller_than_tile_and_nodata(tmp_path: Path) -> None:
    def holes(block: np.ndarray) -> None:
        block[:, 0:3, 0:4] = np.nan  # no input at all -> nodata
        block[1, 5, 5] = np.nan  # one band missing -> still predicted

    cube = make_cube(tmp_path / "cube.zarr", 20, 30, edit=holes)
    logits = np.array([0.0, 0.0, 3.0, 0.0, 0.0])
    out = predict(
        InMemoryModel(loaded(ConstantLogits(logits))),
        cube,
        tmp_path / "m.zarr",
        tile_size=64,
        overlap=8,
        device="cpu",
        progress=False,
    )
    classes, probs, _ = read(out)
    assert np.all(classes[0:3, 0:4] == NODATA_LABEL) and np.all(probs[:, 0:3, 0:4] == 0)
    rest = np.ones_like(classes, bool)
    rest[0:3, 0:4] = False
    assert np.all(classes[rest] == 2)


def test_output_layout_and_provenance(tmp_path: Path) -> None:
    cube = make_cube(tmp_path / "cube.zarr", 70, 90)
    out = predict(
        InMemoryModel(loaded(SmallConv())),
        cube,
        tmp_path / "m.zarr",
        tile_size=32,
        overlap=8,
        chunk_size=48,
        device="cpu",
        progress=False,
    )
    ds = open_mosaic(out)
    grid = Grid.from_attrs(zarr.open_group(cube).attrs["grid"])
    assert ds["classes"].dtype == np.uint8 and ds["probabilities"].dtype == np.uint8
    assert ds["probabilities"].shape == (K, 70, 90)
    assert list(ds["class"].values) == [c["name"] for c in class_table()]
    np.testing.assert_allclose(ds["x"].values, grid.x)
    np.testing.assert_allclose(ds["y"].values, grid.y)
    assert ds.rio.crs.to_epsg() == 32645
    assert tuple(ds.rio.transform())[:6] == tuple(grid.transform)[:6]
    assert ds.attrs["complete"] is True and ds.attrs["provenance"]["stac_items"] == ["item-a"]
    assert ds.attrs["bands"] == list(BANDS)
    # probabilities sum to ~1 (uint8 rounding: at most K/2 off)
    s = ds["probabilities"].values.astype(int).sum(axis=0)
    assert np.all(np.abs(s - PROBABILITY_SCALE) <= K // 2 + 1)


def test_missing_band_is_named(tmp_path: Path) -> None:
    cube = make_cube(tmp_path / "cube.zarr", 20, 20)
    m = LoadedModel(SmallConv(), (*BANDS[:3], "coherence"), np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="coherence"):
        predict(InMemoryModel(m), cube, tmp_path / "m.zarr", device="cpu", progress=False)


# ------------------------------------------------------------------------------------ resume
class FailAfter(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n = inner, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n <= 0:
            raise RuntimeError("simulated interruption")
        self.n -= 1
        return self.inner(x)


def tiles_in_chunk(h: int, w: int, cs: int, t: int, ov: int, iy: int, ix: int) -> int:
    ys = [s for s in tile_starts(h, t, ov) if s < min((iy + 1) * cs, h) and s + t > iy * cs]
    xs = [s for s in tile_starts(w, t, ov) if s < min((ix + 1) * cs, w) and s + t > ix * cs]
    return len(ys) * len(xs)


def test_resume_skips_finished_chunks_and_matches(tmp_path: Path) -> None:
    h, w, t, ov, cs = 100, 90, 32, 8, 24
    cube = make_cube(tmp_path / "cube.zarr", h, w, seed=5)
    kw = dict(
        tile_size=t,
        overlap=ov,
        chunk_size=cs,
        batch_size=1,
        device="cpu",
        scheduler="synchronous",
        progress=False,
    )
    full_model = SmallConv()
    ref = predict(InMemoryModel(loaded(full_model), key="m"), cube, tmp_path / "ref.zarr", **kw)
    n_full = full_model.calls

    clear_model_cache()
    broken = FailAfter(SmallConv(), 40)
    with pytest.raises(RuntimeError, match="simulated"):
        predict(InMemoryModel(loaded(broken), key="m"), cube, tmp_path / "m.zarr", **kw)
    g = zarr.open_group(tmp_path / "m.zarr", mode="r")
    assert g.attrs["complete"] is False
    done = np.asarray(g["_progress/done"][:]).astype(bool)
    assert 0 < done.sum() < done.size

    clear_model_cache()
    resumed = SmallConv()
    out = predict(InMemoryModel(loaded(resumed), key="m"), cube, tmp_path / "m.zarr", **kw)
    skipped = sum(tiles_in_chunk(h, w, cs, t, ov, iy, ix) for iy, ix in np.argwhere(done))
    assert resumed.calls == n_full - skipped
    c0, p0, _ = read(ref)
    c1, p1, a1 = read(out)
    assert np.array_equal(c0, c1) and np.array_equal(p0, p1) and a1["complete"] is True


def test_killed_chunk_without_marker_is_rewritten(tmp_path: Path) -> None:
    cube = make_cube(tmp_path / "cube.zarr", 60, 60, seed=2)
    kw = dict(tile_size=32, overlap=8, chunk_size=24, device="cpu", progress=False)
    src = InMemoryModel(loaded(SmallConv()), key="k")
    out = predict(src, cube, tmp_path / "m.zarr", **kw)
    c0, p0, _ = read(out)
    # what a worker killed after writing half a chunk leaves: garbage data, marker unset
    g = zarr.open_group(out, mode="r+")
    g["classes"][24:48, 0:24] = 7
    g["probabilities"][:, 24:36, 0:24] = 1
    assert "_progress" not in g  # a finished store keeps no markers
    done = g.require_group("_progress").create_array(
        "done", shape=(3, 3), chunks=(1, 1), dtype="uint8", fill_value=0
    )
    done[:] = 1
    done[1, 0] = 0
    g.attrs["complete"] = False
    predict(src, cube, out, **kw)
    c1, p1, a1 = read(out)
    assert np.array_equal(c0, c1) and np.array_equal(p0, p1) and a1["complete"] is True


def test_different_run_refuses_then_overwrites(tmp_path: Path) -> None:
    cube = make_cube(tmp_path / "cube.zarr", 40, 40)
    src = InMemoryModel(loaded(SmallConv()), key="k")
    out = predict(
        src, cube, tmp_path / "m.zarr", tile_size=32, overlap=8, device="cpu", progress=False
    )
    with pytest.raises(ValueError, match="overlap"):
        predict(src, cube, out, tile_size=32, overlap=4, device="cpu", progress=False)
    predict(src, cube, out, tile_size=32, overlap=4, device="cpu", progress=False, overwrite=True)
    assert zarr.open_group(out).attrs["run"]["overlap"] == 4


def test_in_memory_key_is_a_fingerprint_of_the_weights() -> None:
    a, b = InMemoryModel(loaded(SmallConv(seed=0))), InMemoryModel(loaded(SmallConv(seed=0)))
    assert a.cache_key == b.cache_key and a.cache_key.startswith("memory:")
    assert InMemoryModel(loaded(SmallConv(seed=1))).cache_key != a.cache_key
    changed = SmallConv(seed=0)
    with torch.no_grad():
        changed.c2.bias[0] += 1e-3
    assert InMemoryModel(loaded(changed)).cache_key != a.cache_key
    shifted = loaded(SmallConv(seed=0), mean=np.full(len(BANDS), 0.5))
    assert InMemoryModel(shifted).cache_key != a.cache_key  # input contract is part of it
    # a plain callable has no weights: a random key, never equal to another one
    fn = loaded(lambda x: x[:, :K])  # type: ignore[arg-type]
    assert InMemoryModel(fn).cache_key != InMemoryModel(fn).cache_key
    assert InMemoryModel(a.model, key="mine").cache_key == "mine"


def test_notebook_run_with_same_weights_resumes(tmp_path: Path) -> None:
    """A new InMemoryModel wrapping equal weights resumes an interrupted mosaic (no key given)."""
    cube = make_cube(tmp_path / "cube.zarr", 60, 60, seed=3)
    kw = dict(tile_size=32, overlap=8, chunk_size=24, batch_size=1, device="cpu")
    kw.update(scheduler="synchronous", progress=False)
    ref = predict(InMemoryModel(loaded(SmallConv())), cube, tmp_path / "ref.zarr", **kw)
    clear_model_cache()
    with pytest.raises(RuntimeError, match="simulated"):
        predict(InMemoryModel(loaded(SmallConv(fail_after=6))), cube, tmp_path / "m.zarr", **kw)
    assert zarr.open_group(tmp_path / "m.zarr").attrs["complete"] is False
    clear_model_cache()
    out = predict(InMemoryModel(loaded(SmallConv())), cube, tmp_path / "m.zarr", **kw)
    c0, p0, _ = read(ref)
    c1, p1, a1 = read(out)
    assert a1["complete"] is True and np.array_equal(c0, c1) and np.array_equal(p0, p1)
    clear_model_cache()
    with pytest.raises(ValueError, match="different run"):
        predict(InMemoryModel(loaded(SmallConv(seed=1))), cube, tmp_path / "m.zarr", **kw)


# ------------------------------------------------------------------------------------ distributed
@pytest.mark.distributed
def test_local_cluster_loads_model_once_per_worker(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    cube = make_cube(tmp_path / "cube.zarr", 96, 96, seed=4)
    kw = dict(tile_size=32, overlap=8, chunk_size=24, device="cpu", progress=False)
    src = InMemoryModel(loaded(SmallConv()))
    ref = predict(src, cube, tmp_path / "ref.zarr", **kw)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        out = predict(src, cube, tmp_path / "d.zarr", scheduler=client, **kw)
        worker_ids = {w.id for w in cluster.workers.values()}
        # scheduler=None picks up the active client, as glacierstack graphs do
        from distributed import get_task_stream

        with get_task_stream(client) as ts:
            out_default = predict(src, cube, tmp_path / "n.zarr", **kw)
        chunks = sorted((t["startstops"][0]["start"], str(t["key"])) for t in ts.data
                        if str(t["key"]).startswith("cryonet-chunk-"))  # fmt: skip
        assert len(chunks) == 16
        # costliest chunks first (tiles touching a 24 px chunk: 1, 2, 3, 2 per axis)
        costs = [(1, 2, 3, 2)[int(k.split("-")[-2])] * (1, 2, 3, 2)[int(k.split("-")[-1])]
                 for _, k in chunks]  # fmt: skip
        assert 9 in costs[:2] and np.mean(costs[:8]) > np.mean(costs[8:]) + 1.5, costs
        assert np.array_equal(read(out_default)[0], read(out)[0])
    loads = {k[2]: n for k, n in model_load_count(src.cache_key).items() if k[2] in worker_ids}
    assert 1 <= len(loads) <= 2 and all(n == 1 for n in loads.values())  # 16 chunks, <= 2 loads
    c0, p0, _ = read(ref)
    c1, p1, _ = read(out)
    assert np.array_equal(c0, c1)
    assert np.abs(p0.astype(int) - p1.astype(int)).max() <= 1


def test_unknown_scheduler_is_rejected(tmp_path: Path) -> None:
    cube = make_cube(tmp_path / "cube.zarr", 20, 20)
    with pytest.raises(ValueError, match="'local-cluster' is not threads, processes"):
        predict(
            InMemoryModel(loaded(SmallConv())),
            cube,
            tmp_path / "m.zarr",
            device="cpu",
            scheduler="local-cluster",  # the old vocabulary: refused, not dialled
            progress=False,
        )
    assert not (tmp_path / "m.zarr").exists()


KILL_SCRIPT = """
import sys, time, numpy as np, torch
from cryonet.infer import InMemoryModel, LoadedModel, predict

class Slow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c = torch.nn.Conv2d(4, 5, 3, padding=1)
    def forward(self, x):
        time.sleep(0.05)
        return self.c(x)

m = LoadedModel(Slow(), ("B02", "B03", "B04", "elevation"), np.zeros(4), np.ones(4))
predict(InMemoryModel(m, key="slow"), sys.argv[1], sys.argv[2], tile_size=32, overlap=8,
        chunk_size=24, batch_size=1, device="cpu", scheduler="synchronous", progress=False)
"""


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    cube = make_cube(tmp_path / "cube.zarr", 96, 96, seed=7)
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    ref = tmp_path / "ref.zarr"
    subprocess.run([sys.executable, str(script), str(cube), str(ref)], check=True)
    out = tmp_path / "m.zarr"
    proc = subprocess.Popen([sys.executable, str(script), str(cube), str(out)])
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "_progress" / "done").exists():
            done = np.asarray(zarr.open_array(str(out), path="_progress/done", mode="r")[:])
            if done.sum() >= 3:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    g = zarr.open_group(out, mode="r")
    assert g.attrs["complete"] is False
    n_done = int(np.asarray(g["_progress/done"][:]).sum())
    assert 0 < n_done < 16
    subprocess.run([sys.executable, str(script), str(cube), str(out)], check=True)
    c0, p0, _ = read(ref)
    c1, p1, a1 = read(out)
    assert a1["complete"] is True
    assert np.array_equal(c0, c1) and np.array_equal(p0, p1)
