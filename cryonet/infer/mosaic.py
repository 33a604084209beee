"""The mosaic store: its Zarr layout, per-chunk done markers, completion, and reading it back.

Layout: ``classes`` uint8 ``(y, x)`` (255 = no input, declared by the ``nodata`` attr and as
the Zarr fill value, so chunks never written read as nodata, not as class 0, in plain
``xarray.open_zarr``), ``probabilities`` uint8 ``(class, y, x)`` scaled by 254 (fill value 255 =
not written), ``confidence``/``entropy`` uint8 ``(y, x)`` scaled by 254, and the CF grid mapping
of
:mod:`glacierstack.georef` (a ``spatial_ref`` coordinate that plain ``xarray.open_zarr``,
rioxarray, odc-geo and GDAL's Zarr driver read). While a run is in progress a
``_progress/done`` array holds one marker per output chunk; :func:`finalise_store` records the
chunk manifest, writes the ``complete`` attribute and then removes ``_progress``, so a finished
store shows plain readers (GDAL's subdataset list) only the mosaic. Creation, resume, overwrite
and the checks on open are :mod:`glacierstack.storage`'s. :func:`open_mosaic` refuses a store
without ``complete`` or with a lost chunk, and reads stores written before this layout too.
"""

from __future__ import annotations

import math
import os
import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr

from cryonet.infer.blend import PROBABILITY_FILL, PROBABILITY_SCALE
from glacierstack import storage
from glacierstack.classes import NODATA_LABEL
from glacierstack.georef import georeference, uint8_layer_attrs
from glacierstack.grid import Grid

__all__ = [
    "CONFIDENCE_LAYERS",
    "DONE",
    "create_store",
    "done_markers",
    "finalise_store",
    "open_mosaic",
]

CONFIDENCE_LAYERS: dict[str, str] = {
    "confidence": "maximum class probability",
    "entropy": "normalised entropy of the class probabilities (0 certain, 1 uniform)",
}
"""Per-pixel confidence layers written with every mosaic (uint8, ``/ 254``; 0 where no input)."""

DONE = "_progress/done"
"""Per-chunk done markers, in a sub-group that ``xarray.open_zarr`` does not list."""


def create_store(
    claim: storage.Claim,
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
            **{
                name: (("y", "x"), da.zeros((h, w), dtype=np.uint8, chunks=chunk_size))
                for name in CONFIDENCE_LAYERS
            },
        },
        coords={"class": names, **grid.coords()},
        attrs=attrs,
    )
    ds = georeference(ds, grid)
    ds["classes"].attrs.update(uint8_layer_attrs("predicted class", range(k), names, NODATA_LABEL))
    ds["probabilities"].attrs.update(
        {
            "long_name": f"blended class probability x {PROBABILITY_SCALE}",
            "scale": 1.0 / PROBABILITY_SCALE,
            "units": "1",
        }
    )
    for name, long_name in CONFIDENCE_LAYERS.items():
        ds[name].attrs.update(
            {
                "long_name": f"{long_name} x {PROBABILITY_SCALE}",
                "scale": 1.0 / PROBABILITY_SCALE,
                "units": "1",
            }
        )
    fills = {"classes": NODATA_LABEL, "probabilities": PROBABILITY_FILL}
    for v in ("classes", "probabilities", *CONFIDENCE_LAYERS):
        ds[v].encoding.update({"chunks": ds[v].data.chunksize, "_FillValue": fills.get(v)})
    url = claim.store.url
    with warnings.catch_warnings():  # the claim folder is not a Zarr node
        warnings.filterwarnings("ignore", message=".*not recognized as a component")
        ds.to_zarr(url, mode="a", compute=False, consolidated=False, zarr_format=2)
    g = zarr.open_group(url, mode="r+", zarr_format=2).require_group(DONE.split("/")[0])
    done = g.create_array(
        DONE.split("/")[1], shape=(nby, nbx), chunks=(1, 1), dtype="uint8", fill_value=0
    )
    done.attrs.update(
        {
            "_ARRAY_DIMENSIONS": ["chunk_row", "chunk_col"],
            "long_name": f"1 once output chunk (row, col) of {chunk_size} px is written",
        }
    )
    storage.mark_created(claim)


def done_markers(out: str) -> np.ndarray:
    """Read the ``(chunk_row, chunk_col)`` done markers of a mosaic as a bool array."""
    return np.asarray(zarr.open_array(store=str(out), path=DONE, mode="r")[:]).astype(bool)


def finalise_store(claim: storage.Claim) -> None:
    """Record the chunk manifest, mark the store complete, drop the markers, consolidate.

    The markers are bookkeeping nobody reads once the store is complete; they are left out of
    the manifest.
    """
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    storage.complete(claim, {"finished": finished}, drop=(DONE.split("/")[0],))


def open_mosaic(path: str | os.PathLike[str], *, chunks: Any = None) -> xr.Dataset:
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
        ``classes`` uint8 ``(y, x)``, ``probabilities`` uint8 ``(class, y, x)`` (divide by 254),
        ``spatial_ref`` coordinate, attrs ``grid``, ``classes``, ``bands``, ``provenance``.
    """
    try:
        store = storage.check_complete(path, "mosaic")
    except storage.ForeignStoreError as exc:
        if storage.store_info(path, wait=False).kind == "cube":
            raise storage.ForeignStoreError(
                f"{path} is a feature cube, not a mosaic: give the output of cryonet predict"
            ) from exc
        raise
    kw = {} if chunks is None else {"chunks": chunks}
    # mask_and_scale=False: classes stay uint8 (255 = nodata), probabilities uint8 (/ 254)
    ds = xr.open_zarr(store.url, decode_coords="all", mask_and_scale=False, **kw)
    if chunks is None:  # a damaged chunk fails with its store, variable and chunk named
        names = [v for v in ("classes", "probabilities", *CONFIDENCE_LAYERS) if v in ds]
        ds = storage.guard_dataset(ds, store, names)
    return ds
