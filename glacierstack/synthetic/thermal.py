"""Land-surface temperature (Landsat 8/9 ST_B10, October, late morning).

Rules (``shared/SYNTHETIC.md``; lapse rate -6.5 K/km from the preset's reference elevation):

* clean ice and snow: 268-273 K, never above 273.15 K (melting point);
* debris over ice: 275-285 K, cooler where the debris is thin (the ice below keeps it cool;
  Mihalcea et al. 2008, Foster et al. 2012);
* rock and debris on stable ground: 280-295 K, sunlit slopes warmer, shaded cooler;
* lakes 275-280 K; vegetation 285-292 K;
* the sensor sees a ~100 m footprint resampled to 30 m: :func:`sensor_smooth`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from glacierstack.synthetic.noise import value_noise
from glacierstack.synthetic.surfaces import CLEAN_ICE, DEBRIS, VEGETATION, WATER, Surface

LAPSE_RATE = -0.0065
"""Temperature lapse rate (K/m)."""
MELTING_POINT = 273.15


def surface_temperature(
    surf: Surface, z_ref: float, seed: int, window: tuple[int, int, int, int]
) -> np.ndarray:
    """Surface temperature (K) of each 10 m pixel of a block."""
    z = surf.elevation.astype(np.float64)
    lapse = LAPSE_RATE * (z - z_ref)
    sun = np.clip(surf.sunlit, 0.0, 1.6) - 0.7
    n = value_noise(seed, "lst", window, 8.0)
    rock = 287.0 + lapse + 7.0 * sun + 1.2 * n
    ice = np.minimum(MELTING_POINT, 271.0 + 0.3 * lapse + 0.8 * n)
    deb = 275.5 + 7.0 * surf.debris_thickness + 0.5 * lapse + 2.5 * sun + 0.8 * n
    water = 277.5 + 1.0 * n
    veg = 288.5 + lapse + 2.5 * sun + 0.8 * n
    lab = surf.labels
    t = np.where(lab == CLEAN_ICE, ice, rock)
    t = np.where(lab == DEBRIS, deb, t)
    t = np.where(lab == WATER, water, t)
    t = np.where(lab == VEGETATION, veg, t)
    snow = surf.snow_fraction
    t = t * (1.0 - snow) + np.minimum(MELTING_POINT, 271.5 + 0.3 * lapse) * snow
    return t.astype(np.float32)


def sensor_smooth(t30: np.ndarray, footprint_m: float = 100.0, pixel_m: float = 30.0) -> np.ndarray:
    """Blur a 30 m temperature field to the TIRS ~100 m footprint (Gaussian, FWHM = footprint)."""
    sigma = footprint_m / 2.3548 / pixel_m
    return ndimage.gaussian_filter(t30, sigma, mode="nearest")
