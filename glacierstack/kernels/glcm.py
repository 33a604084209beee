"""Grey-level co-occurrence (GLCM) texture over a sliding window.

Conventions (identical to :func:`skimage.feature.graycomatrix` / :func:`graycoprops`):

* the image is first quantised to integer grey levels ``0 .. levels-1`` (:func:`quantize`);
* an offset ``(dy, dx)`` pairs pixel ``(r, c)`` with ``(r + dy, c + dx)``; only pairs with
  **both** pixels inside the window count (skimage: ``distance = hypot(dy, dx)``,
  ``angle = atan2(dy, dx)``, with rows increasing downwards);
* the matrix is normalised to sum 1 (``normed=True``). Dissimilarity
  ``sum_ij P[i, j] |i - j|`` is then the **mean of |g(p) - g(p + d)| over the pairs in the
  window**, and is the same for ``symmetric=True`` and ``symmetric=False`` (the symmetric
  matrix counts each pair twice with the same ``|i - j|``).

That identity is what the fast path uses: for one offset the window sum of
``|g(p) - g(p + d)|`` is a box sum over a ``(w - |dy|) x (w - |dx|)`` rectangle of the
difference image, updated with running sums in O(1) per pixel (integer arithmetic, so the
sum is exact). Several offsets are averaged (the mean of the per-offset dissimilarities, as
``graycoprops(...).mean()`` over the offsets would give).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_FLAG = np.int64(1) << np.int64(40)
"""Added to a running sum for each pair touching a missing pixel (marks the window invalid)."""


@njit(cache=True, nogil=True)
def quantize(
    image: np.ndarray, levels: int, vmin: float, vmax: float
) -> np.ndarray:  # pragma: no cover - jit
    """Quantise a 2-D float image to grey levels ``0 .. levels-1`` (int16; -1 = missing).

    Equal-width bins over ``[vmin, vmax]``: ``g = floor((v - vmin) / (vmax - vmin) * levels)``,
    clipped to ``[0, levels - 1]`` (so ``v <= vmin`` gives 0 and ``v >= vmax`` gives
    ``levels - 1``). Non-finite values give -1.

    Parameters
    ----------
    image
        2-D float array.
    levels
        Number of grey levels (2 .. 32767).
    vmin, vmax
        Quantisation range, ``vmax > vmin``.

    Returns
    -------
    numpy.ndarray
        int16 array of the same shape.
    """
    out = np.empty(image.shape, np.int16)
    scale = levels / (vmax - vmin)
    top = levels - 1
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            v = image[i, j]
            if not np.isfinite(v):
                out[i, j] = -1
                continue
            t = (np.float64(v) - vmin) * scale
            if t <= 0.0:
                out[i, j] = 0
            elif t >= top:
                out[i, j] = top
            else:
                out[i, j] = np.int16(t)
    return out


@njit(cache=True, nogil=True)
def _dissimilarity_sums(
    q: np.ndarray, window: int, dy: int, dx: int, out: np.ndarray, weight: float
) -> None:  # pragma: no cover - jit
    """Add ``weight * mean |q(p) - q(p + d)|`` over each window's pairs to ``out``.

    ``q`` is the quantised image padded by ``window // 2``; ``out`` has the unpadded shape.
    A window containing a pair with a missing pixel sets ``out`` to NaN.
    """
    h, w = out.shape
    hy = window - abs(dy)  # rows of pair origins inside one window
    hx = window - abs(dx)
    a0 = max(0, -dy)  # first pair-origin row/col relative to the window's top-left corner
    b0 = max(0, -dx)
    ncols = w + hx - 1
    inv_n = weight / (hy * hx)
    flag = np.int64(1) << np.int64(40)
    colsum = np.zeros(ncols, np.int64)

    for r in range(a0, a0 + hy):  # first output row: sum hy rows of differences
        for k in range(ncols):
            u = q[r, b0 + k]
            v = q[r + dy, b0 + k + dx]
            d = np.int64(abs(u - v))
            colsum[k] += flag if (u < 0) | (v < 0) else d

    for i in range(h):
        if i > 0:  # slide down: add the new bottom row, drop the old top row
            rn = i + a0 + hy - 1
            ro = i + a0 - 1
            for k in range(ncols):
                u = q[rn, b0 + k]
                v = q[rn + dy, b0 + k + dx]
                dn = flag if (u < 0) | (v < 0) else np.int64(abs(u - v))
                u = q[ro, b0 + k]
                v = q[ro + dy, b0 + k + dx]
                do = flag if (u < 0) | (v < 0) else np.int64(abs(u - v))
                colsum[k] += dn - do
        s = np.int64(0)
        for k in range(hx):
            s += colsum[k]
        for j in range(w):
            if j > 0:
                s += colsum[j + hx - 1] - colsum[j - 1]
            if s >= flag:
                out[i, j] = np.nan
            else:
                out[i, j] += s * inv_n


@njit(cache=True, nogil=True)
def glcm_dissimilarity(
    padded: np.ndarray,
    window: int,
    levels: int,
    vmin: float,
    vmax: float,
    offsets: np.ndarray,
) -> np.ndarray:  # pragma: no cover - jit
    """Sliding-window GLCM dissimilarity (fast running-sum path).

    Parameters
    ----------
    padded
        2-D float image padded by ``window // 2`` on every side.
    window
        Odd window size (pixels).
    levels
        Number of grey levels for :func:`quantize`.
    vmin, vmax
        Quantisation range.
    offsets
        int64 array ``(n, 2)`` of ``(dy, dx)`` pixel offsets, ``|dy|, |dx| < window``.

    Returns
    -------
    numpy.ndarray
        float32 ``(H - window + 1, W - window + 1)``: dissimilarity averaged over the
        offsets; NaN where the window holds a missing (non-finite) pixel that is part of a pair.
    """
    q = quantize(padded, levels, vmin, vmax)
    r = window // 2
    out = np.zeros((padded.shape[0] - 2 * r, padded.shape[1] - 2 * r), np.float32)
    weight = 1.0 / offsets.shape[0]
    for k in range(offsets.shape[0]):
        _dissimilarity_sums(q, window, offsets[k, 0], offsets[k, 1], out, weight)
    return out
