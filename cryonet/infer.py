"""Region-scale inference: overlapping tiles, Hann-window blending, Dask over chunks, Zarr out.

How a region is predicted
-------------------------
The region is covered by **one global grid of tiles** (``tile_size`` square, consecutive tiles
overlapping by ``overlap`` pixels, the last tile on each axis clamped to the region edge).
Every tile's softmax probabilities are multiplied by a strictly positive 2-D Hann window and
added up; the sum is divided by the summed window weights. Because the weights never vanish and
the normalisation is exact, a pixel covered by a single tile (at the region border) keeps that
tile's probabilities exactly, and seams between tiles fade smoothly.

The output is written in square chunks (``chunk_size`` pixels, by default a multiple of the
tile stride). Each chunk is one Dask task that reads *its* window of the cube — the chunk plus
the halo of every global tile touching it, the equivalent of ``map_overlap`` with a depth of
(at most) one tile — runs those tiles, blends, and writes the chunk's region of the output Zarr
followed by a per-chunk *done* marker. Since the tiles are global, the mosaic does not depend on
the chunking (up to float rounding of batched convolutions), tasks are independent and
idempotent, and memory per task is bounded by the chunk size, never by the region size.

An interrupted run is resumed by calling :func:`predict` again with the same arguments:
chunks whose marker is set are skipped. A worker killed half-way through a chunk leaves its
marker unset, so the chunk is recomputed (by Dask's retry or by the next run). The store's
``complete`` attribute is written last.

Models are loaded **once per worker** (per process for the threaded scheduler) through a
cache keyed by the model source and device (:func:`load_cached`).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import torch
import xarray as xr
import zarr

from glacierstack.classes import NODATA_LABEL, class_table
from glacierstack.grid import Grid

__all__ = [
    "CheckpointModel",
    "InMemoryModel",
    "LoadedModel",
    "ModelSource",
    "TilingOptions",
    "chunk_plan",
    "clear_model_cache",
    "hann_window",
    "load_cached",
    "model_load_count",
    "open_mosaic",
    "predict",
    "predict_array",
    "tile_starts",
]

PROBABILITY_SCALE = 255
"""Probabilities are stored as ``uint8``: ``round(p * 255)``; read back with ``/ 255``."""

_DONE = "_progress/done"
"""Per-chunk done markers, in a sub-group that ``xarray.open_zarr`` does not list."""


# ---------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class TilingOptions:
    """How a region is cut into tiles and how tiles are run.

    Parameters
    ----------
    tile_size
        Side of the square tiles fed to the model, in pixels.
    overlap
        Overlap of consecutive tiles, in pixels (``0 <= overlap < tile_size``).
    batch_size
        Tiles per forward pass.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (CUDA when available).
    amp
        Run the forward pass under ``torch.autocast`` (float16 on CUDA, bfloat16 on CPU).
    """

    tile_size: int = 256
    overlap: int = 64
    batch_size: int = 8
    device: str = "auto"
    amp: bool = False

    def __post_init__(self) -> None:
        if self.tile_size < 1:
            raise ValueError(f"tile_size must be >= 1, got {self.tile_size}")
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(
                f"overlap must be in [0, tile_size={self.tile_size}), got {self.overlap}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def stride(self) -> int:
        """Distance between the starts of consecutive tiles."""
        return self.tile_size - self.overlap

    def resolved_device(self) -> torch.device:
        """Return the torch device, with ``"auto"`` resolved."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


# ---------------------------------------------------------------------------------------- tiles
def tile_starts(n: int, tile_size: int, overlap: int) -> np.ndarray:
    """Start offsets of the tiles covering an axis of length ``n``.

    Tiles start every ``tile_size - overlap`` pixels; the last one is clamped so that it ends at
    ``n``. When ``n <= tile_size`` a single tile starts at 0 (the input is padded).

    Parameters
    ----------
    n
        Axis length in pixels.
    tile_size, overlap
        See :class:`TilingOptions`.

    Returns
    -------
    numpy.ndarray
        Sorted, unique int64 start offsets.
    """
    if n <= tile_size:
        return np.zeros(1, dtype=np.int64)
    stride = tile_size - overlap
    return np.append(np.arange(0, n - tile_size, stride), n - tile_size).astype(np.int64)


