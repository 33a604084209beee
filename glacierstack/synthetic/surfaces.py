"""Per-pixel surface state at 10 m: classes, mixtures and reflectance spectra."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from glacierstack.synthetic.noise import value_noise, white_noise
from glacierstack.synthetic.spectra import (
    ENDMEMBERS,
    VEG_FRACTION_CLASS,
    VEG_FRACTION_SPARSE,
    WAVELENGTH_POSITION,
)

BACKGROUND, CLEAN_ICE, DEBRIS, WATER, VEGETATION = 0, 1, 2, 3, 4
DIFFUSE_FRACTION = 0.15
"""Share of diffuse sky light in the irradiance (what is left in cast shadow)."""


@dataclass(frozen=True)
class Surface:
    """10 m surface state of one block (arrays of the block's shape)."""

    labels: np.ndarray
    """uint8 class map (0 background, 1 clean ice, 2 debris, 3 water, 4 vegetation)."""
    elevation: np.ndarray
    """Elevation (m, bilinear from the 30 m DEM)."""
    slope: np.ndarray
    """Slope (radians)."""
    sunlit: np.ndarray
    """Direct-irradiance factor ``cos(i) / cos(sun zenith)`` times (1 - cast shadow)."""
    illumination: np.ndarray
    """Total irradiance factor (1 on flat sunlit ground)."""
    snow_fraction: np.ndarray
    """Seasonal snow cover on background pixels (0..1)."""
    debris_thickness: np.ndarray
    """Relative debris thickness (0..1) on debris pixels."""
    speed: np.ndarray
    """Ice speed (m/yr; 0 off-glacier)."""
    vx: np.ndarray
    """Eastward ice velocity (m/yr)."""
    vy: np.ndarray
    """Northward ice velocity (m/yr)."""
    reflectance: np.ndarray
    """Noise-free top-of-canopy surface reflectance as seen by S2, ``(12, h, w)`` float32."""


def surface_reflectance(
    labels: np.ndarray,
    above_ela: np.ndarray,
    snow_fraction: np.ndarray,
    veg_fraction: np.ndarray,
    debris_thickness: np.ndarray,
    brightness: np.ndarray,
    tilt: np.ndarray,
    turbidity: np.ndarray,
    dust: np.ndarray,
) -> np.ndarray:
    """Mix endmember spectra per pixel (before illumination).

    Parameters
    ----------
    labels
        Class map.
    above_ela
        0..1: 0 bare ice, 1 fresh snow (firn in between) on clean-ice pixels.
    snow_fraction, veg_fraction
        Snow and green-vegetation cover (0..1).
    debris_thickness
        0..1; thin debris (< 1) lets some ice show through.
    brightness, tilt
        Lithology: multiplicative brightness and spectral slope shared by rock **and** debris
        (the same distributions, so optical bands can hardly separate them).
    turbidity
        Multiplicative brightness of lake water (suspended sediment).
    dust
        Fraction of debris dust on bare ice.

    Returns
    -------
    numpy.ndarray
        ``(12, h, w)`` float32 reflectance.
    """
    masks = {c: labels == c for c in (CLEAN_ICE, DEBRIS, WATER, VEGETATION)}
    snow_mix = np.clip(0.4 + 0.6 * snow_fraction, 0, 1)
    ice_show = 0.35 * (1.0 - debris_thickness) ** 2  # thin debris lets ice show through
    out = np.empty((len(WAVELENGTH_POSITION),) + labels.shape, np.float32)
    for k, pos in enumerate(WAVELENGTH_POSITION):  # band by band: memory of one band
        E = {name: float(v[k]) for name, v in ENDMEMBERS.items()}
        lith = brightness * (1.0 + tilt * (pos - 0.5))
        rock = E["rock"] * lith
        snow = E["firn"] + (E["fresh_snow"] - E["firn"]) * snow_mix
        # background: rock + seasonal snow + sparse plants
        band = rock * (1.0 - snow_fraction - veg_fraction) + snow * snow_fraction
        band += E["vegetation"] * veg_fraction
        # clean ice: bare (dusty) ice below the ELA, firn and fresh snow above
        a = above_ela
        ice = (E["ice"] * (1 - dust) + E["debris"] * dust) * (1 - a) + (
            E["firn"] * (1 - a) + E["fresh_snow"] * a
        ) * a
        band = np.where(masks[CLEAN_ICE], ice, band)
        deb = E["debris"] * lith * (1 - ice_show) + E["ice"] * ice_show
        band = np.where(masks[DEBRIS], deb, band)
        band = np.where(masks[WATER], E["water"] * turbidity, band)
        veg = E["vegetation"] * veg_fraction + rock * (1.0 - veg_fraction)
        out[k] = np.where(masks[VEGETATION], veg, band)
    return out


def render_surface(scene, window: tuple[int, int, int, int]) -> Surface:  # noqa: ANN001
    """Render the 10 m surface state of ``window = (row0, col0, height, width)``.

    Every random field is a function of global pixel indices (hash noise), so a block is the
    same whether rendered alone or as part of a bigger window.
    """
    from glacierstack.synthetic.sample import upsample

    seed = scene.seed
    p = scene.preset
    s = scene.vertical_scale
    g = scene.glaciers

    def up(a: np.ndarray) -> np.ndarray:
        return upsample(a, window, factor=3)

    def vn(name: str, cell: float, octaves: int = 3) -> np.ndarray:
        return value_noise(seed, name, window, cell, octaves)

    z = up(scene.z)
    slope = up(scene.slope)
    cos_i = up(scene.cos_i)
    sunlit = np.clip(cos_i, 0.0, None) / math.cos(math.radians(p.sun_zenith))
    sunlit = sunlit * (1.0 - np.clip(up(scene.shadow), 0.0, 1.0))
    illum = DIFFUSE_FRACTION * up(scene.sky_view) + (1.0 - DIFFUSE_FRACTION) * sunlit

    glacier = (up(g.glacier) + 12.0 * vn("glacier", 6.0)) > 0
    water = ((up(g.lake) + 8.0 * vn("lake", 5.0)) > 0) & ~glacier
    debris_ind = up(g.debris) + 0.15 * vn("debris", 8.0)
    moraine = up(g.moraine) + 8.0 * vn("moraine", 4.0)
    debris = glacier & ((debris_ind > 0) | (moraine > 0))
    vpot = up(scene.vegetation) + 0.6 * vn("vegetation", 4.0, 4)
    veg = (vpot > 0) & ~glacier & ~water
    labels = np.zeros(z.shape, np.uint8)
    labels[glacier] = CLEAN_ICE
    labels[debris] = DEBRIS
    labels[water] = WATER
    labels[veg] = VEGETATION

    snow = np.clip(up(scene.snow) + 0.8 * vn("snow", 5.0, 4), 0.0, 1.0)
    snow = np.where(labels == BACKGROUND, snow, 0.0)
    veg_frac = np.where(
        veg,
        VEG_FRACTION_CLASS + (1 - VEG_FRACTION_CLASS) * np.clip(vpot / 1.5, 0, 1),
        VEG_FRACTION_SPARSE * np.clip(1.0 + vpot, 0.0, 1.0) * (1.0 - snow),
    )
    thick = np.clip(up(g.thickness) + 0.15 * vn("thickness", 6.0), 0.0, 1.0)
    thick = np.where(moraine > 0, np.maximum(thick, 0.8), thick)
    above = np.clip((z - scene.ela) / (250.0 * s) + 0.3 * vn("firnline", 10.0), 0.0, 1.0)
    brightness = (
        1.0 + 0.16 * vn("lithology", 40.0, 4) + 0.05 * white_noise(seed, "lithology/white", window)
    )
    tilt = 0.08 * vn("lithology/tilt", 60.0, 3)
    turbidity = np.clip(1.0 + 0.2 * vn("turbidity", 10.0), 0.6, 1.5)
    dust = np.clip(0.06 + 0.05 * vn("dust", 8.0), 0.0, 0.2)
    refl = surface_reflectance(
        labels, above, snow, veg_frac, thick, brightness, tilt, turbidity, dust
    )
    speed = np.hypot(up(g.vx), up(g.vy)) * glacier
    return Surface(
        labels=labels,
        elevation=z.astype(np.float32),
        slope=slope.astype(np.float32),
        sunlit=sunlit.astype(np.float32),
        illumination=illum.astype(np.float32),
        snow_fraction=snow.astype(np.float32),
        debris_thickness=np.where(debris, thick, 0.0).astype(np.float32),
        speed=speed.astype(np.float32),
        vx=(up(g.vx) * glacier).astype(np.float32),
        vy=(up(g.vy) * glacier).astype(np.float32),
        reflectance=refl * illum[None].astype(np.float32),
    )
