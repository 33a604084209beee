"""The driver: :func:`predict` checks the cube and model, creates or resumes the mosaic, runs it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from cryonet.infer.blend import PROBABILITY_SCALE
from cryonet.infer.mosaic import create_store, done_markers, finalise_store
from cryonet.infer.schedule import LOCAL_SCHEDULERS, active_client_or, check_scheduler, execute
from cryonet.infer.sources import CheckpointModel, LoadedModel, ModelSource, load_cached
from cryonet.infer.task import ChunkJob
from cryonet.infer.tiling import TilingOptions, chunk_plan, default_chunk_size
from glacierstack import storage
from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid

__all__ = ["predict"]


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
    _check_sizes(chunk_size, workers, torch_threads)
    source: ModelSource = (
        checkpoint if isinstance(checkpoint, ModelSource) else CheckpointModel(Path(checkpoint))
    )
    cube = Path(cube).expanduser().resolve()
    inputs = [str(cube)] + ([str(source.path)] if isinstance(source, CheckpointModel) else [])
    store = storage.preflight(out, "mosaic", inputs=inputs)  # before any work
    ds = _open_cube(cube)
    if "grid" not in ds.attrs:
        raise ValueError(f"cube {cube} has no 'grid' attribute (glacierstack.store layout)")
    grid = Grid.from_attrs(ds.attrs["grid"])
    cube_bands = [str(b) for b in ds["band"].values]
    scheduler = active_client_or(scheduler)
    check_scheduler(scheduler)
    local = scheduler in LOCAL_SCHEDULERS
    # the client process needs the model's bands/classes; it only keeps a GPU copy if it runs
    # the tasks itself
    model = load_cached(source, tiling.resolved_device() if local else torch.device("cpu"))
    band_index = _band_index(cube_bands, model.bands, cube)
    cs = int(chunk_size) if chunk_size is not None else default_chunk_size(tiling)
    signature = _run_signature(source, cube, grid, model.bands, tiling, cs)

    # exclusive creation: of two runs racing for a new store one wins, the other resumes the
    # same run or is refused; a different run's store is never resumed
    claim = storage.claim(store, "mosaic", signature, overwrite=overwrite, inputs=inputs)
    result = Path(store.url) if store.is_local else store.url
    if claim.state == "complete":
        return result  # type: ignore[return-value]
    if claim.state == "new":
        attrs = _store_attrs(ds, cube, grid, model, signature)
        create_store(claim, grid, model.classes, cs, attrs)

    done = done_markers(store.url)
    plan = [(iy, ix) for iy, ix, _, _ in chunk_plan(grid.shape, cs) if not done[iy, ix]]
    job = ChunkJob(
        str(cube), store.url, tuple(band_index), grid.shape, cs, tiling, torch_threads,
        claim.run_id,
    )  # fmt: skip
    execute(source, job, plan, scheduler, workers, progress)
    finalise_store(claim)
    return result  # type: ignore[return-value]


def _check_sizes(chunk_size: int | None, workers: int | None, torch_threads: int | None) -> None:
    """Refuse sizes that cannot work, before anything is read or created (no silent defaults)."""
    for name, value, lo in (
        ("chunk_size", chunk_size, 1),
        ("workers", workers, 1),
        ("torch_threads", torch_threads, 1),
    ):
        if value is not None and value < lo:
            raise ValueError(f"{name} must be >= {lo} (or unset for the default), got {value}")


def _open_cube(cube: Path) -> xr.Dataset:
    from glacierstack.store import open_cube

    return open_cube(cube)


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


def _store_attrs(
    ds: xr.Dataset, cube: Path, grid: Grid, model: LoadedModel, signature: dict[str, Any]
) -> dict[str, Any]:
    """Attributes of a new mosaic: grid, classes, bands, run signature and provenance."""
    return {
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


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except TypeError:
        return False
    return True