def hann_window(tile_size: int) -> np.ndarray:
    """Strictly positive 2-D Hann window of shape ``(tile_size, tile_size)``, float64.

    The 1-D window is ``numpy.hanning(tile_size + 2)[1:-1]`` (the zero end points dropped), so
    every pixel of a tile keeps a small positive weight and single-tile borders normalise exactly.
    """
    w = np.hanning(tile_size + 2)[1:-1]
    return np.outer(w, w)


def chunk_plan(shape: tuple[int, int], chunk_size: int) -> list[tuple[int, int, slice, slice]]:
    """List the output chunks of a region: ``(iy, ix, rows, cols)``, row-major."""
    h, w = shape
    return [
        (iy, ix, slice(y0, min(y0 + chunk_size, h)), slice(x0, min(x0 + chunk_size, w)))
        for iy, y0 in enumerate(range(0, h, chunk_size))
        for ix, x0 in enumerate(range(0, w, chunk_size))
    ]


def default_chunk_size(tiling: TilingOptions, target: int = 1024) -> int:
    """Smallest multiple of the tile stride that is at least ``max(target, tile_size)``.

    A multiple of the stride minimises the tiles shared (and so run twice) by adjacent chunks.
    """
    lo = max(target, tiling.tile_size)
    return int(math.ceil(lo / tiling.stride) * tiling.stride)


# ---------------------------------------------------------------------------------------- models
@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready to predict, with the input contract it was trained on.

    Parameters
    ----------
    module
        Maps ``(N, C, H, W)`` float tensors to ``(N, K, H, W)`` logits.
    bands
        Input layer names, in the model's channel order.
    mean, std
        Per-band normalisation statistics (same order as ``bands``).
    classes
        Class table (list of dicts with at least ``id`` and ``name``), ``K`` entries.
    meta
        Provenance to record in the mosaic (model config, epoch, checkpoint hash, ...).
    """

    module: Callable[[torch.Tensor], torch.Tensor]
    bands: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    classes: list[dict[str, Any]] = field(default_factory=class_table)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        n = len(self.bands)
        if mean.shape != (n,) or std.shape != (n,):
            raise ValueError(
                f"mean/std have shapes {mean.shape}/{std.shape}; expected ({n},) for bands "
                f"{list(self.bands)}"
            )
        if np.any(~np.isfinite(std)) or np.any(std <= 0):
            bad = [b for b, s in zip(self.bands, std, strict=True) if not (s > 0)]
            raise ValueError(f"std must be positive and finite; bad bands: {bad}")
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def num_classes(self) -> int:
        """Number of output classes ``K``."""
        return len(self.classes)


@runtime_checkable
class ModelSource(Protocol):
    """Something a worker can turn into a :class:`LoadedModel` (must be picklable)."""

    @property
    def cache_key(self) -> str:
        """Identity of the model; equal keys share one loaded copy per worker."""
        ...

    def load(self, device: torch.device) -> LoadedModel:
        """Build the model on ``device`` (called once per worker and device)."""
        ...


@dataclass(frozen=True)
class CheckpointModel:
    """A model stored as a ``cryonet.checkpoint`` file (see ``docs/developer/contracts.md``)."""

    path: Path

    def __post_init__(self) -> None:
        p = Path(self.path).expanduser().resolve()
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {p} does not exist")
        object.__setattr__(self, "path", p)

    @property
    def cache_key(self) -> str:
        """Path, size and modification time: a rewritten checkpoint is reloaded."""
        st = self.path.stat()
        return f"ckpt:{self.path}:{st.st_size}:{st.st_mtime_ns}"

    def sha256(self) -> str:
        """SHA-256 of the checkpoint file (recorded in the mosaic's provenance)."""
        h = hashlib.sha256()
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def load(self, device: torch.device) -> LoadedModel:
        """Load with ``cryonet.checkpoint.load_model`` (``weights_only=True``)."""
        from cryonet.checkpoint import load_model

        module, meta = load_model(self.path, map_location=device)
        return LoadedModel(
            module=module,
            bands=tuple(meta["bands"]),
            mean=np.asarray(meta["mean"]),
            std=np.asarray(meta["std"]),
            classes=list(meta.get("classes") or class_table()),
            meta={
                "checkpoint": str(self.path),
                "model": meta.get("model"),
                "epoch": meta.get("epoch"),
                "software": meta.get("software"),
            },
        )


@dataclass(frozen=True, eq=False)
class InMemoryModel:
    """Wrap an already built :class:`LoadedModel` as a source (threaded scheduler, notebooks).

    With ``dask.distributed`` the wrapped model is pickled once and shipped to each worker once.
    """

    model: LoadedModel
    key: str = field(default_factory=lambda: f"memory:{uuid.uuid4().hex}")

    @property
    def cache_key(self) -> str:
        """A random id fixed at construction."""
        return self.key

    def load(self, device: torch.device) -> LoadedModel:
        """Move the module to ``device`` (a no-op for plain callables)."""
        module = self.model.module
        if isinstance(module, torch.nn.Module):
            module = module.to(device)
        return LoadedModel(
            module,
            self.model.bands,
            self.model.mean,
            self.model.std,
            self.model.classes,
            self.model.meta,
        )


_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_LOADS: dict[tuple[str, str, str], int] = {}
_CACHE_LOCK = threading.Lock()


def _worker_id() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().id)
    except (ImportError, ValueError):
        return f"pid{os.getpid()}"


