"""Write and open the Zarr feature cube (features + labels + statistics + provenance).

Layout (see ``docs/developer/contracts.md``, "Zarr cube layout"): one Zarr v2 store with
consolidated metadata holding ``features`` float32 ``(band, y, x)`` chunked
``(n_band, chunk, chunk)``, ``labels`` uint8 ``(y, x)``, ``band_mean``/``band_std`` float64
``(band,)``, coordinates ``band``/``y``/``x`` and a CF ``spatial_ref`` grid mapping, and
provenance attrs. The root attr ``complete: true`` is written last; :func:`open_cube` refuses a
store without it.

Resumable writes
----------------
:func:`write_cube` first writes the store's metadata (no ``complete`` attr), then writes every
spatial tile as an independent Dask task: the task writes exactly one Zarr chunk and then drops
an empty marker file ``<store>/.progress/<variable>/<row>.<col>``. If the build is interrupted
(killed worker, Ctrl-C, power loss), calling :func:`write_cube` again with the same inputs
finds the incomplete store, checks that it was started by the same build (a fingerprint of
grid, bands, chunking, STAC items and build parameters) and writes only the tiles without a
marker. Statistics are then computed from the written store, ``complete: true`` is set, the
metadata is re-consolidated, and the markers are removed. A store is never marked complete
before all of its chunks and statistics are on disk. ``overwrite=True`` moves an existing
store aside atomically (rename) before deleting it, so a half-deleted store never looks
complete either. Stores are local directories (the Dask workers must see the same filesystem).

The writes are plain Dask tasks, so they run on the local threaded scheduler by default and
on a ``distributed.Client`` (LocalCluster or a real cluster) when one is active.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
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
from tqdm.auto import tqdm

from glacierstack.classes import NODATA_LABEL, check_class_table, class_table
from glacierstack.georef import georeference, uint8_layer_attrs
from glacierstack.grid import Grid
from glacierstack.runner import DaskSession, RunnerOptions, ensure_session, run_tasks

__all__ = ["CubeError", "IncompleteCubeError", "cube_status", "open_cube", "write_cube"]

ZARR_FORMAT = 2
PROGRESS_DIR = ".progress"
_COMPRESSOR_NAME = "zstd"


class CubeError(ValueError):
    """A store exists but is not a usable glacierstack cube."""


class IncompleteCubeError(CubeError):
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


def _read_root_attrs(path: Path) -> dict[str, Any] | None:
    """Root attrs of a Zarr v2 group as readers see them (consolidated copy first), or None."""
    if not (path / ".zgroup").is_file():
        return None
    zmeta = path / ".zmetadata"
    if zmeta.is_file():
        return json.loads(zmeta.read_text())["metadata"].get(".zattrs", {})
    zattrs = path / ".zattrs"
    return json.loads(zattrs.read_text()) if zattrs.is_file() else {}


def cube_status(path: str | os.PathLike[str]) -> str:
    """Return ``"missing"``, ``"complete"``, ``"incomplete"`` or ``"foreign"`` for a path.

    ``"foreign"`` means something exists at ``path`` that is not a glacierstack cube.
    """
    p = Path(path)
    if not p.exists():
        return "missing"
    attrs = _read_root_attrs(p)
    if attrs is None or "_build" not in attrs and "complete" not in attrs:
        return "foreign"
    return "complete" if attrs.get("complete") is True else "incomplete"


def _remove_store(path: Path) -> None:
    """Delete a store without ever leaving a partially deleted store under ``path``."""
    trash = path.with_name(f".{path.name}.deleting-{uuid.uuid4().hex[:8]}")
    path.rename(trash)
    shutil.rmtree(trash)


def _tile_slices(chunks: tuple[tuple[int, ...], ...]) -> list[slice]:
    edges = np.concatenate([[0], np.cumsum(chunks)])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _write_block(
    block: np.ndarray, store: str, name: str, region: tuple[slice, ...], marker: str
) -> int:
    """Write one block into one Zarr chunk, then drop its progress marker (runs on a worker)."""
    arr = zarr.open_array(store, path=name, mode="r+", zarr_format=ZARR_FORMAT)
    arr[region] = block
    Path(marker).touch()
    return 1


def _run_tasks(
    tiles: list[list[Any]],
    desc: str,
    runner: RunnerOptions | DaskSession | None,
    tiles_per_batch: int | None,
) -> None:
    """Compute the write tasks, a batch of neighbouring tiles at a time, with a progress bar.

    Each batch is one graph, so inputs shared inside it (overlapping windows) are computed
    once. Batching bounds memory: one graph over all tiles lets Dask start many tiles' band
    computations before finishing any, so memory would grow with the region.
    """
    if not tiles:
        return
    with ensure_session(runner) as session:
        per_tile = max(len(t) for t in tiles)
        per_batch = (tiles_per_batch or 2 * session.parallelism()) * per_tile
        run_tasks(
            session, [t for tile in tiles for t in tile], desc=desc, per_batch=per_batch, retries=2
        )


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
    runner: RunnerOptions | DaskSession | None = None,
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
        Local directory of the Zarr store (created).
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
    runner
        Where to compute (:class:`~glacierstack.runner.RunnerOptions` or an open
        :class:`~glacierstack.runner.DaskSession`); default: the active ``distributed.Client``,
        else the threaded scheduler.

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
    path = Path(path).resolve()
    if grid is None:
        if "grid" not in features.attrs:
            raise ValueError("pass grid=... (features has no 'grid' attr)")
        grid = Grid.from_attrs(features.attrs["grid"])
    _check_inputs(features, labels, grid)
    if chunk_size < 16:
        raise ValueError(f"chunk_size must be >= 16, got {chunk_size}")
    bands = [str(b) for b in features["band"].values]
    build = {
        "grid": grid.to_attrs(),
        "bands": bands,
        "chunk_size": int(chunk_size),
        "stac_items": sorted(str(s) for s in stac_items),
        "request": dict(resume_key if resume_key is not None else (attrs or {})),
    }
    fingerprint = _fingerprint(build)

    status = cube_status(path)
    if status == "foreign":
        raise FileExistsError(f"{path} exists and is not a glacierstack cube; choose another path")
    if status == "complete":
        if not overwrite:
            raise FileExistsError(f"{path} already holds a complete cube; pass overwrite=True")
        _remove_store(path)
    elif status == "incomplete":
        old = (_read_root_attrs(path) or {}).get("_build", {})
        if old.get("fingerprint") != fingerprint:
            if not overwrite:
                changed = [k for k in build if old.get("params", {}).get(k) != _jsonable(build[k])]
                raise CubeError(
                    f"{path} holds an unfinished cube from a different build (differs in "
                    f"{changed or 'unknown parameters'}); pass overwrite=True to replace it"
                )
            _remove_store(path)

    root_attrs = {
        **dict(attrs or {}),
        "grid": grid.to_attrs(),
        "bands": bands,
        "classes": list((attrs or {}).get("classes") or class_table()),
        "stac_items": list(build["stac_items"]),
        "software": _software(),
        "chunk_size": int(chunk_size),
        "_build": {"fingerprint": fingerprint, "params": _jsonable(build)},
    }
    if not path.exists():
        shutil.rmtree(path / PROGRESS_DIR, ignore_errors=True)
        ds = _template(bands, grid, chunk_size, root_attrs, compression_level)
        ds.to_zarr(path, mode="w-", compute=False, zarr_format=ZARR_FORMAT, consolidated=True)
    progress_dir = path / PROGRESS_DIR
    # tiles: one Dask block == one Zarr chunk, so no two tasks ever touch the same chunk
    h, w = grid.shape
    rows = da.core.normalize_chunks(min(chunk_size, h), (h,))[0]
    cols = da.core.normalize_chunks(min(chunk_size, w), (w,))[0]
    fdata = _as_dask(features.data).astype(np.float32).rechunk((len(bands), rows, cols))
    ldata = _as_dask(labels.data).astype(np.uint8).rechunk((rows, cols))
    fblocks = fdata.to_delayed(optimize_graph=False)[0]
    lblocks = ldata.to_delayed(optimize_graph=False)
    write = dask.delayed(_write_block, pure=False)
    for name in ("features", "labels"):
        (progress_dir / name).mkdir(parents=True, exist_ok=True)
    tiles: list[list[Any]] = []  # row-major, so a batch holds neighbouring tiles
    for i, ys in enumerate(_tile_slices(rows)):
        for j, xs in enumerate(_tile_slices(cols)):
            tile = []
            for name, block, region in (
                ("features", fblocks[i, j], (slice(None), ys, xs)),
                ("labels", lblocks[i, j], (ys, xs)),
            ):
                marker = progress_dir / name / f"{i}.{j}"
                if not marker.exists():
                    tile.append(write(block, str(path), name, region, str(marker)))
            if tile:
                tiles.append(tile)
    n_chunks, todo = 2 * len(rows) * len(cols), sum(len(t) for t in tiles)
    if todo < n_chunks:
        desc = f"resuming {path.name} ({n_chunks - todo}/{n_chunks} chunks already written)"
    else:
        desc = f"writing {path.name}"
    if runner is None:
        runner = RunnerOptions(progress=progress)
    _run_tasks(tiles, desc, runner, tiles_per_batch)
    _finalise(path, bands, progress)
    return path


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _as_dask(data: Any) -> da.Array:
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))


def _moments(block: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Per-band partial statistics of one ``(band, y, x)`` chunk over its finite pixels.

    Without ``mean``: ``[[count...], [sum...]]``; with ``mean``: ``[[sum of squared
    deviations...]]``. One band at a time in float64, so memory stays ~ one chunk.
    """
    out = np.zeros((1 if mean is not None else 2, block.shape[0]))
    for b in range(block.shape[0]):
        v = block[b]
        x = v[np.isfinite(v)].astype(np.float64)
        if mean is None:
            out[0, b], out[1, b] = x.size, x.sum()
        else:
            out[0, b] = np.square(x - mean[b]).sum()
    return out


