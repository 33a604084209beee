"""Training patches from a glacierstack Zarr cube, as a PyTorch ``Dataset``.

Patch windows are defined with :mod:`xbatcher` (``BatchSchema`` over the cube's ``y``/``x``
dimensions); the pixels are then read directly, one contiguous slice per patch, either from an
in-memory copy of the cube (small cubes: the default when the features fit in
``memory_limit``) or from the Zarr arrays through a small per-worker cache of decoded chunk
blocks (large cubes). xbatcher's own per-sample ``isel`` path is far slower (see
``benchmarks/bench_loader.py``).

The split of the windows into ``train`` / ``val`` / ``test`` (random, as in the paper, or
spatially blocked) is a :class:`PatchSplit`, written as JSON into every run directory so that
evaluation and model comparisons use exactly the same patches.

The steps live in :mod:`cryonet.patchsource` (cube reads), :mod:`cryonet.patchsplit` (windows and
split) and :mod:`cryonet.patchloader` (class weights, dataset, sampler, loader); this module
re-exports their public names.
"""

from __future__ import annotations

from cryonet.patchloader import (
    PatchDataset,
    PatchSampler,
    batch_loader,
    class_counts,
    class_weights,
)
from cryonet.patchsource import CubeSource, open_cube
from cryonet.patchsplit import (
    SPLIT_FILE,
    PatchSplit,
    SplitConfig,
    make_split,
    patch_windows,
    split_json,
)

__all__ = [
    "SPLIT_FILE",
    "CubeSource",
    "PatchDataset",
    "PatchSampler",
    "PatchSplit",
    "SplitConfig",
    "batch_loader",
    "class_counts",
    "class_weights",
    "make_split",
    "open_cube",
    "patch_windows",
    "split_json",
]
