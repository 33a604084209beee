"""The tiling plan: global overlapping tiles, their Hann weights and the output chunk grid.

Pure NumPy (no torch, no Zarr): every function here is a property of the region's shape and
the :class:`TilingOptions`, so the plan can be tested on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "TilingOptions",
    "chunk_plan",
    "chunk_tiles",
    "default_chunk_size",
    "hann_window",
    "input_window",
    "tile_starts",
    "touching_starts",
]


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

    def __dask_tokenize__(self) -> tuple[object, ...]:
        """Token from the field values (task names of a run), never the object id."""
        return (
            "TilingOptions",
            self.tile_size,
            self.overlap,
            self.batch_size,
            self.device,
            self.amp,
        )

    @property
    def stride(self) -> int:
        """Distance between the starts of consecutive tiles."""
        return self.tile_size - self.overlap

    def resolved_device(self) -> torch.device:
        """Return the torch device, with ``"auto"`` resolved."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


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


def touching_starts(n: int, sl: slice, tiling: TilingOptions) -> list[int]:
    """Return the starts of the global tiles on an axis of length ``n`` that overlap ``sl``."""
    t = tiling.tile_size
    return [int(s) for s in tile_starts(n, t, tiling.overlap) if s < sl.stop and s + t > sl.start]


def chunk_tiles(
    region_shape: tuple[int, int], target: tuple[slice, slice], tiling: TilingOptions
) -> int:
    """Count the global tiles run for output ``target`` (its cost: one forward pass each)."""
    ny, nx = (len(touching_starts(n, s, tiling)) for n, s in zip(region_shape, target, strict=True))
    return ny * nx


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


def input_window(
    region_shape: tuple[int, int], target: tuple[slice, slice], tiling: TilingOptions
) -> tuple[slice, slice]:
    """Region pixels needed to run every global tile that touches ``target``."""
    out = []
    for n, sl in zip(region_shape, target, strict=True):
        st = touching_starts(n, sl, tiling)
        out.append(slice(int(min(st)), int(min(n, max(st) + tiling.tile_size))))
    return out[0], out[1]
