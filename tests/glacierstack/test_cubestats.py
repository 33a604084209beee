"""Per-tile statistics merged in tile order equal NumPy's over the whole cube; tiles run largest
first; a resumed store merges exactly the numbers an uninterrupted one does."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback
from hypothesis import given, settings
from hypothesis import strategies as st

from glacierstack import storage
from glacierstack.cubestats import TileStats, merge_all
from glacierstack.grid import Grid
from glacierstack.store import open_cube, write_cube


def _split(a: np.ndarray, cuts_y: list[int], cuts_x: list[int]) -> list[np.ndarray]:
    return [bx for by in np.split(a, cuts_y, axis=1) for bx in np.split(by, cuts_x, axis=2)]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cuts_y=st.lists(st.integers(1, 39), max_size=3, unique=True).map(sorted),
    cuts_x=st.lists(st.integers(1, 29), max_size=3, unique=True).map(sorted),
    nan_fraction=st.sampled_from([0.0, 0.3, 0.95]),
)
def test_merged_tiles_equal_numpy_over_the_whole_array(seed, cuts_y, cuts_x, nan_fraction):
    rng = np.random.default_rng(seed)
    # band 0: elevation-like (large offset, small spread: where a naive sum of squares fails)
    x = np.stack([5000 + rng.normal(0, 0.01, (40, 30)), rng.normal(0, 3, (40, 30))])
    x[:, rng.random((40, 30)) < nan_fraction] = np.nan
    x = x.astype(np.float32)
    labels = rng.integers(0, 6, (40, 30)).astype(np.uint8)
    blocks = _split(x, cuts_y, cuts_x)
    lab = [b[0] for b in _split(labels[None], cuts_y, cuts_x)]
    total = merge_all(TileStats.of(f, lb) for f, lb in zip(blocks, lab, strict=True))
    ref = x.astype(np.float64)
    finite = np.isfinite(ref).sum(axis=(1, 2))
    np.testing.assert_array_equal(total.count, finite)
    np.testing.assert_array_equal(total.hist[:6], np.bincount(labels.ravel(), minlength=6))
    assert total.hist.sum() == labels.size
    if finite.min() > 0:
        np.testing.assert_allclose(total.mean, np.nanmean(ref, axis=(1, 2)), rtol=1e-12)
        np.testing.assert_allclose(total.std, np.nanstd(ref, axis=(1, 2)), rtol=1e-7)


def test_an_empty_band_and_the_marker_record_round_trip():
    f = np.full((2, 3, 3), np.nan, np.float32)
    f[1] = np.arange(9).reshape(3, 3) / 7
    s = TileStats.of(f, np.zeros((3, 3), np.uint8))
    assert s.count.tolist() == [0, 9] and s.mean[0] == 0 and s.std[0] == 0
    back = TileStats.from_bytes(s.to_bytes())
    assert back is not None
    for a, b in zip((s.count, s.mean, s.m2, s.hist), (back.count, back.mean, back.m2, back.hist),
                    strict=True):  # fmt: skip
        assert a.dtype == b.dtype and np.array_equal(a, b)  # bit for bit
    assert TileStats.from_bytes(b"") is None and TileStats.from_bytes(b'{"x": 1}') is None
    with pytest.raises(ValueError, match="no tile"):
        merge_all([])


class _Written(Callback):
    """Tile keys in the order their write tasks finish (results of ``write_tile``)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []

    def _posttask(self, key, result, dsk, state, worker_id):
        if str(key[0] if isinstance(key, tuple) else key).startswith("write_tile"):
            self.keys.append(result[0])


def test_tiles_are_written_largest_first_and_a_resume_gives_the_same_statistics(tmp_path):
    g = Grid("EPSG:32645", (400_000, 3_100_000, 401_000, 3_101_000), 10)  # 100 x 100 px
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(2, 100, 100)) + [[[3000]], [[0]]]).astype(np.float32)
    feats = xr.DataArray(arr, dims=("band", "y", "x"), coords={"band": ["a", "b"], **g.coords()})
    labels = xr.DataArray(np.zeros((100, 100), np.uint8), dims=("y", "x"), coords=g.coords())
    kw = dict(grid=g, chunk_size=40, progress=False, tiles_per_batch=1)  # tiles 40, 40, 20
    with dask.config.set(scheduler="synchronous"), _Written() as w:
        write_cube(feats, labels, tmp_path / "a.zarr", **kw)
    side = {"0": 40, "1": 40, "2": 20}
    areas = [side[k[0]] * side[k[2]] for k in w.keys]
    assert len(areas) == 9 and areas == sorted(areas, reverse=True)
    assert w.keys[:4] == ["0.0", "0.1", "1.0", "1.1"]  # row-major among equals
    # interrupted after 4 tiles, then resumed: 4 stored records are merged with 5 new ones
    with dask.config.set(scheduler="synchronous"), _StopAfter(4), pytest.raises(KeyboardInterrupt):
        write_cube(feats, labels, tmp_path / "b.zarr", **kw)
    # a store begun before markers held statistics: the tile is read back from the store
    storage.set_marker(str(tmp_path / "b.zarr"), "features", "0.1", content=b"")
    with dask.config.set(scheduler="synchronous"), _Written() as w2:
        write_cube(feats, labels, tmp_path / "b.zarr", **kw)
    assert len(w2.keys) == 5
    a, b = open_cube(tmp_path / "a.zarr"), open_cube(tmp_path / "b.zarr")
    np.testing.assert_array_equal(a.band_mean.values, b.band_mean.values)
    np.testing.assert_array_equal(a.band_std.values, b.band_std.values)
    np.testing.assert_allclose(a.band_std.values, arr.astype("f8").std(axis=(1, 2)), rtol=1e-9)


class _StopAfter(_Written):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def _posttask(self, key, result, dsk, state, worker_id):
        super()._posttask(key, result, dsk, state, worker_id)
        if len(self.keys) >= self.n:
            raise KeyboardInterrupt