def load_cached(source: ModelSource, device: torch.device) -> LoadedModel:
    """Return the model of ``source`` on ``device``, loading it at most once per worker.

    The cache is keyed by ``(source.cache_key, device, worker)`` where *worker* is the
    ``dask.distributed`` worker id inside a worker, else the process id. Modules are put in
    ``eval()`` mode.
    """
    key = (source.cache_key, str(device), _worker_id())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = source.load(device)
            if isinstance(hit.module, torch.nn.Module):
                hit.module.eval()
            _CACHE[key] = hit
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return hit


def model_load_count(cache_key: str | None = None) -> dict[tuple[str, str, str], int]:
    """How often each ``(cache_key, device, worker)`` was loaded in this process (diagnostics)."""
    with _CACHE_LOCK:
        return {k: v for k, v in _LOADS.items() if cache_key is None or k[0] == cache_key}


def clear_model_cache() -> None:
    """Drop every cached model of this process (frees memory; counts are kept)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# ---------------------------------------------------------------------------------------- kernel
def _forward(model: LoadedModel, batch: np.ndarray, device: torch.device, amp: bool) -> np.ndarray:
    x = torch.from_numpy(batch).to(device)
    with torch.inference_mode():
        if amp:
            dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
            with torch.autocast(device_type=device.type, dtype=dtype):
                logits = model.module(x)
        else:
            logits = model.module(x)
        probs = torch.softmax(logits.float(), dim=1)
    if probs.shape[1] != model.num_classes or probs.shape[2:] != x.shape[2:]:
        raise ValueError(
            f"model returned {tuple(probs.shape)} for input {tuple(x.shape)}; expected "
            f"(N, {model.num_classes}, H, W) with the input's H, W"
        )
    return probs.cpu().numpy()


def _blend_window(
    window: np.ndarray,
    origin: tuple[int, int],
    region_shape: tuple[int, int],
    target: tuple[slice, slice],
    model: LoadedModel,
    tiling: TilingOptions,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend the global tiles touching ``target`` (region pixel slices).

    ``window`` holds the normalised input ``(C, h, w)`` for region pixels starting at ``origin``
    and must contain every tile touching ``target``. Returns the blended probabilities
    ``(K, th, tw)`` float32. ``on_batch(n)`` is called after each forward pass of ``n`` tiles.
    """
    t, ov = tiling.tile_size, tiling.overlap
    (ty, tx), (oy, ox) = target, origin
    th, tw = ty.stop - ty.start, tx.stop - tx.start
    sy = [s for s in tile_starts(region_shape[0], t, ov) if s < ty.stop and s + t > ty.start]
    sx = [s for s in tile_starts(region_shape[1], t, ov) if s < tx.stop and s + t > tx.start]
    weights = hann_window(t).astype(np.float32)
    acc = np.zeros((model.num_classes, th, tw), dtype=np.float32)
    wsum = np.zeros((th, tw), dtype=np.float32)
    device = tiling.resolved_device()

    # Pad so that every tile is t x t (only when the region is smaller than a tile).
    c, h, w = window.shape
    need_h, need_w = max(h, max(sy) - oy + t), max(w, max(sx) - ox + t)
    if (need_h, need_w) != (h, w):
        mode = "reflect" if min(h, w) > 1 else "edge"
        window = np.pad(window, ((0, 0), (0, need_h - h), (0, need_w - w)), mode=mode)

    tiles = [(y, x) for y in sy for x in sx]
    for b0 in range(0, len(tiles), tiling.batch_size):
        group = tiles[b0 : b0 + tiling.batch_size]
        batch = np.stack([window[:, y - oy : y - oy + t, x - ox : x - ox + t] for y, x in group])
        probs = _forward(model, np.ascontiguousarray(batch, dtype=np.float32), device, tiling.amp)
        if on_batch is not None:
            on_batch(len(group))
        for (y, x), p in zip(group, probs, strict=True):
            # intersection of tile [y, y+t) x [x, x+t) with the target, in region coordinates
            y0, y1 = max(y, ty.start), min(y + t, ty.stop, region_shape[0])
            x0, x1 = max(x, tx.start), min(x + t, tx.stop, region_shape[1])
            wv = weights[y0 - y : y1 - y, x0 - x : x1 - x]
            acc[:, y0 - ty.start : y1 - ty.start, x0 - tx.start : x1 - tx.start] += (
                p[:, y0 - y : y1 - y, x0 - x : x1 - x] * wv
            )
            wsum[y0 - ty.start : y1 - ty.start, x0 - tx.start : x1 - tx.start] += wv
    acc /= wsum
    return acc


