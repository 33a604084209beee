"""The client's memory for finishing and verifying a store does not grow with the store.

A 50 km cube's client process peaked at 2.58 GB (0.56 GB at 12 km) because the manifest
checksums read up to 256 chunk files, i.e. the whole compressed cube, at once. Here the read
batch is set to 2 MiB and two stores of 2 and 24 MiB of chunk files must finish and verify with
the same traced peak (Python's allocations: chunk bytes and NumPy arrays alike).
"""

from __future__ import annotations

import tracemalloc

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from glacierstack import storage
from glacierstack.grid import Grid
from glacierstack.store import write_cube

MiB = 2**20
SIDE = 256  # 4 bands x 256 x 256 float32: 1 MiB per feature chunk, barely compressible


def _cube(path, n_tiles: int) -> tuple[int, int]:
    """Write and verify a cube of ``n_tiles`` 1 MiB tiles; traced peaks of both (bytes)."""
    x1 = 400_000 + 10 * SIDE * n_tiles
    grid = Grid("EPSG:32645", (400_000, 3_100_000, x1, 3_100_000 + 10 * SIDE), 10)
    data = da.random.default_rng(n_tiles).random(
        (4, SIDE, SIDE * n_tiles), dtype=np.float32, chunks=(4, SIDE, SIDE)
    )
    bands = ["B02", "B03", "B04", "B08"]
    feats = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": bands, **grid.coords()})
    zeros = da.zeros((SIDE, SIDE * n_tiles), dtype=np.uint8, chunks=SIDE)
    labels = xr.DataArray(zeros, dims=("y", "x"), coords=grid.coords())
    tracemalloc.start()
    write_cube(feats, labels, path, grid=grid, chunk_size=SIDE, progress=False, tiles_per_batch=1)
    _, peak_write = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    report = storage.verify(path)
    _, peak_verify = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert report.ok and report.checked >= n_tiles  # feature chunks (+ coords, labels)
    return peak_write, peak_verify


def test_finish_and_verify_memory_flat_in_store_size(tmp_path, monkeypatch):
    monkeypatch.setattr(storage.manifest, "CHECKSUM_BATCH_BYTES", 2 * MiB)  # where it is read
    small = _cube(tmp_path / "small.zarr", 2)
    large = _cube(tmp_path / "large.zarr", 24)
    stored = sum(f.stat().st_size for f in (tmp_path / "large.zarr" / "features").iterdir())
    assert stored > 20 * MiB  # the large store really holds ~24 MiB of chunk files
    for what, a, b in zip(("write_cube", "verify"), small, large, strict=True):
        # flat: the 12x larger store may add scheduling overhead, never its chunks' bytes
        assert b < a + 6 * MiB, f"{what}: peak {b / MiB:.1f} MiB vs {a / MiB:.1f} MiB"


@pytest.mark.parametrize("sizes", [{"a": 5, "b": 5, "c": 5}, {"a": 50, "b": 1, "c": 1, "d": 1}])
def test_checksum_batches_bounded(sizes):
    parts = list(storage.manifest._batches(sizes, max_bytes=10, max_files=2))
    assert [k for p in parts for k in p] == sorted(sizes)  # every file once, in order
    for p in parts:
        assert len(p) <= 2 and (len(p) == 1 or sum(sizes[k] for k in p) <= 10)
