"""The mosaic store: its Zarr layout, per-chunk done markers, completion, and reading it back.

Layout: ``classes`` uint8 ``(y, x)`` (255 = no input), ``probabilities`` uint8
``(class, y, x)`` scaled by 255, a ``spatial_ref`` coordinate, and a ``_progress/done`` array
with one marker per output chunk in a sub-group that ``xarray.open_zarr`` does not list. The
``complete`` attribute is written last (:func:`finalise_store`); :func:`open_mosaic` refuses a
store without it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr

from cryonet.infer.blend import PROBABILITY_SCALE
from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid

__all__ = ["DONE", "create_store", "done_markers", "finalise_store", "open_mosaic"]

DONE = "_progress/done"
"""Per-chunk done markers, in a sub-group that ``xarray.open_zarr`` does not list."""


def create_store(
    out: Path,
    grid: Grid,
    classes: list[dict[str, Any]],
    chunk_size: int,
    attrs: dict[str, Any],
) -> None:
    """Create the empty mosaic (metadata only) and its all-zero done markers."""
    import dask.array as da

    h, w = grid.shape
    k = len(classes)
    nby, nbx = math.ceil(h / chunk_size), math.ceil(w / chunk_size)
    names = [str(c["name"]) for c in classes]
    ds = xr.Dataset(
        {
            "classes": (
                ("y", "x"),
                da.full((h, w), NODATA_LABEL, dtype=np.uint8, chunks=chunk_size),
            ),
            "probabilities": (
                ("class", "y", "x"),
                da.zeros((k, h, w), dtype=np.uint8, chunks=(k, chunk_size, chunk_size)),
            ),
        },
        coords={"class": names, **grid.coords()},
        attrs=attrs,
    )
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    ds["classes"].attrs.update(
        {
            "long_name": "predicted class",
            "nodata": NODATA_LABEL,
            "flag_values": list(range(k)),
            "flag_meanings": " ".join(names),
        }
    )
    ds["probabilities"].attrs.update(
        {
            "long_name": "blended class probability x 255",
            "scale": 1.0 / PROBABILITY_SCALE,
            "units": "1",
        }
    )
    for v in ("classes", "probabilities"):
        ds[v].encoding.update({"chunks": ds[v].data.chunksize, "_FillValue": None})
    ds.to_zarr(out, mode="w", compute=False, consolidated=False, zarr_format=2)
    g = zarr.open_group(out, mode="r+").require_group(DONE.split("/")[0])
    done = g.create_array(
        DONE.split("/")[1], shape=(nby, nbx), chunks=(1, 1), dtype="uint8", fill_value=0
    )
    done.attrs.update(
        {
            "_ARRAY_DIMENSIONS": ["chunk_row", "chunk_col"],
            "long_name": f"1 once output chunk (row, col) of {chunk_size} px is written",
        }
    )


def done_markers(out: Path) -> np.ndarray:
    """Read the ``(chunk_row, chunk_col)`` done markers of a mosaic as a bool array."""
    return np.asarray(zarr.open_array(store=str(out), path=DONE, mode="r")[:]).astype(bool)


def finalise_store(out: Path) -> None:
    """Mark the store complete (last write of a run) and consolidate its metadata."""
    g = zarr.open_group(out, mode="r+")
    g.attrs["complete"] = True
    g.attrs["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    zarr.consolidate_metadata(str(out))


def open_mosaic(path: str | Path, *, chunks: Any = None) -> xr.Dataset:
    """Open a finished :func:`predict` store (CRS decoded, refuses unfinished stores).

    Parameters
    ----------
    path
        The Zarr store written by :func:`predict`.
    chunks
        Passed to :func:`xarray.open_zarr` (default: the store's chunks).

    Returns
    -------
    xarray.Dataset
        ``classes`` uint8 ``(y, x)``, ``probabilities`` uint8 ``(class, y, x)`` (divide by 255),
        ``spatial_ref`` coordinate, attrs ``grid``, ``classes``, ``bands``, ``provenance``.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no mosaic at {p}")
    attrs = dict(zarr.open_group(p, mode="r").attrs)
    if attrs.get("complete") is not True:
        raise ValueError(
            f"mosaic {p} is unfinished (no 'complete' attr); rerun cryonet predict to resume it"
        )
    kw = {} if chunks is None else {"chunks": chunks}
    return xr.open_zarr(p, decode_coords="all", **kw)
