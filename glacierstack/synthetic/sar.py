"""Sentinel-1 C-band repeat-pass pair (24 days): true coherence, backscatter and SLC pair.

The pair is generated so that the interferometric coherence is exactly the prescribed
``gamma`` in expectation: with ``c1, c2`` independent circular complex Gaussians of unit
variance (fully developed speckle: Rayleigh amplitudes),

``s1 = A c1``,  ``s2 = A (gamma c1 + sqrt(1 - gamma^2) c2) exp(-i phi)``,

so ``E[s1 s2*] / sqrt(E|s1|^2 E|s2|^2) = gamma exp(i phi)``, with ``phi`` a smooth
atmospheric/topographic residual phase screen. A boxcar estimate over ``N`` looks is biased
upwards at low ``gamma`` (about ``sqrt(pi / 4N)`` at ``gamma = 0``; Touzi et al. 1999).

Coherence rules (``shared/SYNTHETIC.md``): stable bare rock 0.6-0.9 (lower on very steep
slopes and under changing snow), moving clean ice 0.1-0.25 (lower when faster), debris-covered
ice 0.2-0.4, water 0.05-0.15, vegetation 0.2-0.5.
"""

from __future__ import annotations

import math

import numpy as np

from glacierstack.synthetic.noise import value_noise, white_noise
from glacierstack.synthetic.surfaces import CLEAN_ICE, DEBRIS, VEGETATION, WATER, Surface


def true_coherence(surf: Surface, seed: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """Return the true (ensemble) 24-day coherence of each pixel."""
    n = value_noise(seed, "coherence", window, 6.0)
    steep = np.clip((surf.slope - math.radians(40.0)) / math.radians(20.0), 0.0, 1.0)
    rock = (0.75 + 0.1 * n - 0.25 * steep) * (1.0 - 0.75 * surf.snow_fraction)
    v = surf.speed
    ice = 0.24 - 0.12 * np.clip(v / 40.0, 0.0, 1.0) + 0.02 * n
    deb = 0.38 - 0.16 * np.clip(v / 12.0, 0.0, 1.0) + 0.03 * n
    water = 0.10 + 0.03 * n
    veg = 0.35 + 0.1 * n
    lab = surf.labels
    g = np.where(lab == CLEAN_ICE, ice, rock)
    g = np.where(lab == DEBRIS, deb, g)
    g = np.where(lab == WATER, water, g)
    g = np.where(lab == VEGETATION, veg, g)
    return np.clip(g, 0.02, 0.95).astype(np.float32)


def backscatter(surf: Surface, seed: int, window: tuple[int, int, int, int]) -> np.ndarray:
    """Mean VV backscatter (linear sigma0) of each pixel."""
    base = np.select(
        [
            surf.labels == CLEAN_ICE,
            surf.labels == DEBRIS,
            surf.labels == WATER,
            surf.labels == VEGETATION,
        ],
        [0.12, 0.15, 0.006, 0.07],
        default=0.18,
    )
    rough = np.exp(0.35 * value_noise(seed, "sigma0", window, 10.0))
    return (base * rough).astype(np.float32)


def slc_pair(
    gamma: np.ndarray,
    sigma0: np.ndarray,
    phase: np.ndarray,
    seed: int,
    window: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Complex64 reference and secondary images with coherence ``gamma`` and phase ``phase``."""
    amp = np.sqrt(sigma0)
    c1 = (
        white_noise(seed, "s1/1re", window) + 1j * white_noise(seed, "s1/1im", window)
    ) / math.sqrt(2)
    c2 = (
        white_noise(seed, "s1/2re", window) + 1j * white_noise(seed, "s1/2im", window)
    ) / math.sqrt(2)
    s1 = amp * c1
    s2 = (
        amp * (gamma * c1 + np.sqrt(1.0 - gamma.astype(np.float64) ** 2) * c2) * np.exp(-1j * phase)
    )
    return s1.astype(np.complex64), s2.astype(np.complex64)
