"""Write and open the Zarr feature cube (features + labels + statistics + provenance).

Layout (see ``docs/developer/contracts.md``, "Zarr cube layout"): one Zarr v2 store with
consolidated metadata holding ``features`` float32 ``(band, y, x)`` chunked
``(n_band, chunk, chunk)``, ``labels`` uint8 ``(y, x)``, ``band_mean``/``band_std`` float64
``(band,)``, coordinates ``band``/``y``/``x`` and a CF ``spatial_ref`` grid mapping, and
provenance attrs. The root attr ``complete: true`` is written last; :func:`open_cube` refuses a
store without it.

Resumable writes
----------------
The store's life cycle (exclusive creation, resume, completion manifest, safe overwrite) is
:mod:`glacierstack.storage`'s. :func:`write_cube` claims the store with the build's signature
(grid, bands, chunking, STAC items and build parameters), writes the metadata (no ``complete``
attr), then writes every spatial tile as an independent Dask task (:mod:`glacierstack.cubewrite`):
the task writes the tile's ``features`` and ``labels`` chunks, computes the tile's statistics and
then sets the markers ``<store>/.glacierstack/progress/<variable>/<row>.<col>`` (the
``features`` one, set last, holds the statistics). If the build is interrupted (killed worker,
Ctrl-C, power loss), calling :func:`write_cube` again with the same inputs resumes the store and
writes only the tiles without a marker; a store of a different build is refused. The tiles'
statistics are then merged (:mod:`glacierstack.cubestats`; no second pass over the store), a
chunk manifest is recorded, ``complete: true`` is set and the metadata re-consolidated. A store
is never marked complete before all of its chunks and statistics are on disk. Stores are local
paths or fsspec URLs (the Dask workers must see the same storage).

The writes are plain Dask tasks, so they run on the local threaded scheduler by default and
on a ``distributed.Client`` (LocalCluster or a real cluster) when one is active.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numcodecs
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr

from glacierstack import storage
from glacierstack.classes import NODATA_LABEL, check_class_table, class_table
from glacierstack.cubestats import TileStats, merge_all
from glacierstack.cubewrite import ZARR_FORMAT, run_writes, stored_stats, tile_tasks
from glacierstack.georef import georeference, uint8_layer_attrs
from glacierstack.grid import Grid
from glacierstack.runner import DaskSession, RunnerOptions

__all__ = ["CubeError", "IncompleteCubeError", "cube_status", "open_cube", "write_cube"]

_COMPRESSOR_NAME = "zstd"


class CubeError(storage.StoreError):
    """A store exists but is not a usable glacierstack cube."""


class IncompleteCubeError(CubeError, storage.IncompleteStoreError):
    """The store was never finished (``complete`` attr missing); resume or rebuild it."""


# ----------------------------------------------------------------------------- helpers
def _software() -> dict[str, str]:
    from glacierstack import __version__

    return {
        "glacierstack": __version__,
        "xarray": xr.__version__,
        "dask": dask.__version__,
        "zarr": zarr.__version__,
    }


def _fingerprint(params: Mapping[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cube_status(path: str | os.PathLike[str]) -> str:
    """Return ``"missing"``, ``"complete"``, ``"incomplete"`` or ``"foreign"`` for a path.

    ``"foreign"`` means something exists at ``path`` that is not a glacierstack cube.
    """
    info = storage.store_info(path, wait=False)
    if info.state == "missing":
        return "missing"
    if info.state == "foreign" or info.kind != "cube":
        return "foreign"
    return "complete" if info.complete else "incomplete"


def _class_rows(stored: object, path: object) -> Sequence[Mapping[str, Any]]:
    """Return the cube's class table: its ``classes`` attr, or the default table when unset."""
    if not stored:
        return class_table()
    if not isinstance(stored, list) or not all(isinstance(c, Mapping) for c in stored):
        raise CubeError(f"{path}: attr 'classes' must be a list of {{id, name}} tables")
    return [c for c in stored if isinstance(c, Mapping)]