def _label_hist(block: np.ndarray) -> np.ndarray:
    return np.bincount(block.ravel(), minlength=256)


def _finalise(path: Path, bands: list[str], progress: bool) -> None:
    """Statistics from the written store, then ``complete: true``, consolidation, cleanup.

    Two streaming passes over the store's chunks (mean, then squared deviations around it:
    numerically stable for e.g. elevation in metres); each is its own ``dask.compute`` so no
    chunk is held in memory between the passes.
    """
    feats = da.from_zarr(str(path), component="features")
    labs = da.from_zarr(str(path), component="labels")
    fblocks = list(feats.to_delayed().ravel())
    moments = dask.delayed(_moments, pure=True)
    with tqdm(total=2, desc="normalisation statistics", disable=not progress) as bar:
        first = dask.compute(
            [moments(b) for b in fblocks],
            [dask.delayed(_label_hist, pure=True)(b) for b in labs.to_delayed().ravel()],
        )
        bar.update(1)
        n, total = np.sum(first[0], axis=0)
        hist = np.sum(first[1], axis=0)
        mean = total / np.maximum(n, 1)
        (second,) = dask.compute([moments(b, mean) for b in fblocks])
        bar.update(1)
        var = np.sum(second, axis=0)[0] / np.maximum(n, 1)
    empty = [b for b, k in zip(bands, n, strict=True) if k == 0]
    if empty:
        raise CubeError(
            f"layer(s) {empty} have no valid pixel in {path} (all NaN: the modality does not "
            "cover the region, or every scene was nodata); the store is left incomplete"
        )
    std = np.sqrt(var)
    flat = [b for b, s in zip(bands, std, strict=True) if s == 0]
    if flat:
        warnings.warn(f"layer(s) {flat} are constant over the region (std 0)", stacklevel=3)
    group = zarr.open_group(str(path), mode="r+", zarr_format=ZARR_FORMAT)
    group["band_mean"][:] = mean
    group["band_std"][:] = std
    npix = int(np.prod(feats.shape[1:]))
    attrs = dict(group.attrs)
    attrs.update(
        band_valid_fraction=[float(k) / npix for k in n],
        class_counts={str(c["name"]): int(hist[int(c["id"])]) for c in group.attrs["classes"]}
        | {"nodata": int(hist[255])},
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    attrs["complete"] = True  # last: only now does the store read as a cube
    group.attrs.put(attrs)  # one write of .zattrs
    with warnings.catch_warnings():  # the .progress folder is not a Zarr node, on purpose
        warnings.filterwarnings("ignore", message=".*not recognized as a component")
        zarr.consolidate_metadata(str(path), zarr_format=ZARR_FORMAT)
    shutil.rmtree(path / PROGRESS_DIR, ignore_errors=True)


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
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no cube at {p}")
    status = cube_status(p)
    if status == "foreign":
        raise CubeError(f"{p} is not a glacierstack cube (no Zarr group with cube attrs)")
    try:
        ds = xr.open_zarr(
            p,
            consolidated=True,
            decode_coords="all",
            mask_and_scale=False,  # keep labels uint8 (255 = nodata) and features float32
            chunks={} if chunks == "store" else chunks,
            zarr_format=ZARR_FORMAT,
        )
    except (KeyError, FileNotFoundError, ValueError) as exc:
        if status == "incomplete":
            raise IncompleteCubeError(_incomplete_msg(p)) from exc
        raise CubeError(f"cannot open cube {p}: {exc}") from exc
    if ds.attrs.get("complete") is not True:
        raise IncompleteCubeError(_incomplete_msg(p))
    missing = {"features", "labels", "band_mean", "band_std"} - set(ds.data_vars)
    if missing:
        raise CubeError(f"cube {p} lacks variables {sorted(missing)}")
    check_class_table(ds.attrs["classes"])
    return ds


def _incomplete_msg(p: Path) -> str:
    return (
        f"cube {p} is incomplete (its build was interrupted or failed); rerun the same "
        "build to resume it, or rebuild with overwrite=True"
    )