def _normalise(raw: np.ndarray, model: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / std`` in float32 with NaN -> 0 (the mean); also the all-NaN mask."""
    raw = np.asarray(raw, dtype=np.float32)
    nodata = np.all(np.isnan(raw), axis=0)
    mean = model.mean.astype(np.float32)[:, None, None]
    std = model.std.astype(np.float32)[:, None, None]
    x = (raw - mean) / std
    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return x, nodata


def _input_window(
    region_shape: tuple[int, int], target: tuple[slice, slice], tiling: TilingOptions
) -> tuple[slice, slice]:
    """Region pixels needed to run every global tile that touches ``target``."""
    out = []
    for n, sl in zip(region_shape, target, strict=True):
        st = [s for s in tile_starts(n, tiling.tile_size, tiling.overlap) if s < sl.stop]
        st = [s for s in st if s + tiling.tile_size > sl.start]
        out.append(slice(int(min(st)), int(min(n, max(st) + tiling.tile_size))))
    return out[0], out[1]


def predict_array(
    features: np.ndarray,
    model: LoadedModel,
    tiling: TilingOptions | None = None,
    *,
    target: tuple[slice, slice] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict an in-memory region (the reference path; :func:`predict` does this per chunk).

    Parameters
    ----------
    features
        ``(C, H, W)`` raw (un-normalised) inputs in ``model.bands`` order; NaN = missing.
    model
        The model and its normalisation statistics.
    tiling
        Tile size, overlap, batch size, device.
    target
        Optional ``(rows, cols)`` slices of the region to return (default: all of it). The
        result for a sub-region equals the same pixels of the whole-region result.

    Returns
    -------
    probs : numpy.ndarray
        ``(K, h, w)`` float32 blended class probabilities (0 where all inputs are NaN).
    classes : numpy.ndarray
        ``(h, w)`` uint8 argmax class; ``NODATA_LABEL`` (255) where all inputs are NaN.
    """
    tiling = tiling or TilingOptions()
    if features.ndim != 3 or features.shape[0] != len(model.bands):
        raise ValueError(
            f"features must be (C={len(model.bands)}, H, W) in band order {list(model.bands)}, "
            f"got shape {features.shape}"
        )
    region = (int(features.shape[1]), int(features.shape[2]))
    target = target or (slice(0, region[0]), slice(0, region[1]))
    wy, wx = _input_window(region, target, tiling)
    x, nodata = _normalise(features[:, wy, wx], model)
    probs = _blend_window(x, (wy.start, wx.start), region, target, model, tiling)
    ty, tx = target
    nodata = nodata[
        ty.start - wy.start : ty.stop - wy.start, tx.start - wx.start : tx.stop - wx.start
    ]
    return _finish(probs, nodata)


def _finish(probs: np.ndarray, nodata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    classes = np.argmax(probs, axis=0).astype(np.uint8)
    classes[nodata] = NODATA_LABEL
    probs[:, nodata] = 0.0
    return probs, classes


# ---------------------------------------------------------------------------------------- Zarr job
@dataclass(frozen=True)
class _Job:
    """Everything a chunk task needs (small and picklable)."""

    cube: str
    out: str
    band_index: tuple[int, ...]
    region_shape: tuple[int, int]
    chunk_size: int
    tiling: TilingOptions
    torch_threads: int | None = None


def _array(store: str, name: str, mode: str) -> zarr.Array:
    # opened per task (a metadata read): a cached handle could outlive an overwritten store
    return zarr.open_array(store=store, path=name, mode=mode)


def _run_chunk(source: ModelSource, job: _Job, iy: int, ix: int) -> int:
    """Predict output chunk ``(iy, ix)``, write it, then set its done marker. Returns tiles run."""
    if job.torch_threads is not None and torch.get_num_threads() != job.torch_threads:
        torch.set_num_threads(job.torch_threads)
    tiling = job.tiling
    model = load_cached(source, tiling.resolved_device())
    h, w = job.region_shape
    cs = job.chunk_size
    target = (slice(iy * cs, min((iy + 1) * cs, h)), slice(ix * cs, min((ix + 1) * cs, w)))
    wy, wx = _input_window(job.region_shape, target, tiling)
    raw = _array(job.cube, "features", "r")[:, wy, wx]
    if list(job.band_index) != list(range(raw.shape[0])):
        raw = raw[list(job.band_index)]
    x, nodata = _normalise(raw, model)
    del raw
    counter = [0]

    def count(n: int) -> None:
        counter[0] += n

    probs = _blend_window(x, (wy.start, wx.start), job.region_shape, target, model, tiling, count)
    nodata = nodata[
        target[0].start - wy.start : target[0].stop - wy.start,
        target[1].start - wx.start : target[1].stop - wx.start,
    ]
    probs, classes = _finish(probs, nodata)
    _array(job.out, "classes", "r+")[target] = classes
    _array(job.out, "probabilities", "r+")[(slice(None), *target)] = _quantise(probs)
    _array(job.out, _DONE, "r+")[iy, ix] = 1  # marker last: a killed task leaves it unset
    return counter[0]


def _quantise(probs: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(probs, 0.0, 1.0) * PROBABILITY_SCALE).astype(np.uint8)


# ---------------------------------------------------------------------------------------- cube I/O
def _open_cube(cube: Path) -> xr.Dataset:
    try:
        from glacierstack.store import open_cube
    except ImportError:  # pragma: no cover - store module not installed yet
        open_cube = None
    if open_cube is not None:
        return open_cube(cube)
    ds = xr.open_zarr(cube, consolidated=None)
    if not ds.attrs.get("complete", False):
        raise ValueError(f"cube {cube} is incomplete (no 'complete' attr); rebuild it")
    return ds


def _band_index(cube_bands: Sequence[str], model_bands: Sequence[str], cube: Path) -> list[int]:
    missing = [b for b in model_bands if b not in cube_bands]
    if missing:
        raise ValueError(
            f"cube {cube} lacks bands {missing} that the model needs; cube bands: "
            f"{list(cube_bands)}"
        )
    return [list(cube_bands).index(b) for b in model_bands]


def _software() -> dict[str, str]:
    import cryonet
    import glacierstack

    return {
        "cryonet": cryonet.__version__,
        "glacierstack": getattr(glacierstack, "__version__", "unknown"),
        "torch": torch.__version__,
    }


def _run_signature(
    source: ModelSource,
    cube: Path,
    grid: Grid,
    bands: Sequence[str],
    tiling: TilingOptions,
    chunk_size: int,
) -> dict[str, Any]:
    """Describe the run; a resumed run must match the stored description exactly."""
    model_id = source.sha256() if isinstance(source, CheckpointModel) else source.cache_key
    return {
        "model": model_id,
        "cube": str(cube),
        "grid": grid.to_attrs(),
        "bands": list(bands),
        "tile_size": tiling.tile_size,
        "overlap": tiling.overlap,
        "chunk_size": chunk_size,
        "amp": tiling.amp,
    }


def _create_store(
    out: Path, grid: Grid, model: LoadedModel, chunk_size: int, attrs: dict[str, Any]
) -> None:
    import dask.array as da

    h, w = grid.shape
    k = model.num_classes
    nby, nbx = math.ceil(h / chunk_size), math.ceil(w / chunk_size)
    names = [str(c["name"]) for c in model.classes]
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
    g = zarr.open_group(out, mode="r+").require_group(_DONE.split("/")[0])
    done = g.create_array(
        _DONE.split("/")[1], shape=(nby, nbx), chunks=(1, 1), dtype="uint8", fill_value=0
    )
    done.attrs.update(
        {
            "_ARRAY_DIMENSIONS": ["chunk_row", "chunk_col"],
            "long_name": f"1 once output chunk (row, col) of {chunk_size} px is written",
        }
    )


def _finalise_store(out: Path) -> None:
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


# ---------------------------------------------------------------------------------------- driver
def predict(
    checkpoint: str | Path | ModelSource,
    cube: str | Path,
    out: str | Path,
    *,
    tile_size: int = 256,
    overlap: int = 64,
    batch_size: int = 8,
    device: str = "auto",
    chunk_size: int | None = None,
    amp: bool = False,
    scheduler: Any = None,
    workers: int | None = None,
    torch_threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Map a whole cube with a trained model into a Zarr mosaic.

    Parameters
    ----------
    checkpoint
        Checkpoint file (``cryonet.checkpoint``) or any :class:`ModelSource`
        (e.g. :class:`InMemoryModel`).
    cube
        Zarr feature cube (``glacierstack.store`` layout) holding the model's bands.
    out
        Output Zarr store. Created, or resumed if it holds an unfinished run with the same
        model, cube, grid, bands and tiling.
    tile_size, overlap, batch_size, device, amp
        See :class:`TilingOptions`.
    chunk_size
        Output chunk side in pixels (one Dask task each); default: the smallest multiple of
        the tile stride >= 1024. Memory per task grows with ``(chunk_size + tile_size)**2``.
    scheduler
        ``None`` (the active ``distributed.Client`` if there is one, as for glacierstack
        graphs; otherwise local threads), ``"threads"``, ``"synchronous"``, a
        ``dask.distributed`` scheduler address (``"tcp://host:8786"``), or a
        ``distributed.Client``.
    workers
        Threads for the local threaded scheduler (default 1: torch already uses every core),
        or, with ``scheduler="local-cluster"``, the number of single-threaded worker processes
        of a new ``LocalCluster``.
    torch_threads
        Torch intra-op threads in each process running tasks (``torch.set_num_threads``).
        Default: unchanged for the local schedulers and an existing cluster (Dask workers
        start with one thread), ``cores // workers`` for a cluster started here.
    overwrite
        Replace an existing store instead of resuming it.
    progress
        Show a progress bar over chunks.

    Returns
    -------
    pathlib.Path
        The completed store: ``classes`` uint8 ``(y, x)`` (255 = no input), ``probabilities``
        uint8 ``(class, y, x)`` scaled by 255, ``spatial_ref``, attrs ``grid``, ``classes``,
        ``bands``, ``provenance``, ``complete``.
    """
    tiling = TilingOptions(tile_size, overlap, batch_size, device, amp)
    source: ModelSource = (
        checkpoint if isinstance(checkpoint, ModelSource) else CheckpointModel(Path(checkpoint))
    )
    cube, out = Path(cube).expanduser().resolve(), Path(out).expanduser().resolve()
    ds = _open_cube(cube)
    if "grid" not in ds.attrs:
        raise ValueError(f"cube {cube} has no 'grid' attribute (glacierstack.store layout)")
    grid = Grid.from_attrs(ds.attrs["grid"])
    cube_bands = [str(b) for b in ds["band"].values]
    scheduler = _active_client_or(scheduler)
    _check_scheduler(scheduler)
    local = scheduler in _LOCAL_SCHEDULERS
    # the client process needs the model's bands/classes; it only keeps a GPU copy if it runs
    # the tasks itself
    model = load_cached(source, tiling.resolved_device() if local else torch.device("cpu"))
    band_index = _band_index(cube_bands, model.bands, cube)
    cs = int(chunk_size) if chunk_size else default_chunk_size(tiling)
    if cs < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    signature = _run_signature(source, cube, grid, model.bands, tiling, cs)

    if out.exists() and overwrite:
        shutil.rmtree(out)
    if out.exists():
        attrs = dict(zarr.open_group(out, mode="r").attrs)
        if attrs.get("run") != signature:
            raise ValueError(
                f"{out} holds a different run ({_diff(attrs.get('run'), signature)}); "
                "pass overwrite=True (--overwrite) to replace it"
            )
        if attrs.get("complete"):
            return out
    else:
        attrs = {
            "grid": grid.to_attrs(),
            "classes": model.classes,
            "bands": list(model.bands),
            "nodata": NODATA_LABEL,
            "probability_scale": 1.0 / PROBABILITY_SCALE,
            "run": signature,
            "provenance": {
                "cube": str(cube),
                "stac_items": ds.attrs.get("stac_items", []),
                "cube_created": ds.attrs.get("created"),
                "model": {k: v for k, v in model.meta.items() if _jsonable(v)},
                "software": _software(),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "method": "global overlapping tiles, strictly positive Hann window, "
                "softmax probabilities blended and normalised by summed weights",
            },
            "complete": False,
        }
        _create_store(out, grid, model, cs, attrs)

    done = np.asarray(zarr.open_array(store=str(out), path=_DONE, mode="r")[:])
    plan = [(iy, ix) for iy, ix, _, _ in chunk_plan(grid.shape, cs) if not done[iy, ix]]
    job = _Job(str(cube), str(out), tuple(band_index), grid.shape, cs, tiling, torch_threads)
    _execute(source, job, plan, scheduler, workers, progress)
    _finalise_store(out)
    return out


def _jsonable(v: Any) -> bool:
    import json

    try:
        json.dumps(v)
    except TypeError:
        return False
    return True


def _diff(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    if not old:
        return "no run signature"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} != {new.get(k)!r}" for k in keys)


_LOCAL_SCHEDULERS = (None, "threads", "sync", "synchronous")


def _active_client_or(scheduler: Any) -> Any:
    """``scheduler``, or for ``None`` the active ``distributed.Client`` when one exists."""
    if scheduler is not None:
        return scheduler
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover
        return None
    try:
        return default_client()
    except ValueError:  # no client running
        return None


def _check_scheduler(scheduler: Any) -> None:
    if scheduler in _LOCAL_SCHEDULERS or scheduler == "local-cluster":
        return
    if isinstance(scheduler, str):
        if "://" in scheduler or ":" in scheduler:
            return
        raise ValueError(
            f"scheduler {scheduler!r} is not one of None, 'threads', 'synchronous', "
            "'local-cluster' or a dask.distributed address like 'tcp://host:8786'"
        )
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        Client = ()  # type: ignore[assignment]  # noqa: N806
    if not isinstance(scheduler, Client):
        raise TypeError(f"scheduler must be a string or a distributed.Client, got {scheduler!r}")


def _execute(
    source: ModelSource,
    job: _Job,
    plan: list[tuple[int, int]],
    scheduler: Any,
    workers: int | None,
    progress: bool,
) -> None:
    """Run the chunk tasks on the chosen Dask scheduler."""
    import dask
    from tqdm.auto import tqdm

    if not plan:
        return
    token = dask.base.tokenize(job, source.cache_key)
    bar = tqdm(total=len(plan), desc="cryonet predict", unit="chunk", disable=not progress)
    try:
        if scheduler in _LOCAL_SCHEDULERS:
            src = dask.delayed(source, pure=True, name=f"cryonet-model-{token}")
            tasks = [
                dask.delayed(_run_chunk, pure=False)(
                    src, job, iy, ix, dask_key_name=f"cryonet-chunk-{token}-{iy}-{ix}"
                )
                for iy, ix in plan
            ]
            name = "sync" if scheduler in ("sync", "synchronous") else "threads"
            with _TqdmCallback(bar, prefix="cryonet-chunk-"):
                dask.compute(*tasks, scheduler=name, num_workers=workers or 1)
            return
        from distributed import Client, LocalCluster, as_completed

        cluster = None
        if isinstance(scheduler, Client):
            client = scheduler
        elif scheduler == "local-cluster":
            n = workers or 1
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None)
            client = Client(cluster)
            if job.torch_threads is None:
                job = _replace_threads(job, max(1, (os.cpu_count() or 1) // n))
        else:
            client = Client(str(scheduler))
        try:
            # A checkpoint source is a path (tiny, sent with each task); an in-memory model is
            # sent to every worker once (broadcast, so a lost worker loses no single copy).
            src: Any = source
            if not isinstance(source, CheckpointModel):
                src = client.scatter(source, broadcast=True, hash=False)
            futures = [
                client.submit(
                    _run_chunk,
                    src,
                    job,
                    iy,
                    ix,
                    key=f"cryonet-chunk-{token}-{iy}-{ix}",
                    pure=False,
                    retries=2,
                )
                for iy, ix in plan
            ]
            for fut in as_completed(futures):
                fut.result()
                bar.update()
        finally:
            if not isinstance(scheduler, Client):
                client.close()
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()


def _replace_threads(job: _Job, n: int) -> _Job:
    from dataclasses import replace

    return replace(job, torch_threads=n)


class _TqdmCallback:
    """Dask local-scheduler callback advancing a tqdm bar for each finished chunk task."""

    def __init__(self, bar: Any, prefix: str) -> None:
        from dask.callbacks import Callback

        def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if str(key).startswith(prefix):
                bar.update()

        self._cb = Callback(posttask=posttask)

    def __enter__(self) -> _TqdmCallback:
        self._cb.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cb.__exit__(*exc)
