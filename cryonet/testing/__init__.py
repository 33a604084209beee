"""Helpers for testing code built on cryonet: small learnable cubes and Hypothesis strategies.

:func:`write_toy_cube` writes a tiny cube in the contract layout (tests, benchmarks, docs);
:mod:`cryonet.testing.strategies` holds Hypothesis strategies for region shapes, tilings,
chunk sizes, grids/bounding boxes and split configurations (Hypothesis is a ``[dev]``
dependency, imported only by that module).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from glacierstack.classes import NODATA_LABEL, NUM_CLASSES

__all__ = ["write_toy_cube"]


def write_toy_cube(
    path: str | os.PathLike[str],
    shape: tuple[int, int] = (256, 256),
    n_bands: int = 4,
    *,
    seed: int = 0,
    noise: float = 0.5,
    chunks: int = 128,
    nodata_rows: int = 8,
    band_order: Sequence[int] | None = None,
) -> Path:
    """Write a small, learnable cube in the contract layout (for tests, benchmarks, docs).

    Labels are 5 classes from thresholded smooth random fields; each band is a class
    signature plus Gaussian noise of standard deviation ``noise``; the top ``nodata_rows``
    rows are missing (features NaN, labels 255). Not a physical simulation: use
    ``glacierstack.synthetic`` for that. ``band_order`` writes the same bands (names and
    values) in another order, e.g. ``[2, 0, 1]``.
    """
    from scipy.ndimage import gaussian_filter

    from glacierstack.grid import Grid
    from glacierstack.store import write_cube

    rng = np.random.default_rng(seed)
    ny, nx = shape
    field_ = gaussian_filter(rng.standard_normal((2, ny, nx)), sigma=(0, 6, 6))
    field_ /= field_.std(axis=(1, 2), keepdims=True)
    labels = np.zeros(shape, np.uint8)
    labels[field_[0] > 0.5] = 1
    labels[field_[0] > 1.2] = 2
    labels[field_[1] > 1.0] = 3
    labels[(field_[1] < -1.0) & (labels == 0)] = 4
    signature = rng.uniform(-2, 2, (n_bands, NUM_CLASSES)).astype(np.float32)
    feats = signature[:, labels] + noise * rng.standard_normal((n_bands, ny, nx)).astype(np.float32)
    feats = feats * 10.0 + 100.0
    feats[:, :nodata_rows] = np.nan
    labels[:nodata_rows] = NODATA_LABEL
    bands = [f"band{i}" for i in range(n_bands)]
    if band_order is not None:
        feats, bands = feats[list(band_order)], [bands[i] for i in band_order]
    grid = Grid(
        "EPSG:32645", (500000.0, 3100000.0 - 10.0 * ny, 500000.0 + 10.0 * nx, 3100000.0), 10
    )
    coords = grid.coords()
    return write_cube(
        xr.DataArray(feats, dims=("band", "y", "x"), coords={"band": bands, **coords}),
        xr.DataArray(labels, dims=("y", "x"), coords=coords),
        path,
        grid=grid,
        chunk_size=chunks,
        overwrite=True,
        progress=False,
    )
