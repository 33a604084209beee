"""Resampling helpers between the nested 10/20/30/60/120 m grids."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def upsample(coarse: np.ndarray, window: tuple[int, int, int, int], factor: int) -> np.ndarray:
    """Bilinear value of a coarse field at the pixel centres of a fine window.

    ``window = (row0, col0, height, width)`` on the fine grid, whose pixels are ``factor`` times
    smaller than the coarse cells (same outer bounds). Edges are extended (``mode="nearest"``).
    """
    r0, c0, h, w = window
    rows = (np.arange(r0, r0 + h) + 0.5) / factor - 0.5
    cols = (np.arange(c0, c0 + w) + 0.5) / factor - 0.5
    # crop the coarse field to the window's footprint plus a margin, then interpolate
    i0 = max(int(np.floor(rows[0])) - 1, 0)
    j0 = max(int(np.floor(cols[0])) - 1, 0)
    i1 = min(int(np.ceil(rows[-1])) + 2, coarse.shape[0])
    j1 = min(int(np.ceil(cols[-1])) + 2, coarse.shape[1])
    sub = np.ascontiguousarray(coarse[i0:i1, j0:j1], dtype=np.float64)
    rr, cc = np.meshgrid(rows - i0, cols - j0, indexing="ij")
    return ndimage.map_coordinates(sub, [rr, cc], order=1, mode="nearest")


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor x factor`` blocks (last axes; shape divisible)."""
    *lead, h, w = a.shape
    if h % factor or w % factor:
        raise ValueError(f"array shape {a.shape} is not divisible by the block factor {factor}")
    return a.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))
