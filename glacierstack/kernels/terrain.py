"""Slope and aspect of a DEM by Horn's (1981) third-order finite difference."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def horn_slope_aspect(
    padded: np.ndarray, dx: float, dy: float, flat_aspect: float
) -> np.ndarray:  # pragma: no cover - jit
    """Slope and aspect (degrees) of a north-up DEM padded by one pixel.

    With the 3x3 neighbourhood (row 0 = north)::

        a b c
        d e f
        g h i

    Horn (1981) gives the east and north gradients

    ``dz/dx = ((c + 2f + i) - (a + 2d + g)) / (8 dx)``,
    ``dz/dy = ((a + 2b + c) - (g + 2h + i)) / (8 dy)``,

    slope ``= atan(hypot(dz/dx, dz/dy))`` and aspect = azimuth of the **downslope** direction,
    clockwise from north, in ``[0, 360)``: ``atan2(-dz/dx, -dz/dy)``.

    Parameters
    ----------
    padded
        2-D DEM (metres) padded by one pixel on every side.
    dx, dy
        Pixel width and height in metres (positive).
    flat_aspect
        Aspect assigned where both gradients are exactly zero (aspect undefined).

    Returns
    -------
    numpy.ndarray
        float32 ``(2, H - 2, W - 2)``: slope in degrees ``[0, 90)``, aspect in degrees.
        NaN where any of the 9 DEM values is NaN.
    """
    h = padded.shape[0] - 2
    w = padded.shape[1] - 2
    out = np.empty((2, h, w), np.float32)
    rad2deg = 180.0 / math.pi
    for i in range(h):
        for j in range(w):
            a = np.float64(padded[i, j])
            b = np.float64(padded[i, j + 1])
            c = np.float64(padded[i, j + 2])
            d = np.float64(padded[i + 1, j])
            f = np.float64(padded[i + 1, j + 2])
            g = np.float64(padded[i + 2, j])
            hh = np.float64(padded[i + 2, j + 1])
            ii = np.float64(padded[i + 2, j + 2])
            e = np.float64(padded[i + 1, j + 1])
            gx = ((c + 2.0 * f + ii) - (a + 2.0 * d + g)) / (8.0 * dx)
            gy = ((a + 2.0 * b + c) - (g + 2.0 * hh + ii)) / (8.0 * dy)
            if not (np.isfinite(gx) and np.isfinite(gy) and np.isfinite(e)):
                out[0, i, j] = np.nan
                out[1, i, j] = np.nan
                continue
            out[0, i, j] = math.atan(math.sqrt(gx * gx + gy * gy)) * rad2deg
            if gx == 0.0 and gy == 0.0:
                out[1, i, j] = flat_aspect
            else:
                az = math.atan2(-gx, -gy) * rad2deg
                if az < 0.0:
                    az += 360.0
                az32 = np.float32(az)
                if az32 >= np.float32(360.0):  # float32 rounding of 359.99999...
                    az32 = np.float32(0.0)
                out[1, i, j] = az32
    return out
