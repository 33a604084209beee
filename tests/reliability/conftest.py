"""Tiny stores shared by the reliability tests (each case runs on a 2-4 km region or less)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from glacierstack.grid import Grid
from glacierstack.store import write_cube

GRID = Grid("EPSG:32645", (400_000, 3_100_000, 400_960, 3_100_640), 10)  # 64 x 96 px
BANDS = ["B02", "B03", "B04", "B08", "NDVI", "elevation"]


def tiny_features(seed: int = 0) -> tuple[xr.DataArray, xr.DataArray]:
    """Random features (float32, a few NaN) and labels on :data:`GRID`."""
    h, w = GRID.shape
    rng = np.random.default_rng(seed)
    arr = rng.normal(size=(len(BANDS), h, w)).astype("f4")
    arr[:, :2, :3] = np.nan
    lab = rng.integers(0, 5, (h, w)).astype("u1")
    lab[:2, :3] = 255
    feats = xr.DataArray(arr, dims=("band", "y", "x"), coords={"band": BANDS, **GRID.coords()})
    return feats, xr.DataArray(lab, dims=("y", "x"), coords=GRID.coords())


def make_cube(path: Path | str, seed: int = 0, chunk_size: int = 32) -> Path | str:
    """Write a complete tiny cube."""
    feats, labels = tiny_features(seed)
    return write_cube(feats, labels, path, grid=GRID, chunk_size=chunk_size, progress=False)


@pytest.fixture
def tiny_cube(tmp_path: Path) -> Path:
    """A complete 64 x 96 px cube with 6 bands in 32 px chunks."""
    return Path(make_cube(tmp_path / "cube.zarr"))
