"""Zarr cube store: layout, statistics, resumability, overwrite rules, distributed writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from glacierstack.classes import CLASS_NAMES, NODATA_LABEL
from glacierstack.grid import Grid
from glacierstack.store import (
    CubeError,
    IncompleteCubeError,
    cube_status,
    open_cube,
    write_cube,
)

GRID = Grid("EPSG:32645", (400_000, 3_100_000, 401_500, 3_101_100), 10)  # 110 x 150 px
BANDS = ["B02", "NDVI", "elevation", "velocity"]


def _inputs(seed: int = 0, chunks=(1, 40, 70)):
    h, w = GRID.shape
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=(len(BANDS), h, w)).astype("f4")
    arr[2] = arr[2] * 300 + 5000  # elevation-like: large mean, moderate spread
    arr[3, 10:30, 20:90] = np.nan  # a velocity gap
    arr[0, :3, :] = np.nan
    feats = xr.DataArray(
        da.from_array(arr, chunks=chunks),
        dims=("band", "y", "x"),
        coords={"band": BANDS, **GRID.coords()},
    )
    lab = rng.integers(0, 5, GRID.shape).astype("u1")
    lab[~np.isfinite(arr).all(0)] = NODATA_LABEL
    labels = xr.DataArray(lab, dims=("y", "x"), coords=GRID.coords())
    return arr, feats, labels


def test_layout_stats_and_attrs(tmp_path):
    arr, feats, labels = _inputs()
    out = write_cube(feats, labels, tmp_path / "c.zarr", grid=GRID, stac_items=["s2-a", "dem-b"],
                     attrs={"datetime": "2018-10-15"}, chunk_size=64, progress=False)  # fmt: skip
    ds = open_cube(out)
    # layout of the contract
    assert ds.features.dtype == np.float32 and ds.features.dims == ("band", "y", "x")
    assert ds.labels.dtype == np.uint8
    assert ds.features.data.chunksize == (len(BANDS), 64, 64)
    assert list(ds.band.values) == BANDS and ds.attrs["bands"] == BANDS
    np.testing.assert_array_equal(ds.features.values, arr)
    np.testing.assert_array_equal(ds.labels.values, labels.values)
    np.testing.assert_allclose(ds.x.values, GRID.x)
    np.testing.assert_allclose(ds.y.values, GRID.y)
    assert ds.rio.crs.to_epsg() == 32645
    assert tuple(ds.rio.transform())[:6] == tuple(GRID.transform)[:6]
    # statistics against NumPy over valid pixels (float64 reference)
    ref = arr.astype("f8")
    np.testing.assert_allclose(ds.band_mean.values, np.nanmean(ref, axis=(1, 2)), rtol=1e-10)
    np.testing.assert_allclose(ds.band_std.values, np.nanstd(ref, axis=(1, 2)), rtol=1e-8)
    # attrs / provenance
    a = ds.attrs
    assert a["complete"] is True
    assert [c["name"] for c in a["classes"]] == list(CLASS_NAMES)
    assert a["stac_items"] == ["dem-b", "s2-a"] and a["datetime"] == "2018-10-15"
    assert a["software"]["glacierstack"]
    assert Grid.from_attrs(a["grid"]) == GRID
    counts = np.bincount(labels.values.ravel(), minlength=256)
    assert a["class_counts"]["nodata"] == counts[255]
    assert a["class_counts"]["debris"] == counts[2]
    np.testing.assert_allclose(a["band_valid_fraction"], np.isfinite(arr).mean(axis=(1, 2)))
    # store-level: Zarr v2, consolidated, compressed, no leftovers
    assert (out / ".zmetadata").is_file()
    meta = json.loads((out / "features" / ".zarray").read_text())
    assert meta["compressor"]["id"] == "blosc" and meta["chunks"] == [len(BANDS), 64, 64]
    assert not (out / ".glacierstack" / "progress").exists()
    assert cube_status(out) == "complete"


def _failing(arr: np.ndarray, fail_block: tuple[int, int], calls: list):
    """Features that raise when a given spatial block is computed (a simulated crash)."""

    def fn(block, block_info=None):
        loc = tuple(block_info[0]["chunk-location"][1:])
        calls.append(loc)
        if loc == fail_block:
            raise RuntimeError("simulated crash")
        return block

    d = da.from_array(arr, chunks=(len(BANDS), 64, 64)).map_blocks(fn, dtype="f4")
    return xr.DataArray(d, dims=("band", "y", "x"), coords={"band": BANDS, **GRID.coords()})


def test_interrupted_write_is_incomplete_and_resumes(tmp_path):
    arr, _, labels = _inputs()
    path = tmp_path / "c.zarr"
    calls: list = []
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="simulated"):
        write_cube(_failing(arr, (1, 2), calls), labels, path, grid=GRID, chunk_size=64,
                   progress=False)  # fmt: skip
    assert cube_status(path) == "incomplete"
    with pytest.raises(IncompleteCubeError, match="interrupted"):
        open_cube(path)
    done = {p.name for p in (path / ".glacierstack" / "progress" / "features").iterdir()}
    assert "1.2" not in done and len(done) < 6
    # the same build again (input no longer failing) writes only the missing tiles
    calls2: list = []
    write_cube(_failing(arr, (-1, -1), calls2), labels, path, grid=GRID, chunk_size=64,
               progress=False)  # fmt: skip
    assert {f"{i}.{j}" for i, j in calls2} == {
        f"{i}.{j}" for i in range(2) for j in range(3)
    } - done
    ds = open_cube(path)
    np.testing.assert_array_equal(ds.features.values, arr)
    np.testing.assert_allclose(ds.band_mean.values, np.nanmean(arr.astype("f8"), axis=(1, 2)))


def test_killed_process_leaves_incomplete_store_then_resumes(tmp_path):
    """A real SIGKILL mid-write: the store never reads as complete, and a rerun finishes it."""
    path = tmp_path / "k.zarr"
    script = tmp_path / "build.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time
        import dask, dask.array as da, numpy as np, xarray as xr
        from glacierstack.grid import Grid
        from glacierstack.store import write_cube
        g = Grid("EPSG:32645", (400000, 3100000, 401280, 3101280), 10)
        slow = float(sys.argv[1])
        def fn(b):
            time.sleep(slow)
            return b
        h, w = g.shape
        d = da.ones((2, h, w), dtype="f4", chunks=(2, 32, 32)).map_blocks(fn)
        f = xr.DataArray(d, dims=("band", "y", "x"), coords={{"band": ["a", "b"], **g.coords()}})
        lab = xr.DataArray(np.zeros((h, w), "u1"), dims=("y", "x"), coords=g.coords())
        with dask.config.set(scheduler="synchronous"):
            write_cube(f, lab, {str(path)!r}, grid=g, chunk_size=32, progress=False)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script), "0.05"])
    marks = path / ".glacierstack" / "progress" / "features"
    deadline = time.time() + 60
    while time.time() < deadline:
        if marks.is_dir() and len(list(marks.iterdir())) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert cube_status(path) == "incomplete"
    with pytest.raises(IncompleteCubeError):
        open_cube(path)
    n_done = len(list(marks.iterdir()))
    assert 5 <= n_done < 16
    subprocess.run([sys.executable, str(script), "0"], check=True)
    ds = open_cube(path)
    assert float(ds.features.min()) == 1.0 and float(ds.features.max()) == 1.0


def test_overwrite_rules(tmp_path):
    arr, feats, labels = _inputs()
    path = tmp_path / "c.zarr"
    write_cube(feats, labels, path, grid=GRID, chunk_size=64, progress=False)
    with pytest.raises(FileExistsError, match="complete cube"):
        write_cube(feats, labels, path, grid=GRID, chunk_size=64, progress=False)
    feats2 = feats + 1
    write_cube(feats2, labels, path, grid=GRID, chunk_size=64, overwrite=True, progress=False)
    np.testing.assert_allclose(open_cube(path).features.values, arr + 1)
    assert not list(tmp_path.glob(".c.zarr.deleting-*"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a glacierstack cube"):
        write_cube(feats, labels, foreign, grid=GRID, overwrite=True, progress=False)
    assert (foreign / "keep.txt").exists()


def test_incomplete_store_from_another_build_is_not_resumed(tmp_path):
    arr, _, labels = _inputs()
    path = tmp_path / "c.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        write_cube(_failing(arr, (0, 1), []), labels, path, grid=GRID, chunk_size=64,
                   stac_items=["one"], progress=False)  # fmt: skip
    _, feats, _ = _inputs()
    with pytest.raises(CubeError, match="stac_items"):
        write_cube(feats, labels, path, grid=GRID, chunk_size=64, stac_items=["two"],
                   progress=False)  # fmt: skip
    write_cube(feats, labels, path, grid=GRID, chunk_size=64, stac_items=["two"],
               overwrite=True, progress=False)  # fmt: skip
    assert open_cube(path).attrs["stac_items"] == ["two"]


def test_all_nan_layer_is_an_error_and_leaves_store_incomplete(tmp_path):
    arr, feats, labels = _inputs()
    feats = feats.copy()
    feats[3] = np.nan
    with pytest.raises(CubeError, match=r"\['velocity'\] have no valid pixel"):
        write_cube(feats, labels, tmp_path / "c.zarr", grid=GRID, progress=False)
    assert cube_status(tmp_path / "c.zarr") == "incomplete"


def test_bad_inputs(tmp_path):
    _, feats, labels = _inputs()
    with pytest.raises(ValueError, match="dims"):
        write_cube(feats.transpose("y", "x", "band"), labels, tmp_path / "a", grid=GRID)
    other = Grid("EPSG:32645", (400_000, 3_100_000, 401_000, 3_101_100), 10)
    with pytest.raises(ValueError, match="grid shape"):
        write_cube(feats, labels, tmp_path / "b", grid=other)
    with pytest.raises(FileNotFoundError, match="no cube"):
        open_cube(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(CubeError, match="not a glacierstack cube"):
        open_cube(tmp_path / "plain")


@pytest.mark.distributed
def test_write_with_localcluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    arr, feats, labels = _inputs(seed=3)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        out = write_cube(feats, labels, tmp_path / "d.zarr", grid=GRID, chunk_size=48,
                         progress=False)  # fmt: skip
    ds = open_cube(out)
    np.testing.assert_array_equal(ds.features.values, arr)
    np.testing.assert_array_equal(ds.labels.values, labels.values)
    np.testing.assert_allclose(ds.band_std.values, np.nanstd(arr.astype("f8"), axis=(1, 2)))
    assert zarr.open_group(str(out), mode="r").attrs["complete"] is True


def test_open_cube_chunks_none(tmp_path):
    arr, feats, labels = _inputs()
    out = write_cube(feats, labels, Path(tmp_path) / "c.zarr", grid=GRID, progress=False)
    ds = open_cube(out, chunks=None)
    assert not isinstance(ds.features.data, da.Array)
    np.testing.assert_array_equal(ds.features.values, arr)
