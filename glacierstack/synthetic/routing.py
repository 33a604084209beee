"""Flow routing on a coarse DEM: depression filling, D8 receivers, upstream accumulation.

Pure Numba kernels on NumPy arrays (no xarray/dask).
"""

from __future__ import annotations

import numba
import numpy as np

# D8 neighbour offsets (row, col)
_DR = np.array([-1, -1, -1, 0, 0, 1, 1, 1], dtype=np.int64)
_DC = np.array([-1, 0, 1, -1, 1, -1, 0, 1], dtype=np.int64)


@numba.njit(cache=True)
def _heap_push(keys, idx, n, key, value):  # pragma: no cover - numba
    i = n
    keys[i] = key
    idx[i] = value
    while i > 0:
        p = (i - 1) // 2
        if keys[p] <= keys[i]:
            break
        keys[p], keys[i] = keys[i], keys[p]
        idx[p], idx[i] = idx[i], idx[p]
        i = p
    return n + 1


@numba.njit(cache=True)
def _heap_pop(keys, idx, n):  # pragma: no cover - numba
    key, value = keys[0], idx[0]
    n -= 1
    keys[0] = keys[n]
    idx[0] = idx[n]
    i = 0
    while True:
        lft = 2 * i + 1
        if lft >= n:
            break
        c = lft
        if lft + 1 < n and keys[lft + 1] < keys[lft]:
            c = lft + 1
        if keys[i] <= keys[c]:
            break
        keys[c], keys[i] = keys[i], keys[c]
        idx[c], idx[i] = idx[i], idx[c]
        i = c
    return key, value, n


@numba.njit(cache=True)
def fill_depressions(z, eps):  # pragma: no cover - numba
    """Priority-Flood+epsilon (Barnes et al., 2014): every cell drains to the grid edge.

    Returns a copy of ``z`` in which each depression is raised so that a strictly descending
    path (steps of at least ``eps``) leads from every cell to the border.
    """
    h, w = z.shape
    out = z.astype(np.float64).copy()
    closed = np.zeros((h, w), np.bool_)
    keys = np.empty(h * w, np.float64)
    idx = np.empty(h * w, np.int64)
    n = 0
    for i in range(h):
        for j in range(w):
            if i == 0 or j == 0 or i == h - 1 or j == w - 1:
                n = _heap_push(keys, idx, n, out[i, j], i * w + j)
                closed[i, j] = True
    while n > 0:
        key, c, n = _heap_pop(keys, idx, n)
        ci, cj = c // w, c % w
        for k in range(8):
            ni, nj = ci + _DR[k], cj + _DC[k]
            if ni < 0 or nj < 0 or ni >= h or nj >= w or closed[ni, nj]:
                continue
            closed[ni, nj] = True
            if out[ni, nj] <= key + eps:
                out[ni, nj] = key + eps
            n = _heap_push(keys, idx, n, out[ni, nj], ni * w + nj)
    return out


@numba.njit(cache=True)
def d8_receivers(z, dx):  # pragma: no cover - numba
    """Steepest-descent (D8) receiver of each cell as a flat index; -1 for outlets/pits."""
    h, w = z.shape
    rec = np.full(h * w, -1, np.int64)
    for i in range(h):
        for j in range(w):
            best = 0.0
            for k in range(8):
                ni, nj = i + _DR[k], j + _DC[k]
                if ni < 0 or nj < 0 or ni >= h or nj >= w:
                    continue
                dist = dx * (1.4142135623730951 if _DR[k] != 0 and _DC[k] != 0 else 1.0)
                s = (z[i, j] - z[ni, nj]) / dist
                if s > best:
                    best = s
                    rec[i * w + j] = ni * w + nj
    return rec


@numba.njit(cache=True)
def accumulate(order, rec, weight):  # pragma: no cover - numba
    """Sum ``weight`` over the upstream area of each cell (``order``: high to low)."""
    acc = weight.astype(np.float64).copy()
    for c in order:
        r = rec[c]
        if r >= 0:
            acc[r] += acc[c]
    return acc


def route(z: np.ndarray, dx: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill depressions and compute D8 routing.

    Returns
    -------
    filled, receivers, order
        The depression-filled DEM, the flat receiver index of each cell (-1 at the border
        outlets) and the flat cell indices sorted from high to low (donors before receivers).
    """
    filled = fill_depressions(np.ascontiguousarray(z, dtype=np.float64), 1e-3)
    rec = d8_receivers(filled, float(dx))
    order = np.argsort(-filled, axis=None, kind="stable")
    return filled, rec, order
