"""The driver: :func:`predict` checks the cube and model, creates or resumes the mosaic, runs it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from cryonet.bands import band_index
from cryonet.infer.blend import PROBABILITY_SCALE
from cryonet.infer.mosaic import create_store, done_markers, finalise_store
from cryonet.infer.schedule import execute
from cryonet.infer.sources import LoadedModel, ModelSource, load_cached
from cryonet.infer.task import ChunkJob
from cryonet.infer.tiling import TilingOptions, chunk_plan, chunk_tiles, default_chunk_size
from glacierstack import storage
from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid
from glacierstack.provenance import location_ref
from glacierstack.runner import DaskSession, RunnerOptions, dask_session, parse_scheduler

__all__ = ["check_sizes", "predict"]


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
    threads: int | None = None,
    torch_threads: int | None = None,
    profile: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    ensemble: Sequence[str | Path | ModelSource] = (),
    tta: str | Sequence[int] | None = None,
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
        The vocabulary of :mod:`glacierstack.runner`: ``None`` (the active
        ``distributed.Client`` if there is one, else local threads), ``"threads"``,
        ``"processes"``, ``"synchronous"``, ``"local:N"`` (a new LocalCluster of N worker
        processes), a scheduler address (``"tcp://host:8786"``), or a ``distributed.Client``.
    threads
        Threads per worker for ``local:N`` (default 1); the pool size for ``threads``
        (default 1 here: torch already uses every core) and ``processes``.
    torch_threads
        Torch intra-op threads in each process running tasks (``torch.set_num_threads``).
        Default: unchanged for the local schedulers and an existing cluster (Dask workers
        start with one thread), ``cores // (N * threads)`` for a ``local:N`` cluster.
    profile
        Write Dask's performance report of the run to this HTML file (distributed only).
    overwrite
        Replace an existing store instead of resuming it.
    progress
        Show a progress bar over chunks.
    ensemble
        More checkpoints (same bands and classes, e.g. other seeds or folds) whose
        probabilities are averaged with ``checkpoint``'s (:mod:`cryonet.infer.ensemble`).
    tta
        Test-time augmentation: ``"all"`` (the 8 dihedral transforms), codes such as
        ``"0,4"`` or ``(0, 1, 2, 3)``, or ``None`` (none). Costs one forward pass per
        transform and member.

    Returns
    -------
    pathlib.Path
        The completed store: ``classes`` uint8 ``(y, x)`` (255 = no input), ``probabilities``
        uint8 ``(class, y, x)`` scaled by 255, ``confidence`` (maximum probability) and
        ``entropy`` (normalised entropy) uint8 ``(y, x)`` scaled by 255, ``spatial_ref``,
        attrs ``grid``, ``classes``, ``bands``, ``provenance``, ``complete``.
    """
    from cryonet.infer.ensemble import model_source

    tiling = TilingOptions(tile_size, overlap, batch_size, device, amp)
    check_sizes(chunk_size=chunk_size, threads=threads, torch_threads=torch_threads)
    runner = _runner(scheduler, threads, torch_threads, profile, progress)
    cube = cube if storage.is_url(cube) else Path(cube).expanduser().resolve()  # type: ignore[assignment]
    inputs = [str(cube)] + [
        os.fspath(c) for c in (checkpoint, *ensemble) if isinstance(c, str | os.PathLike)
    ]
    store = storage.preflight(out, "mosaic", inputs=inputs)  # before anything is read
    source = model_source(checkpoint, ensemble, tta)
    ds = _open_cube(cube)
    if "grid" not in ds.attrs:
        raise ValueError(f"cube {cube} has no 'grid' attribute (glacierstack.store layout)")
    grid = Grid.from_attrs(ds.attrs["grid"])
    cube_bands = [str(b) for b in ds["band"].values]
    with dask_session(runner) as session:
        return _predict(
            source, cube, store, ds, grid, cube_bands, tiling, chunk_size, overwrite, session,
            inputs,
        )  # fmt: skip


def check_sizes(**sizes: int | None) -> None:
    """Refuse sizes that cannot work, before anything is read or created (no silent defaults)."""
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1 (or unset for the default), got {value}")


