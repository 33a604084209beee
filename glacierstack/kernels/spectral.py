"""Elementwise spectral kernels."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - jit
    """Normalised difference ``(a - b) / (a + b)`` of two 2-D arrays, as float32.

    Parameters
    ----------
    a, b
        Arrays of one shape (e.g. reflectances of two bands).

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape. NaN where either input is NaN **or where
        ``a + b == 0``** (the index is undefined there; we do not substitute 0, which would be
        a valid-looking value). The result is computed in float64 and not clipped: with
        Sentinel-2 L2A's BOA offset, reflectances can be slightly negative, so ``|index|``
        can exceed 1 where ``a + b`` is tiny.
    """
    out = np.empty(a.shape, np.float32)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            x = np.float64(a[i, j])
            y = np.float64(b[i, j])
            s = x + y
            if s == 0.0 or not np.isfinite(s):
                out[i, j] = np.nan
            else:
                out[i, j] = (x - y) / s
    return out
