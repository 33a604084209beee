"""The coarse (30 m) description of a synthetic region, from which every product is rendered."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
from pyproj import Transformer
from scipy import ndimage

from glacierstack.grid import Grid
from glacierstack.synthetic.glaciers import GlacierFields, make_glaciers
from glacierstack.synthetic.noise import fractal_noise
from glacierstack.synthetic.presets import RegionPreset, get_preset
from glacierstack.synthetic.routing import route
from glacierstack.synthetic.terrain import cast_shadow, cos_incidence, make_terrain, slope_aspect

COARSE_RESOLUTION = 30.0
"""Cell size (m) of the coarse grid (also the DEM and Landsat grids)."""
ALIGN = 120.0
"""Region bounds are multiples of this (m) so the 10/20/30/60/120 m grids nest exactly."""


@dataclass(frozen=True)
class Scene:
    """Coarse fields of a region (arrays on :attr:`coarse`), the input of the 10 m renderer."""

    preset: RegionPreset
    seed: int
    size_km: float
    grid: Grid
    """The 10 m region grid."""
    coarse: Grid
    """The 30 m grid (same bounds)."""
    downvalley_azimuth: float
    z: np.ndarray
    """DEM (m) including ice-surface smoothing and flat lakes."""
    slope: np.ndarray
    """Slope (radians)."""
    cos_i: np.ndarray
    """Cosine of the solar incidence angle."""
    shadow: np.ndarray
    """Cast-shadow fraction 0..1 (softened)."""
    sky_view: np.ndarray
    """Sky-view factor approximation ``(1 + cos slope) / 2``."""
    glaciers: GlacierFields
    vegetation: np.ndarray
    """Vegetation potential (> 0 vegetated)."""
    snow: np.ndarray
    """Seasonal snow-patch potential (> 0 snow; 1 full cover)."""
    phase: np.ndarray
    """Smooth interferometric phase screen (radians)."""

    @property
    def ela(self) -> float:
        """ELA of this (possibly vertically compressed) region (m)."""
        return self.preset.ela

    @property
    def vertical_scale(self) -> float:
        """Vertical compression factor of this region."""
        return self.preset.vertical_scale(self.size_km)


def region_grid(preset: RegionPreset, size_km: float, resolution: float = 10.0) -> Grid:
    """Return the region grid: ``size_km`` (snapped to 120 m) square, centred on the preset."""
    if size_km <= 0:
        raise ValueError(f"size_km must be positive, got {size_km}")
    side = max(1, round(size_km * 1000.0 / ALIGN)) * ALIGN
    x0, y0 = Transformer.from_crs("EPSG:4326", preset.crs, always_xy=True).transform(
        preset.lon, preset.lat
    )
    xmin = math.floor((x0 - side / 2) / ALIGN) * ALIGN
    ymin = math.floor((y0 - side / 2) / ALIGN) * ALIGN
    return Grid(preset.crs, (xmin, ymin, xmin + side, ymin + side), resolution)


def build_scene(
    preset: str | RegionPreset, size_km: float = 20.0, seed: int = 0, year: int | None = None
) -> Scene:
    """Build the coarse description of a region (terrain, glaciers, lakes, vegetation, snow).

    Parameters
    ----------
    preset
        Preset name or object.
    size_km
        Side length of the square region (km), snapped to 120 m.
    seed
        Random seed; the same seed gives the same region.
    year
        Observation year (default: the preset's). Another year keeps the terrain, vegetation,
        snow and every random field of the reference year and only recomputes the glaciers for
        an ELA shifted by :attr:`RegionPreset.ela_rise_per_year` per year (see
        :meth:`RegionPreset.at_year`): later years have smaller glaciers, retreated termini.
    """
    p = get_preset(preset)
    if year is not None:
        p = p.at_year(year)
    grid = region_grid(p, size_km)
    coarse = grid.with_resolution(COARSE_RESOLUTION)
    size = (grid.bounds[2] - grid.bounds[0]) / 1000.0
    rng = np.random.default_rng(np.random.SeedSequence([seed, 20181015]))
    dx = COARSE_RESOLUTION
    z0, az = make_terrain(p, coarse.shape, dx, size, rng)
    filled, rec, order = route(z0, dx)
    if p.ela_offset:
        # the glaciers of the shifted climate from a copy of the generator; the reference run
        # advances it, so every later random field is the reference year's
        glaciers = make_glaciers(p, z0, filled, rec, order, dx, size, copy.deepcopy(rng))
        make_glaciers(replace(p, ela_offset=0.0), z0, filled, rec, order, dx, size, rng)
    else:
        glaciers = make_glaciers(p, z0, filled, rec, order, dx, size, rng)
    z = glaciers.z
    slope, aspect = slope_aspect(z, dx)
    cos_i = cos_incidence(slope, aspect, p.sun_zenith, p.sun_azimuth)
    shadow = ndimage.gaussian_filter(
        cast_shadow(z, dx, p.sun_zenith, p.sun_azimuth).astype(np.float64), 0.6
    )
    sky_view = (1.0 + np.cos(slope)) / 2.0
    s = p.vertical_scale(size)
    ice = glaciers.glacier > 0
    d_ice = ndimage.distance_transform_edt(~ice) * dx if ice.any() else np.full(z.shape, 1e6)
    # vegetation: below the treeline, on gentle slopes, off the recently deglaciated forefield
    veg = np.minimum.reduce(
        [
            (p.level(p.treeline, size) - z) / (150.0 * s),
            (math.radians(32.0) - slope) / math.radians(8.0),
            (d_ice - 120.0) / 120.0,
        ]
    )
    veg = veg + 2.0 * (p.vegetation_amount - 0.5) + 0.8 * fractal_noise(rng, z.shape, 3.0)
    # seasonal snow patches: above the snowline, favoured on shaded (north-facing) ground
    northness = np.cos(aspect) * np.sin(slope)
    snow = (z - p.level(p.snowline, size)) / (400.0 * s) + 1.5 * northness - 2.1
    snow = snow + 0.7 * fractal_noise(rng, z.shape, 3.0)
    snow = np.where(slope > math.radians(45.0), snow - 1.0, snow)
    phase = 2.0 * fractal_noise(rng, z.shape, 3.5) + 6e-4 * (z - z.mean())
    return Scene(
        preset=p,
        seed=seed,
        size_km=size,
        grid=grid,
        coarse=coarse,
        downvalley_azimuth=az,
        z=z,
        slope=slope,
        cos_i=cos_i,
        shadow=shadow,
        sky_view=sky_view,
        glaciers=glaciers,
        vegetation=veg,
        snow=snow,
        phase=phase,
    )
