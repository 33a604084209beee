"""Hypothesis strategies for cryonet's plans: regions, tilings, chunkings, grids, splits.

Modelled on stackstac's ``testing/strategies.py``: small composable strategies that draw
*valid* inputs (a tiling whose overlap is below its tile size, a bounding box with positive
extent, a split whose fractions leave training patches), so property tests exercise the code's
logic instead of its argument checks. Sizes stay small so a property runs in milliseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from cryonet.infer.tiling import TilingOptions
from glacierstack.classes import NODATA_LABEL, NUM_CLASSES
from glacierstack.grid import Grid

__all__ = [
    "bboxes",
    "chunk_sizes",
    "grids",
    "label_grids",
    "region_shapes",
    "split_configs",
    "tilings",
]


def region_shapes(min_side: int = 1, max_side: int = 300) -> st.SearchStrategy[tuple[int, int]]:
    """Draw ``(height, width)`` of a region in pixels."""
    side = st.integers(min_side, max_side)
    return st.tuples(side, side)


@st.composite
def tilings(draw: Any, max_tile: int = 96) -> TilingOptions:
    """Draw a valid :class:`~cryonet.infer.TilingOptions` (``0 <= overlap < tile_size``) on CPU."""
    tile = draw(st.integers(1, max_tile))
    overlap = draw(st.integers(0, tile - 1))
    return TilingOptions(tile_size=tile, overlap=overlap, batch_size=draw(st.integers(1, 8)),
                         device="cpu")  # fmt: skip


def chunk_sizes(max_size: int = 256) -> st.SearchStrategy[int]:
    """Draw output chunk sides in pixels."""
    return st.integers(1, max_size)


@st.composite
def bboxes(draw: Any, resolution: float = 10.0, max_pixels: int = 200) -> tuple[float, ...]:
    """Draw a projected ``(minx, miny, maxx, maxy)`` box, a whole number of pixels on each side."""
    x0 = draw(st.integers(-1000, 1000)) * resolution + 500_000.0
    y0 = draw(st.integers(-1000, 1000)) * resolution + 3_100_000.0
    w, h = draw(st.integers(1, max_pixels)), draw(st.integers(1, max_pixels))
    return (x0, y0, x0 + w * resolution, y0 + h * resolution)


@st.composite
def grids(draw: Any, crs: str = "EPSG:32645") -> Grid:
    """Draw a :class:`~glacierstack.grid.Grid` on a UTM zone with 10, 20 or 30 m pixels."""
    res = draw(st.sampled_from([10.0, 20.0, 30.0]))
    return Grid(crs, draw(bboxes(resolution=res)), res)


@st.composite
def label_grids(draw: Any, min_side: int = 16, max_side: int = 96) -> np.ndarray:
    """Draw a ``uint8`` label image: blocks of random classes, some rows of nodata (255)."""
    h, w = draw(st.integers(min_side, max_side)), draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=(h // 4 + 1, w // 4 + 1)).astype(np.uint8)
    labels = np.kron(labels, np.ones((4, 4), np.uint8))[:h, :w]
    labels[: draw(st.integers(0, h // 4))] = NODATA_LABEL
    return labels


@st.composite
def split_configs(draw: Any, max_patch: int = 24) -> Any:
    """Draw a :class:`~cryonet.data.SplitConfig` with small patches and valid fractions."""
    from cryonet.data import SplitConfig

    patch = draw(st.integers(4, max_patch))
    test = draw(st.sampled_from([0.0, 0.1, 0.2, 0.3]))
    val = draw(st.sampled_from([0.0, 0.1, 0.2]))
    return SplitConfig(
        patch_size=patch,
        overlap=draw(st.integers(0, patch // 2)),
        test_fraction=test,
        val_fraction=val,
        method=draw(st.sampled_from(["random", "blocked"])),
        block_size=draw(st.integers(patch, 4 * patch)),
        min_valid_fraction=0.05,
        seed=draw(st.integers(0, 1000)),
    )
