"""One Dask task: predict one output chunk of the mosaic, write it, then set its done marker."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import zarr

from cryonet.calibration import confidence_layers
from cryonet.infer.blend import blend_window, finish, normalise, quantise
from cryonet.infer.mosaic import CONFIDENCE_LAYERS, DONE
from cryonet.infer.sources import ModelSource, load_cached
from cryonet.infer.tiling import TilingOptions, input_window
from glacierstack import storage

__all__ = ["ChunkJob", "run_chunk"]


@dataclass(frozen=True)
class ChunkJob:
    """Everything a chunk task needs (small and picklable)."""

    cube: str
    out: str
    band_index: tuple[int, ...]
    region_shape: tuple[int, int]
    chunk_size: int
    tiling: TilingOptions
    torch_threads: int | None = None
    run_id: str = "legacy"
    """Claim of the run (:func:`glacierstack.storage.claim`), checked around each write."""


def _array(store: str, name: str, mode: str) -> zarr.Array:
    # opened per task (a metadata read): a cached handle could outlive an overwritten store
    return zarr.open_array(store=store, path=name, mode=mode)


def run_chunk(source: ModelSource, job: ChunkJob, iy: int, ix: int) -> int:
    """Predict output chunk ``(iy, ix)``, write it, then set its done marker. Returns tiles run."""
    if job.torch_threads is not None and torch.get_num_threads() != job.torch_threads:
        torch.set_num_threads(job.torch_threads)
    tiling = job.tiling
    model = load_cached(source, tiling.resolved_device())
    h, w = job.region_shape
    cs = job.chunk_size
    target = (slice(iy * cs, min((iy + 1) * cs, h)), slice(ix * cs, min((ix + 1) * cs, w)))
    wy, wx = input_window(job.region_shape, target, tiling)
    raw = storage.read_guarded(_array(job.cube, "features", "r"), (slice(None), wy, wx),
                               job.cube, "features")  # fmt: skip
    if list(job.band_index) != list(range(raw.shape[0])):
        raw = raw[list(job.band_index)]
    x, nodata = normalise(raw, model)
    del raw
    counter = [0]

    def count(n: int) -> None:
        counter[0] += n

    probs = blend_window(x, (wy.start, wx.start), job.region_shape, target, model, tiling, count)
    nodata = nodata[
        target[0].start - wy.start : target[0].stop - wy.start,
        target[1].start - wx.start : target[1].stop - wx.start,
    ]
    probs, classes = finish(probs, nodata)
    storage.check_owner(job.out, job.run_id)  # a store taken over by another run is left alone
    _array(job.out, "classes", "r+")[target] = classes
    _array(job.out, "probabilities", "r+")[(slice(None), *target)] = quantise(probs)
    for name, layer in zip(CONFIDENCE_LAYERS, confidence_layers(probs), strict=True):
        _array(job.out, name, "r+")[target] = quantise(layer)
    storage.check_owner(job.out, job.run_id)  # ... and its chunk is never marked done by us
    _array(job.out, DONE, "r+")[iy, ix] = 1  # marker last: a killed task leaves it unset
    return counter[0]
