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

Modules, in the order a run uses them
-------------------------------------
``tiling``    the tile plan (:class:`TilingOptions`, :func:`tile_starts`, :func:`chunk_plan`)
``sources``   model sources and the per-worker cache (:class:`CheckpointModel`,
              :class:`InMemoryModel`, :func:`load_cached`)
``ensemble``  test-time augmentation and ensembles as one more source (:class:`EnsembleModel`)
``blend``     the in-memory kernel (normalise, run tiles, Hann blend; :func:`predict_array`)
``mosaic``    the output store (layout, done markers, completion; :func:`open_mosaic`)
``task``      one chunk task (read window, blend, write, mark done)
``schedule``  running the chunk tasks on a Dask scheduler
``run``       :func:`predict`, the driver
"""

from __future__ import annotations

from cryonet.infer.blend import PROBABILITY_SCALE, predict_array
from cryonet.infer.ensemble import DIHEDRAL, AveragedModule, EnsembleModel, model_source
from cryonet.infer.mosaic import open_mosaic
from cryonet.infer.run import predict
from cryonet.infer.sources import (
    CheckpointModel,
    InMemoryModel,
    LoadedModel,
    ModelSource,
    clear_model_cache,
    load_cached,
    model_fingerprint,
    model_load_count,
)
from cryonet.infer.tiling import (
    TilingOptions,
    chunk_plan,
    default_chunk_size,
    hann_window,
    tile_starts,
)

__all__ = [
    "DIHEDRAL",
    "PROBABILITY_SCALE",
    "AveragedModule",
    "EnsembleModel",
    "CheckpointModel",
    "InMemoryModel",
    "LoadedModel",
    "ModelSource",
    "TilingOptions",
    "chunk_plan",
    "clear_model_cache",
    "default_chunk_size",
    "hann_window",
    "load_cached",
    "model_fingerprint",
    "model_load_count",
    "model_source",
    "open_mosaic",
    "predict",
    "predict_array",
    "tile_starts",
]