def _runner(
    scheduler: Any, threads: int | None, torch_threads: int | None, profile: Any, progress: bool
) -> RunnerOptions:
    """Runner options of a prediction: one chunk at a time on local threads by default."""
    kind = parse_scheduler(scheduler).kind if isinstance(scheduler, str | None) else "client"
    local_threads = kind in ("threads", "active", "synchronous")
    return RunnerOptions(
        scheduler=scheduler,
        threads=threads if threads is not None else (1 if local_threads else None),
        torch_threads=torch_threads,
        profile=str(profile) if profile is not None else None,
        progress=progress,
        warm_kernels=False,
    )


def _predict(
    source: ModelSource,
    cube: Path | str,
    store: storage.StoreURL,
    ds: xr.Dataset,
    grid: Grid,
    cube_bands: list[str],
    tiling: TilingOptions,
    chunk_size: int | None,
    overwrite: bool,
    session: DaskSession,
    inputs: list[str],
) -> Path:
    local = session.client is None
    # the client process needs the model's bands/classes; it only keeps a GPU copy if it runs
    # the tasks itself
    model = load_cached(source, tiling.resolved_device() if local else torch.device("cpu"))
    index = band_index(model.bands, cube_bands, f"cube {cube}")
    cs = int(chunk_size) if chunk_size is not None else default_chunk_size(tiling)
    signature = _run_signature(source, ds, cube, grid, model.bands, tiling, cs)

    # exclusive creation: of two runs racing for a new store one wins, the other resumes the
    # same run or is refused; a different run's store is never resumed
    claim = storage.claim(store, "mosaic", signature, overwrite=overwrite, inputs=inputs)
    result: Any = Path(store.url) if store.is_local else store.url
    if claim.state == "complete":
        return result
    if claim.state == "new":
        attrs = _store_attrs(ds, cube, grid, model, signature)
        create_store(claim, grid, model.classes, cs, attrs)

    done = done_markers(store.url)
    todo = [c for c in chunk_plan(grid.shape, cs) if not done[c[0], c[1]]]
    # the costliest chunks first (stable: row-major among equals), so the cheap edge chunks
    # fill the gaps at the end instead of one worker running a big chunk while others idle
    todo.sort(key=lambda c: -chunk_tiles(grid.shape, (c[2], c[3]), tiling))
    plan = [(iy, ix) for iy, ix, _, _ in todo]
    threads = session.options.torch_threads
    job = ChunkJob(
        str(cube), store.url, tuple(index), grid.shape, cs, tiling, threads, claim.run_id
    )
    execute(source, job, plan, session)
    finalise_store(claim)
    return result


def _open_cube(cube: Path | str) -> xr.Dataset:
    from glacierstack.store import open_cube

    return open_cube(cube)


def _software() -> dict[str, str]:
    import glacierstack
    from cryonet._version import __version__

    return {
        "cryonet": __version__,
        "glacierstack": getattr(glacierstack, "__version__", "unknown"),
        "torch": torch.__version__,
    }


def _run_signature(
    source: ModelSource,
    ds: xr.Dataset,
    cube: Path | str,
    grid: Grid,
    bands: Sequence[str],
    tiling: TilingOptions,
    chunk_size: int,
) -> dict[str, Any]:
    """Describe the run; a resumed run must match the stored description exactly.

    The cube is identified by its name and build (fingerprint, creation time), not by its
    local path: no output records one, and a moved cube still resumes.
    """
    sha = getattr(source, "sha256", None)
    model_id = sha() if callable(sha) else source.cache_key
    build = ds.attrs.get("_build") or {}
    return {
        "model": model_id,
        "cube": {
            "name": location_ref(cube),
            "fingerprint": build.get("fingerprint"),
            "created": ds.attrs.get("created"),
        },
        "grid": grid.to_attrs(),
        "bands": list(bands),
        "tile_size": tiling.tile_size,
        "overlap": tiling.overlap,
        "chunk_size": chunk_size,
        "amp": tiling.amp,
    }


def _store_attrs(
    ds: xr.Dataset, cube: Path | str, grid: Grid, model: LoadedModel, signature: dict[str, Any]
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
            "cube": location_ref(cube),
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
