"""Deterministic noise fields.

Two kinds:

* **coarse** fields (:func:`fractal_noise`) are spectral-synthesis Gaussian random fields drawn
  with a seeded NumPy generator on the whole coarse (30 m) grid;
* **fine** fields (:func:`value_noise`, :func:`white_noise`) are computed per pixel from an
  integer hash of ``(seed, stream, row, col)`` in *global* pixel indices, so a block of the
  region is bit-identical whether it is generated alone or as part of the whole region (the
  block size never changes the output).
"""

from __future__ import annotations

import numba
import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_P1 = np.uint64(0xD6E8FEB86659FD93)
_P2 = np.uint64(0xA0761D6478BD642F)


@numba.njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    # splitmix64 finaliser
    z = (z ^ (z >> np.uint64(30))) * _M2
    z = (z ^ (z >> np.uint64(27))) * _M3
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _uniform(key: np.uint64, i: np.int64, j: np.int64) -> float:
    h = _mix(key ^ (np.uint64(i & 0xFFFFFFFF) * _P1))
    h = _mix(h ^ (np.uint64(j & 0xFFFFFFFF) * _P2) + _M1)
    return float(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def stream_key(seed: int, stream: str) -> np.uint64:
    """Hash key of a named noise stream (``stream`` is e.g. ``"s2/B04"``)."""
    h = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    for ch in stream.encode():
        h = np.uint64(
            (int(h) * 0x100000001B3 ^ ch) & 0xFFFFFFFFFFFFFFFF
        )  # FNV-style fold of the name
    return np.uint64(int(_mix(np.uint64(int(h) ^ 0xCBF29CE484222325))))


@numba.njit(cache=True)
def _white_uniform(key, r0, c0, h, w):  # pragma: no cover - numba
    out = np.empty((h, w), np.float64)
    for i in range(h):
        for j in range(w):
            out[i, j] = _uniform(key, r0 + i, c0 + j)
    return out


@numba.njit(cache=True)
def _white_normal(key, r0, c0, h, w):  # pragma: no cover - numba
    out = np.empty((h, w), np.float64)
    k2 = _mix(key + _M1)
    for i in range(h):
        for j in range(w):
            u1 = _uniform(key, r0 + i, c0 + j)
            u2 = _uniform(k2, r0 + i, c0 + j)
            out[i, j] = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)
    return out


@numba.njit(cache=True)
def _value_noise(key, r0, c0, h, w, cell, octaves, gain):  # pragma: no cover - numba
    out = np.zeros((h, w), np.float64)
    amp = 1.0
    norm = 0.0
    c = cell
    for o in range(octaves):
        ko = _mix(key + np.uint64(o + 1) * _M1)
        for i in range(h):
            fy = (r0 + i + 0.5) / c
            iy = np.int64(np.floor(fy))
            ty = fy - iy
            ty = ty * ty * (3.0 - 2.0 * ty)
            for j in range(w):
                fx = (c0 + j + 0.5) / c
                ix = np.int64(np.floor(fx))
                tx = fx - ix
                tx = tx * tx * (3.0 - 2.0 * tx)
                v00 = _uniform(ko, iy, ix)
                v01 = _uniform(ko, iy, ix + 1)
                v10 = _uniform(ko, iy + 1, ix)
                v11 = _uniform(ko, iy + 1, ix + 1)
                v = (v00 * (1 - tx) + v01 * tx) * (1 - ty) + (v10 * (1 - tx) + v11 * tx) * ty
                out[i, j] += amp * (2.0 * v - 1.0)
        norm += amp * amp
        amp *= gain
        c = max(c / 2.0, 1.0)
    # one octave of smoothstep-interpolated uniform(-1, 1) lattice noise has std ~0.41
    return out / (np.sqrt(norm) * 0.41)


def white_noise(
    seed: int, stream: str, window: tuple[int, int, int, int], kind: str = "normal"
) -> np.ndarray:
    """Per-pixel white noise on a window ``(row0, col0, height, width)`` of a grid.

    ``kind="normal"``: standard normal; ``kind="uniform"``: uniform on [0, 1).
    """
    r0, c0, h, w = window
    key = stream_key(seed, stream)
    if kind == "normal":
        return _white_normal(key, r0, c0, h, w)
    if kind == "uniform":
        return _white_uniform(key, r0, c0, h, w)
    raise ValueError(f"white noise kind must be 'normal' or 'uniform', got {kind!r}")


def value_noise(
    seed: int,
    stream: str,
    window: tuple[int, int, int, int],
    cell: float,
    octaves: int = 3,
    gain: float = 0.5,
) -> np.ndarray:
    """Smooth multi-octave lattice ("value") noise, zero mean and roughly unit variance.

    Parameters
    ----------
    seed, stream
        Seed and stream name (independent streams for different fields).
    window
        ``(row0, col0, height, width)`` in global pixel indices.
    cell
        Lattice spacing of the first (coarsest) octave, in pixels.
    octaves, gain
        Number of octaves (each half the spacing of the previous) and amplitude ratio.
    """
    r0, c0, h, w = window
    return _value_noise(stream_key(seed, stream), r0, c0, h, w, float(cell), octaves, gain)


def fractal_noise(
    rng: np.random.Generator, shape: tuple[int, int], beta: float, pad: int = 0
) -> np.ndarray:
    """Gaussian random field with power spectrum ``|k|^-beta``, standardised to unit variance.

    Made by spectral synthesis (filtered white noise in the Fourier domain) on a grid padded by
    ``pad`` cells on each side to soften the periodic wrap-around, then cropped.
    """
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad
    white = rng.standard_normal((h, w))
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf
    field = np.fft.irfft2(np.fft.rfft2(white) * k ** (-beta / 2.0), s=(h, w))
    field = field[pad : pad + shape[0], pad : pad + shape[1]]
    return (field - field.mean()) / field.std()
