"""Boxcar (multilook) estimator of InSAR coherence and interferometric phase."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def boxcar_coherence(
    ref: np.ndarray, sec: np.ndarray, wy: int, wx: int
) -> np.ndarray:  # pragma: no cover - jit
    """Coherence magnitude and phase of a co-registered complex pair over a boxcar window.

    ``gamma = |sum s1 conj(s2)| / sqrt(sum |s1|^2 * sum |s2|^2)`` and
    ``phase = angle(sum s1 conj(s2))`` (radians, ``(-pi, pi]``), sums over a ``wy x wx``
    window centred on each pixel. This is the maximum-likelihood-style sample estimator; it is
    **biased upwards at low coherence** (for ``L = wy * wx`` independent looks and true
    coherence 0 its mean is about ``sqrt(pi / (4 L))``; Touzi et al. 1999, IEEE TGRS 37(1)).

    Parameters
    ----------
    ref, sec
        complex64/complex128 images padded by ``(wy // 2, wx // 2)``.
    wy, wx
        Odd window height and width.

    Returns
    -------
    numpy.ndarray
        float32 ``(2, H - wy + 1, W - wx + 1)``: coherence in ``[0, 1]`` and phase.
        NaN where the window holds a non-finite sample, or where either sum of powers is 0.
    """
    ry = wy // 2
    rx = wx // 2
    h = ref.shape[0] - 2 * ry
    w = ref.shape[1] - 2 * rx
    ncols = ref.shape[1]
    out = np.empty((2, h, w), np.float32)
    # column sums over the current wy rows: Re/Im of s1 s2*, |s1|^2, |s2|^2, missing count
    cre = np.zeros(ncols)
    cim = np.zeros(ncols)
    cp1 = np.zeros(ncols)
    cp2 = np.zeros(ncols)
    cbad = np.zeros(ncols, np.int64)

    for i in range(h):
        # Column sums are rebuilt from the wy rows of every output row and window sums from
        # wx column sums (O(wy + wx) per pixel): no running add/subtract, so no drift or
        # cancellation residue where bright areas border zero-amplitude ones.
        cre[:] = 0.0
        cim[:] = 0.0
        cp1[:] = 0.0
        cp2[:] = 0.0
        cbad[:] = 0
        for r in range(i, i + wy):
            for k in range(ncols):
                a = ref[r, k]
                b = sec[r, k]
                if (
                    np.isfinite(a.real)
                    and np.isfinite(a.imag)
                    and np.isfinite(b.real)
                    and np.isfinite(b.imag)
                ):
                    cre[k] += a.real * b.real + a.imag * b.imag
                    cim[k] += a.imag * b.real - a.real * b.imag
                    cp1[k] += a.real * a.real + a.imag * a.imag
                    cp2[k] += b.real * b.real + b.imag * b.imag
                else:
                    cbad[k] += 1
        for j in range(w):
            sre = 0.0
            sim = 0.0
            sp1 = 0.0
            sp2 = 0.0
            sbad = 0
            for k in range(j, j + wx):
                sre += cre[k]
                sim += cim[k]
                sp1 += cp1[k]
                sp2 += cp2[k]
                sbad += cbad[k]
            den = sp1 * sp2
            if sbad > 0 or not den > 0.0:
                out[0, i, j] = np.nan
                out[1, i, j] = np.nan
            else:
                out[0, i, j] = min(math.sqrt(sre * sre + sim * sim) / math.sqrt(den), 1.0)
                out[1, i, j] = math.atan2(sim, sre)
    return out