# ----------------------------------------------------------------------------- validation
def _check_inputs(features: xr.DataArray, labels: xr.DataArray, grid: Grid) -> None:
    if features.dims != ("band", "y", "x"):
        raise ValueError(f"features must have dims ('band', 'y', 'x'), got {features.dims}")
    if "band" not in features.coords:
        raise ValueError("features needs a 'band' coordinate with the layer names")
    if features.shape[1:] != grid.shape:
        raise ValueError(
            f"features has spatial shape {features.shape[1:]}, expected the grid shape {grid.shape}"
        )
    if labels.dims != ("y", "x") or labels.shape != grid.shape:
        raise ValueError(
            f"labels must be (y, x) with the grid shape {grid.shape}, got {labels.dims} "
            f"{labels.shape}"
        )
    bands = [str(b) for b in features["band"].values]
    if len(set(bands)) != len(bands):
        raise ValueError(f"duplicate band names in features: {bands}")
    for arr, name in ((features, "features"), (labels, "labels")):
        for dim, ref in (("x", grid.x), ("y", grid.y)):
            if dim in arr.coords and not np.allclose(
                arr[dim].values, ref, rtol=0, atol=grid.resolution * 1e-3
            ):
                raise ValueError(f"{name} {dim} coordinates do not match the grid {grid!r}")


def _template(
    bands: list[str], grid: Grid, chunk_size: int, attrs: dict[str, Any], level: int
) -> xr.Dataset:
    """Build an all-lazy dataset with the cube layout (only metadata and coords get written)."""
    nb = len(bands)
    h, w = grid.shape
    cs = (min(chunk_size, h), min(chunk_size, w))
    feats = da.empty((nb, h, w), dtype=np.float32, chunks=(nb, *cs))
    labs = da.empty((h, w), dtype=np.uint8, chunks=cs)
    nan = np.full(nb, np.nan)
    ds = xr.Dataset(
        {
            "features": (
                ("band", "y", "x"),
                feats,
                {"long_name": "feature layers"},
            ),
            "labels": (
                ("y", "x"),
                labs,
                uint8_layer_attrs(
                    "class label",
                    [int(c["id"]) for c in attrs["classes"]],
                    [str(c["name"]) for c in attrs["classes"]],
                    NODATA_LABEL,
                ),
            ),
            "band_mean": (("band",), nan, {"long_name": "mean over valid pixels"}),
            "band_std": (("band",), nan.copy(), {"long_name": "std over valid pixels"}),
        },
        coords={"band": np.array(bands, dtype=str), **grid.coords()},
        attrs=attrs,
    )
    ds = georeference(ds, grid)
    comp = numcodecs.Blosc(cname=_COMPRESSOR_NAME, clevel=level, shuffle=numcodecs.Blosc.SHUFFLE)
    # set through .encoding (not to_zarr(encoding=...)) so the grid mapping encoding survives;
    # labels carry no Zarr fill_value (see glacierstack.georef: plain xarray keeps them uint8)
    ds["features"].encoding.update(chunks=(nb, *cs), compressors=(comp,), _FillValue=np.nan)
    ds["labels"].encoding.update(chunks=cs, compressors=(comp,), _FillValue=None)
    return ds


