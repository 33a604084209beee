"""The write tasks of a cube store: one task per tile writes it, its statistics and its marker.

A tile is one Zarr chunk of ``features`` (all bands) and one of ``labels``, so no two tasks
ever touch the same chunk. The task writes both, computes the tile's
:class:`~glacierstack.cubestats.TileStats` from the blocks it holds, and then sets the tile's
progress markers (``labels`` first, ``features`` last, holding the statistics): a tile counts
as written only once its ``features`` marker is set, so a task killed half-way leaves its tile
to be written again by the next run.

Tiles are run largest first (row-major among tiles of equal size): the small edge tiles then
fill the gaps at the end, instead of one worker running a full tile while the others wait.

**Fused tiles.** When no two tiles share an input task (the arrays of
:func:`glacierstack.tiles.tile_cube`: every tile is one task that reads its own window), each
tile's part of the graph is computed *inside* its write task (``fuse=True``): one task per tile.
Otherwise the tile's array tasks and its write task are separate tasks, and a worker that has
just finished a tile starts the next queued tile before the scheduler sends it the slices and
the write of the one it finished (one round trip later); writes then pile up behind tiles and the
other workers wait for them (measured at 50 km: one of two workers 60 % busy). For a lazy graph
whose tiles share inputs (overlapping windows of ``map_overlap``), fusing would compute the
shared parts once per tile, so it is not the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cloudpickle
import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.highlevelgraph import HighLevelGraph

from glacierstack import storage
from glacierstack.cubestats import TileStats
from glacierstack.runner import DaskSession, RunnerOptions, ensure_session, run_tasks

__all__ = [
    "ZARR_FORMAT",
    "TileWrite",
    "axis_chunks",
    "compute_and_write",
    "run_writes",
    "stored_stats",
    "tile_tasks",
    "write_tile",
]

ZARR_FORMAT: Literal[2, 3] = 2


@dataclass(frozen=True)
class TileWrite:
    """Where one tile goes (small and picklable)."""

    store: str
    key: str
    """``"<row>.<col>"``: the tile's index, also its marker's name."""
    rows: slice
    cols: slice
    run_id: str

    @property
    def area(self) -> int:
        """Pixels in the tile."""
        return (self.rows.stop - self.rows.start) * (self.cols.stop - self.cols.start)


def _open(store: str, name: str, mode: str = "r+") -> zarr.Array:
    return zarr.open_array(store, path=name, mode=mode, zarr_format=ZARR_FORMAT)


def write_tile(features: np.ndarray, labels: np.ndarray, job: TileWrite) -> tuple[str, TileStats]:
    """Write one tile's features and labels, then its markers; return its statistics.

    The claim is checked before and after the writes: a store taken over by another run is
    never written, and its tile never marked done, by this one.
    """
    storage.check_owner(job.store, job.run_id)
    _open(job.store, "features")[(slice(None), job.rows, job.cols)] = features
    _open(job.store, "labels")[job.rows, job.cols] = labels
    stats = TileStats.of(features, labels)
    storage.check_owner(job.store, job.run_id)
    storage.set_marker(job.store, "labels", job.key)
    storage.set_marker(job.store, "features", job.key, content=stats.to_bytes())
    return job.key, stats


def compute_and_write(graph: bytes, job: TileWrite) -> tuple[str, TileStats]:
    """Compute one tile's graph (pickled: opaque to Dask) in this task, then :func:`write_tile`."""
    dsk, keys = cloudpickle.loads(graph)
    features, labels = dask.get(dsk, keys)  # synchronous, inside this task
    return write_tile(np.asarray(features), np.asarray(labels), job)


def _fused(fblock: Any, lblock: Any, tile: TileWrite) -> Any:
    """One delayed task computing ``fblock`` and ``lblock`` and writing them."""
    keys = [fblock.key, lblock.key]
    graph = HighLevelGraph.merge(fblock.dask, lblock.dask).cull(set(keys))
    payload = cloudpickle.dumps((dict(graph), keys))
    return dask.delayed(compute_and_write, pure=False)(payload, tile)


def axis_chunks(n: int, chunk_size: int) -> tuple[int, ...]:
    """Tile sizes along an axis of ``n`` pixels."""
    return da.core.normalize_chunks(min(chunk_size, n), (n,))[0]


def _slices(chunks: tuple[int, ...]) -> list[slice]:
    edges = np.concatenate([[0], np.cumsum(chunks)])
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def tile_tasks(
    features: xr.DataArray,
    labels: xr.DataArray,
    url: str,
    chunk_size: int,
    run_id: str,
    fuse: bool = False,
) -> tuple[list[Any], list[TileWrite]]:
    """Delayed writes of the tiles not written yet (largest first), and all tiles, row-major.

    ``fuse``: compute each tile inside its write task (see the module docstring).
    """
    n_bands, h, w = features.shape
    rows, cols = axis_chunks(h, chunk_size), axis_chunks(w, chunk_size)
    fdata = _as_dask(features.data).astype(np.float32).rechunk((n_bands, rows, cols))
    ldata = _as_dask(labels.data).astype(np.uint8).rechunk((rows, cols))
    fblocks = fdata.to_delayed(optimize_graph=False)[0]
    lblocks = ldata.to_delayed(optimize_graph=False)
    # both markers: a store begun by an older version wrote the two chunks in separate tasks
    done = storage.markers(url, "features") & storage.markers(url, "labels")
    write = dask.delayed(write_tile, pure=False)
    tiles, todo = [], []
    for i, ys in enumerate(_slices(rows)):
        for j, xs in enumerate(_slices(cols)):
            tile = TileWrite(url, f"{i}.{j}", ys, xs, run_id)
            tiles.append(tile)
            if tile.key not in done:
                fb, lb = fblocks[i, j], lblocks[i, j]
                todo.append((tile, _fused(fb, lb, tile) if fuse else write(fb, lb, tile)))
    todo.sort(key=lambda t: -t[0].area)  # stable: row-major among equal sizes
    return [task for _, task in todo], tiles


def _as_dask(data: Any) -> da.Array:
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))


def run_writes(
    tasks: Sequence[Any],
    desc: str,
    runner: RunnerOptions | DaskSession | None,
    tiles_per_batch: int | None,
) -> dict[str, TileStats]:
    """Run the tile writes, at most ``tiles_per_batch`` in flight; statistics by tile key.

    The default, twice the scheduler's thread count, keeps memory independent of the region.
    """
    fresh: dict[str, TileStats] = {}

    def keep(result: tuple[str, TileStats]) -> None:
        fresh[result[0]] = result[1]

    if tasks:
        with ensure_session(runner) as session:
            per_batch = tiles_per_batch or 2 * session.parallelism()
            run_tasks(session, tasks, desc=desc, per_batch=per_batch, retries=2, on_result=keep)
    return fresh


def stored_stats(tile: TileWrite) -> TileStats:
    """Statistics of a tile an earlier run wrote: from its marker, else read back from the store.

    (Stores begun before the markers held statistics have empty markers.)
    """
    raw = storage.read_marker(tile.store, "features", tile.key)
    stats = TileStats.from_bytes(raw) if raw else None
    if stats is None:
        feats = np.asarray(_open(tile.store, "features", "r")[(slice(None), tile.rows, tile.cols)])
        labels = np.asarray(_open(tile.store, "labels", "r")[tile.rows, tile.cols])
        stats = TileStats.of(feats, labels)
    return stats
