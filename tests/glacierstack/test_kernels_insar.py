"""Boxcar coherence/phase vs a direct NumPy/SciPy boxcar; estimator bias on simulated pairs."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage
from scipy.special import gammaln

from glacierstack.dispatch import apply_kernel
from glacierstack.kernels import boxcar_coherence


def _pair(shape, gamma, phase, seed=0):
    """Circular-Gaussian pair with true coherence ``gamma`` and phase of s1*conj(s2) = ``phase``."""
    rng = np.random.default_rng(seed)

    def cn():
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)

    a, b = cn(), cn()
    s1 = a
    s2 = (gamma * a + np.sqrt(1 - gamma**2) * b) * np.exp(-1j * phase)
    return s1.astype(np.complex64), s2.astype(np.complex64)


def _reference(s1, s2, wy, wx):
    """Direct boxcar with scipy.ndimage.uniform_filter (mode 'reflect' = mirror incl. edge)."""
    s1 = s1.astype(np.complex128)
    s2 = s2.astype(np.complex128)
    box = dict(size=(wy, wx), mode="reflect")
    cross = s1 * np.conj(s2)
    num = ndimage.uniform_filter(cross.real, **box) + 1j * ndimage.uniform_filter(cross.imag, **box)
    p1 = ndimage.uniform_filter(np.abs(s1) ** 2, **box)
    p2 = ndimage.uniform_filter(np.abs(s2) ** 2, **box)
    return np.abs(num) / np.sqrt(p1 * p2), np.angle(num)


@pytest.mark.parametrize(("wy", "wx"), [(5, 5), (3, 7), (1, 5)])
def test_matches_uniform_filter_boxcar(wy, wx):
    s1, s2 = _pair((40, 60), 0.6, 1.0, seed=wy * wx)
    ours = apply_kernel(
        boxcar_coherence,
        s1,
        s2,
        depth=(wy // 2, wx // 2),
        boundary="reflect",
        args=(wy, wx),
        outputs=("c", "p"),
    )
    coh, ph = _reference(s1, s2, wy, wx)
    np.testing.assert_allclose(ours[0], coh, atol=2e-6)
    np.testing.assert_allclose(np.angle(np.exp(1j * (ours[1] - ph))), 0, atol=2e-5)


def test_identical_phase_shifted_pair_has_coherence_one():
    s1, _ = _pair((20, 20), 0.0, 0.0)
    ours = apply_kernel(
        boxcar_coherence,
        s1,
        s1 * np.complex64(np.exp(-0.7j)),
        depth=2,
        args=(5, 5),
        outputs=("c", "p"),
    )
    inner = ours[:, 2:-2, 2:-2]
    np.testing.assert_allclose(inner[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(inner[1], 0.7, atol=1e-5)
    assert np.isnan(ours[:, 0]).all()  # default boundary "nan": edge windows are missing


def test_missing_and_zero_samples_give_nan():
    s1, s2 = _pair((30, 30), 0.5, 0.0)
    s1[10, 10] = np.nan
    s1[20:30, 20:30] = 0  # zero amplitude: coherence undefined
    s2[20:30, 20:30] = 0
    c = apply_kernel(
        boxcar_coherence, s1, s2, depth=1, boundary="reflect", args=(3, 3), outputs=("c", "p")
    )[0]
    assert np.isnan(c[9:12, 9:12]).all() and np.isfinite(c[7, 7])
    assert np.isnan(c[21:, 21:]).all() and np.isfinite(c[5, 25])


@pytest.mark.parametrize("chunks", [(37, 53), (3, 300), (200, 7)])
def test_numpy_and_dask_agree_across_chunk_boundaries(chunks):
    s1, s2 = _pair((200, 300), 0.4, -2.0, seed=3)
    s2[60:64, 70:75] = np.nan
    kw = dict(depth=(2, 3), boundary="reflect", args=(5, 7), outputs=("c", "p"))
    ours = apply_kernel(boxcar_coherence, s1, s2, **kw)
    lazy = apply_kernel(
        boxcar_coherence, da.from_array(s1, chunks=chunks), da.from_array(s2, chunks=chunks), **kw
    )
    np.testing.assert_array_equal(lazy.compute(), ours)


def _expected_gamma0(looks):
    """Mean sample coherence for true coherence 0, L looks: G(L) G(3/2) / G(L + 1/2)."""
    return np.exp(gammaln(looks) + gammaln(1.5) - gammaln(looks + 0.5))


def test_boxcar_estimator_is_biased_upwards_at_low_coherence():
    """Touzi et al. (1999): the sample coherence overestimates low true coherence."""
    wy = wx = 5
    means = {}
    for gamma in (0.0, 0.2, 0.5, 0.9):
        s1, s2 = _pair((250, 250), gamma, 0.5, seed=int(gamma * 10))
        c = apply_kernel(boxcar_coherence, s1, s2, depth=2, args=(wy, wx), outputs=("c", "p"))[0]
        means[gamma] = float(np.nanmean(c))
    assert abs(means[0.0] - _expected_gamma0(wy * wx)) < 0.01  # ~0.178 although the truth is 0
    bias = {g: m - g for g, m in means.items()}
    assert bias[0.0] > bias[0.2] > bias[0.5] > bias[0.9] > 0
    assert bias[0.9] < 0.02