# ----------------------------------------------------------------------------- public API
def write_cube(
    features: xr.DataArray,
    labels: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    grid: Grid | None = None,
    stac_items: Sequence[str] = (),
    attrs: Mapping[str, Any] | None = None,
    resume_key: Mapping[str, Any] | None = None,
    chunk_size: int = 512,
    overwrite: bool = False,
    progress: bool = True,
    compression_level: int = 3,
    tiles_per_batch: int | None = None,
    inputs: Sequence[str | os.PathLike[str]] = (),
    runner: RunnerOptions | DaskSession | None = None,
    fuse_tiles: bool = False,
) -> Path:
    """Write a feature cube and its labels to a resumable, consolidated Zarr store.

    Parameters
    ----------
    features
        float ``(band, y, x)`` layers (lazy Dask or NumPy), ``band`` coordinate = layer names.
        Cast to float32; NaN marks missing values.
    labels
        uint8 ``(y, x)`` labels on the same grid (255 = nodata).
    path
        Local directory or fsspec URL of the Zarr store (claimed exclusively, see
        :mod:`glacierstack.storage`).
    grid
        The cube's grid; default ``Grid.from_attrs(features.attrs["grid"])``.
    stac_items
        STAC item ids the cube was built from (provenance).
    attrs
        Extra JSON-serialisable root attrs (build parameters: catalog, datetime, label rules,
        ...).
    resume_key
        JSON-serialisable description of the build request; an incomplete store is resumed
        only if grid, bands, chunking, STAC items and this key all match. Default: ``attrs``.
    chunk_size
        Spatial chunk size; every chunk holds all bands of one ``chunk_size``² tile.
    overwrite
        Replace an existing store (complete, or incomplete from a different build).
    progress
        Show a progress bar over tiles.
    compression_level
        Blosc/zstd level (1 fast ... 9 small).
    tiles_per_batch
        Tiles computed per Dask graph (default: twice the scheduler's thread count). Bounds
        peak memory independently of the region size.
    inputs
        Paths/URLs the build reads (catalog, outlines); the store may not be or overlap one.
    runner
        Where to compute (:class:`~glacierstack.runner.RunnerOptions` or an open
        :class:`~glacierstack.runner.DaskSession`); default: the active ``distributed.Client``,
        else the threaded scheduler.
    fuse_tiles
        Compute each tile's part of the graph inside its write task: one task per tile. Right
        when tiles share no input task (:func:`glacierstack.tiles.tile_cube`, which
        :func:`~glacierstack.pipeline.build_cube` uses); a lazy graph with overlapping windows
        would compute the shared parts once per tile (:mod:`glacierstack.cubewrite`).

    Returns
    -------
    pathlib.Path
        The store path.

    Raises
    ------
    FileExistsError
        ``path`` holds a complete cube (or a non-cube) and ``overwrite`` is False.
    CubeError
        ``path`` holds an incomplete cube from a different build and ``overwrite`` is False,
        or a layer has no valid pixel at all (the store is then left incomplete).
    """
    store = storage.StoreURL.parse(path)
    if grid is None:
        if "grid" not in features.attrs:
            raise ValueError("pass grid=... (features has no 'grid' attr)")
        grid = Grid.from_attrs(features.attrs["grid"])
    _check_inputs(features, labels, grid)
    if chunk_size < 16:
        raise ValueError(f"chunk_size must be >= 16, got {chunk_size}")
    bands = [str(b) for b in features["band"].values]
    stac_ids = sorted(str(s) for s in stac_items)
    build = {
        "grid": grid.to_attrs(),
        "bands": bands,
        "chunk_size": int(chunk_size),
        "stac_items": stac_ids,
        "request": dict(resume_key if resume_key is not None else (attrs or {})),
    }
    try:
        claim = storage.claim(store, "cube", build, overwrite=overwrite, inputs=inputs)
    except storage.StoreMismatchError as exc:
        raise CubeError(str(exc)) from exc
    if claim.state == "complete":
        raise storage.StoreExistsError(
            f"{store} already holds a complete cube of this build; pass overwrite=True "
            "(--overwrite) to rebuild it"
        )
    if claim.state == "new":
        root_attrs = {
            **dict(attrs or {}),
            "grid": grid.to_attrs(),
            "bands": bands,
            "classes": list((attrs or {}).get("classes") or class_table()),
            "stac_items": list(stac_ids),
            "software": _software(),
            "chunk_size": int(chunk_size),
            "_build": {"fingerprint": _fingerprint(build), "params": _jsonable(build)},
        }
        ds = _template(bands, grid, chunk_size, root_attrs, compression_level)
        with warnings.catch_warnings():  # our .glacierstack folder is not a Zarr node
            warnings.filterwarnings("ignore", message=".*not recognized as a component")
            ds.to_zarr(store.url, mode="a", compute=False, zarr_format=ZARR_FORMAT,
                       consolidated=True)  # fmt: skip
        storage.mark_created(claim)
    tasks, tiles = tile_tasks(features, labels, store.url, chunk_size, claim.run_id, fuse_tiles)
    if len(tasks) < len(tiles):
        desc = (
            f"resuming {store.name} ({len(tiles) - len(tasks)}/{len(tiles)} tiles already written)"
        )
    else:
        desc = f"writing {store.name}"
    fresh = run_writes(tasks, desc, runner or RunnerOptions(progress=progress), tiles_per_batch)
    _finalise(claim, bands, [fresh[t.key] if t.key in fresh else stored_stats(t) for t in tiles])
    return Path(store.url) if store.is_local else store.url  # type: ignore[return-value]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _finalise(claim: storage.Claim, bands: list[str], stats: list[TileStats]) -> None:
    """Merge the tiles' statistics, then ``complete: true``, consolidation, cleanup.

    ``stats`` are in row-major tile order (:mod:`glacierstack.cubestats`: a fixed merge order,
    so the result does not depend on the scheduler or on an interruption).
    """
    path = claim.store.url
    total = merge_all(stats)
    n, mean, hist = total.count, total.mean, total.hist
    empty = [b for b, k in zip(bands, n, strict=True) if k == 0]
    if empty:
        raise CubeError(
            f"layer(s) {empty} have no valid pixel in {path} (all NaN: the modality does not "
            "cover the region, or every scene was nodata); the store is left incomplete"
        )
    std = total.std
    flat = [b for b, s in zip(bands, std, strict=True) if s == 0]
    if flat:
        warnings.warn(f"layer(s) {flat} are constant over the region (std 0)", stacklevel=3)
    group = zarr.open_group(path, mode="r+", zarr_format=ZARR_FORMAT)
    storage.group_array(group, "band_mean", str(path))[:] = mean
    storage.group_array(group, "band_std", str(path))[:] = std
    npix = int(hist.sum())  # every pixel has a label
    table = _class_rows(group.attrs.get("classes"), path)
    storage.complete(  # manifest, then complete: true (only now does it read as a cube)
        claim,
        {
            "band_valid_fraction": [float(k) / npix for k in n],
            "class_counts": {str(c["name"]): int(hist[int(c["id"])]) for c in table}
            | {"nodata": int(hist[255])},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


def open_cube(path: str | os.PathLike[str], *, chunks: Any = "store") -> xr.Dataset:
    """Open a complete cube written by :func:`write_cube`.

    Parameters
    ----------
    path
        The Zarr store.
    chunks
        ``"store"`` (default) for Dask chunks equal to the Zarr chunks, or any ``chunks``
        argument of :func:`xarray.open_zarr` (``None`` loads NumPy arrays lazily).

    Returns
    -------
    xarray.Dataset
        ``features``, ``labels``, ``band_mean``, ``band_std`` with coords ``band``, ``y``, ``x``,
        ``spatial_ref`` (``ds.rio.crs`` works) and the provenance attrs.

    Raises
    ------
    FileNotFoundError
        No store at ``path``.
    IncompleteCubeError
        The store was never finished (interrupted build): rerun the same build to resume it.
    CubeError
        The store is not a glacierstack cube or its class table differs from this version's.
    """
    try:
        store = storage.check_complete(path, "cube")
    except FileNotFoundError:
        raise FileNotFoundError(f"no cube at {storage.StoreURL.parse(path)}") from None
    except storage.IncompleteStoreError as exc:
        raise IncompleteCubeError(_incomplete_msg(storage.StoreURL.parse(path))) from exc
    except storage.ForeignStoreError as exc:
        raise CubeError(
            f"{storage.StoreURL.parse(path)} is not a glacierstack cube (no Zarr group with "
            "cube attrs)"
        ) from exc
    try:
        ds = xr.open_zarr(
            store.url,
            consolidated=True,
            decode_coords="all",
            mask_and_scale=False,  # keep labels uint8 (255 = nodata) and features float32
            chunks={} if chunks == "store" else chunks,
            zarr_format=ZARR_FORMAT,
        )
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise CubeError(f"cannot open cube {store}: {exc}") from exc
    missing = {"features", "labels", "band_mean", "band_std"} - set(ds.data_vars)
    if missing:
        raise CubeError(f"cube {store} lacks variables {sorted(missing)}")
    check_class_table(ds.attrs["classes"])
    if chunks == "store":  # a damaged chunk fails with its store, variable and chunk named
        ds = storage.guard_dataset(ds, store, ("features", "labels"))
    return ds


def _incomplete_msg(p: object) -> str:
    return (
        f"cube {p} is incomplete (its build was interrupted or failed); rerun the same "
        "build to resume it, or rebuild with overwrite=True"
    )
