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


GLCM_PROPERTIES: tuple[str, ...] = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "ASM",
    "energy",
    "entropy",
    "mean",
    "variance",
    "std",
    "correlation",
)
"""Properties of :func:`glcm_properties`, with scikit-image's ``graycoprops`` definitions;
pass their indices in this tuple as the kernel's ``props`` argument."""


@njit(cache=True, nogil=True)
def _window_props(
    q: np.ndarray,
    counts: np.ndarray,
    r0: int,
    c0: int,
    hy: int,
    hx: int,
    dy: int,
    dx: int,
    symmetric: bool,
    props: np.ndarray,
    out: np.ndarray,
    weight: float,
) -> None:  # pragma: no cover - jit
    """Add ``weight *`` the requested properties of one window's GLCM to ``out``.

    Sums run over the window's ``hy * hx`` pairs (origins ``q[r0:r0+hy, c0:c0+hx]``), not
    over the ``levels^2`` cells: a cell-weighted sum ``sum_ij P_ij f(P_ij)`` equals
    ``sum_pairs f(P(pair)) / n`` (each pair carries ``1/n`` of the mass; ``1/(2n)`` to
    ``(u, v)`` and to ``(v, u)`` when symmetric), with ``P(pair)`` read from ``counts``.
    Means, variances and covariance come from exact integer moment sums.
    """
    n = hy * hx
    norm = 1.0 / (2.0 * n) if symmetric else 1.0 / n
    need_p = False  # cell probabilities (ASM, energy, entropy) cost a lookup (and a log)
    need_log = False
    for k in range(props.shape[0]):
        need_p |= 3 <= props[k] <= 5
        need_log |= props[k] == 5
    su = np.int64(0)
    sv = np.int64(0)
    suu = np.int64(0)
    svv = np.int64(0)
    suv = np.int64(0)
    contrast = 0.0
    dissim = 0.0
    homog = 0.0
    asm = 0.0
    ent = 0.0
    for rr in range(r0, r0 + hy):
        for cc in range(c0, c0 + hx):
            u = np.int64(q[rr, cc])
            v = np.int64(q[rr + dy, cc + dx])
            su += u
            sv += v
            suu += u * u
            svv += v * v
            suv += u * v
            d = u - v
            contrast += d * d
            dissim += abs(d)
            homog += 1.0 / (1.0 + d * d)
            if need_p:
                cuv = counts[u, v] + counts[v, u] if symmetric else counts[u, v]
                p = cuv * norm
                asm += p
                if need_log:
                    ent -= np.log(p)
    contrast /= n
    dissim /= n
    homog /= n
    asm /= n
    ent /= n
    if symmetric:  # moments of the doubled pair set {(u, v), (v, u)}
        m = np.int64(2 * n)
        si = su + sv
        sj = si
        sii = suu + svv
        sjj = sii
        sij = 2 * suv
    else:
        m = np.int64(n)
        si = su
        sj = sv
        sii = suu
        sjj = svv
        sij = suv
    m2 = float(m) * float(m)
    mean_i = si / m
    var_i = (m * sii - si * si) / m2  # exact integer numerators
    var_j = (m * sjj - sj * sj) / m2
    cov = (m * sij - si * sj) / m2
    for k in range(props.shape[0]):
        code = props[k]
        if code == 0:
            val = contrast
        elif code == 1:
            val = dissim
        elif code == 2:
            val = homog
        elif code == 3:
            val = asm
        elif code == 4:
            val = np.sqrt(asm)
        elif code == 5:
            val = ent
        elif code == 6:
            val = mean_i
        elif code == 7:
            val = var_i
        elif code == 8:
            val = np.sqrt(var_i)
        else:
            si_ = np.sqrt(var_i)
            sj_ = np.sqrt(var_j)
            val = 1.0 if (si_ < 1e-15 or sj_ < 1e-15) else cov / (si_ * sj_)
        out[k] += weight * val


@njit(cache=True, nogil=True)
def glcm_properties(
    padded: np.ndarray,
    window: int,
    levels: int,
    vmin: float,
    vmax: float,
    offsets: np.ndarray,
    props: np.ndarray,
    symmetric: bool,
) -> np.ndarray:  # pragma: no cover - jit
    """Sliding-window GLCM properties (general path: one co-occurrence matrix per window).

    The window's count matrix is updated incrementally as the window slides along a row
    (pairs of the leaving column removed, of the entering column added); the properties are
    then summed over the window's pairs with cell probabilities read from the matrix:
    O(window^2) per pixel and offset, independent of ``levels``. Use
    :func:`glcm_dissimilarity` for dissimilarity alone (O(1) per pixel).

    Parameters
    ----------
    padded
        2-D float image padded by ``window // 2``.
    window, levels, vmin, vmax, offsets
        As in :func:`glcm_dissimilarity`.
    props
        int64 indices into :data:`GLCM_PROPERTIES`.
    symmetric
        Count each pair in both orders (``graycomatrix(symmetric=True)``); changes ASM,
        energy, entropy, mean, variance, std and correlation, not the other three.

    Returns
    -------
    numpy.ndarray
        float32 ``(len(props), H - window + 1, W - window + 1)``, each property averaged over
        the offsets; NaN where a pair in the window touches a missing pixel.
    """
    q = quantize(padded, levels, vmin, vmax)
    r = window // 2
    h = padded.shape[0] - 2 * r
    w = padded.shape[1] - 2 * r
    nprop = props.shape[0]
    out = np.zeros((nprop, h, w), np.float32)
    acc = np.zeros(nprop)
    counts = np.zeros((levels, levels), np.int64)
    weight = 1.0 / offsets.shape[0]
    for i in range(h):
        for k in range(offsets.shape[0]):
            dy = offsets[k, 0]
            dx = offsets[k, 1]
            hy = window - abs(dy)
            hx = window - abs(dx)
            a0 = i + max(0, -dy)
            b0 = max(0, -dx)
            counts[:, :] = 0
            bad = 0
            for j in range(w):
                if j == 0:
                    cols_add = range(b0, b0 + hx)
                else:
                    cols_add = range(j + b0 + hx - 1, j + b0 + hx)
                    co = j + b0 - 1  # origin column leaving the window
                    for rr in range(a0, a0 + hy):
                        u = q[rr, co]
                        v = q[rr + dy, co + dx]
                        if u < 0 or v < 0:
                            bad -= 1
                        else:
                            counts[u, v] -= 1
                for cc in cols_add:
                    for rr in range(a0, a0 + hy):
                        u = q[rr, cc]
                        v = q[rr + dy, cc + dx]
                        if u < 0 or v < 0:
                            bad += 1
                        else:
                            counts[u, v] += 1
                if bad > 0:
                    for p in range(nprop):
                        out[p, i, j] = np.nan
                    continue
                acc[:] = 0.0
                _window_props(q, counts, a0, j + b0, hy, hx, dy, dx, symmetric, props, acc, weight)
                for p in range(nprop):
                    out[p, i, j] += acc[p]
    return out
