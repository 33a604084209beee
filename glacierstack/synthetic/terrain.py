"""Coarse terrain: a mountain range with a dendritic valley network, and its illumination.

The large-scale relief is built on the coarse (30 m) grid:

1. a ramp from the range crest down to the valley mouths (``RegionPreset.downvalley_azimuth``,
   jittered per seed) plus fractal (``|k|^-3``) and ridged noise;
2. a drainage network from D8 flow routing on that surface; every channel carves a U-shaped
   (parabolic) trough whose depth and half-width grow with upstream area as
   ``A^0.4`` and ``A^0.3`` (stream-power / glacial-trough scaling);
3. the result is mapped linearly onto the preset's elevation range (compressed around the ELA
   for small regions, :meth:`RegionPreset.vertical_scale`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import ndimage

from glacierstack.synthetic.noise import fractal_noise
from glacierstack.synthetic.presets import RegionPreset
from glacierstack.synthetic.routing import accumulate, route


def make_terrain(
    preset: RegionPreset,
    shape: tuple[int, int],
    dx: float,
    size_km: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Build the coarse DEM.

    Parameters
    ----------
    preset
        Region preset (elevation range, ELA, main drainage direction).
    shape, dx
        Coarse grid shape and cell size (m).
    size_km
        Region size (sets the vertical compression).
    rng
        Seeded generator.

    Returns
    -------
    z, azimuth
        Elevation (m, float64) and the down-valley azimuth used (degrees from north).
    """
    h, w = shape
    az = preset.downvalley_azimuth + rng.uniform(-25.0, 25.0)
    a = math.radians(az)
    # unit vector pointing down-valley in (east, north); rows increase southwards
    ex, ny = math.sin(a), math.cos(a)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (xx + 0.5) / w - 0.5
    v = 0.5 - (yy + 0.5) / h
    t = u * ex + v * ny  # position along the drainage direction
    t = (t - t.min()) / (t.max() - t.min())
    pad = max(h, w) // 4
    n1 = fractal_noise(rng, shape, beta=4.0, pad=pad)
    n2 = fractal_noise(rng, shape, beta=3.4, pad=pad)
    ridged = 1.0 - np.abs(n2)
    surface = (1.0 - t) + 0.22 * n1 + 0.10 * ridged
    # drainage network on the uncarved surface
    _, rec, order = route(surface, dx)
    area = accumulate(order, rec, np.ones(h * w)).reshape(shape) / (h * w)  # fraction of region
    depth = np.zeros(shape)
    # channel orders: troughs of bigger catchments are deeper and wider
    for a_min, d0, w0 in ((0.003, 0.22, 0.022), (0.015, 0.40, 0.04), (0.06, 0.6, 0.06)):
        chan = area >= a_min
        if not chan.any():
            continue
        dist, (ir, ic) = ndimage.distance_transform_edt(~chan, return_indices=True)
        a_near = area[ir, ic]
        scale = (a_near / a_min) ** 0.3
        half_w = w0 * max(h, w) * np.minimum(scale, 2.5)  # in cells
        dep = d0 * np.minimum((a_near / a_min) ** 0.4, 2.5) / 2.5
        depth = np.maximum(depth, dep * np.clip(1.0 - (dist / half_w) ** 2, 0.0, None))
    surface = surface - ndimage.gaussian_filter(depth, 1.0)
    lo, hi = np.percentile(surface, [0.5, 99.8])
    z_lo = preset.level(preset.z_min, size_km)
    z_hi = preset.level(preset.z_max, size_km)
    z = z_lo + (surface - lo) / (hi - lo) * (z_hi - z_lo)
    # soft limits: a little beyond the nominal range is fine, far beyond is not
    z = np.where(z > z_hi, z_hi + 0.3 * (z - z_hi), z)
    z = np.where(z < z_lo, z_lo + 0.3 * (z - z_lo), z)
    return z, az


def slope_aspect(z: np.ndarray, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope and aspect (radians; aspect clockwise from north, direction the slope faces)."""
    dzdy, dzdx = np.gradient(z, dx)  # rows go south: dz/drow = -dz/dnorth
    dz_east = dzdx
    dz_north = -dzdy
    slope = np.arctan(np.hypot(dz_east, dz_north))
    aspect = np.mod(np.arctan2(-dz_east, -dz_north), 2 * np.pi)
    return slope, aspect


def cos_incidence(
    slope: np.ndarray, aspect: np.ndarray, sun_zenith: float, sun_azimuth: float
) -> np.ndarray:
    """Cosine of the solar incidence angle on a tilted surface (angles of the sun in degrees)."""
    sz, sa = math.radians(sun_zenith), math.radians(sun_azimuth)
    return np.cos(sz) * np.cos(slope) + np.sin(sz) * np.sin(slope) * np.cos(sa - aspect)


@numba.njit(cache=True)
def _cast_shadow(z, dx, sun_zenith, sun_azimuth):  # pragma: no cover - numba
    h, w = z.shape
    sx = np.sin(sun_azimuth)  # towards the sun: east component
    sy = -np.cos(sun_azimuth)  # towards the sun: row direction (north = -row)
    rise = dx / np.tan(sun_zenith)  # ray rise per cell of horizontal travel
    zmax = z.max()
    out = np.zeros((h, w), np.bool_)
    for i in range(h):
        for j in range(w):
            zr = z[i, j]
            k = 1
            while True:
                r = i + sy * k
                c = j + sx * k
                if r < 0 or c < 0 or r > h - 1 or c > w - 1:
                    break
                zr_k = zr + rise * k
                if zr_k > zmax:
                    break
                # bilinear terrain height along the ray
                r0 = int(r)
                c0 = int(c)
                r1 = min(r0 + 1, h - 1)
                c1 = min(c0 + 1, w - 1)
                fr = r - r0
                fc = c - c0
                zt = (z[r0, c0] * (1 - fc) + z[r0, c1] * fc) * (1 - fr) + (
                    z[r1, c0] * (1 - fc) + z[r1, c1] * fc
                ) * fr
                if zt > zr_k:
                    out[i, j] = True
                    break
                k += 1
    return out


def cast_shadow(z: np.ndarray, dx: float, sun_zenith: float, sun_azimuth: float) -> np.ndarray:
    """Boolean cast-shadow mask: the ray towards the sun is blocked by terrain.

    Ray marching in steps of one cell along the solar azimuth (angles in degrees).
    """
    return _cast_shadow(
        np.ascontiguousarray(z, np.float64),
        float(dx),
        math.radians(sun_zenith),
        math.radians(sun_azimuth),
    )
