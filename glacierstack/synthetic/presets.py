"""Region presets of the synthetic generator (physical settings per mountain range)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RegionPreset:
    """Physical settings of one synthetic region.

    Elevations are for a full-size region (``full_relief_km`` across or more); smaller regions are a
    vertically compressed copy around the ELA (see :func:`RegionPreset.vertical_scale`).
    """

    name: str
    """Preset name (``poiqu``, ``montblanc``)."""
    description: str
    """One-line description."""
    lon: float
    """Region centre longitude (degrees east)."""
    lat: float
    """Region centre latitude (degrees north)."""
    crs: str
    """UTM CRS of the region (``"EPSG:326zz"``)."""
    date: _dt.date
    """Sentinel-2 acquisition date; the other modalities are dated around it."""
    utc_time: _dt.time
    """Sentinel-2 overpass time (UTC), about 10:30 local solar time."""
    z_min: float
    """Lowest elevation of a full-size region (m)."""
    z_max: float
    """Highest elevation of a full-size region (m)."""
    ela: float
    """Equilibrium-line altitude (m): mass balance is positive above, negative below."""
    treeline: float
    """Upper limit of closed vegetation (m); vegetation thins out over ~150 m above it."""
    snowline: float
    """Lowest elevation of seasonal (off-glacier) snow patches in the acquisition month (m)."""
    debris_fraction: float
    """Debris covers the part of each tongue where less than this fraction of the ice flux
    entering the ablation zone is left (0: clean glaciers, 0.7: long debris-covered tongues)."""
    vegetation_amount: float
    """0..1, how much of the ground below the treeline on gentle slopes is vegetated."""
    lake_probability: float
    """Probability that a large glacier terminus has a proglacial lake."""
    mass_balance_gradient: float
    """Vertical mass-balance gradient (m ice eq./yr per m), e.g. 0.006 (Himalaya) ... 0.009."""
    max_accumulation: float
    """Cap on the accumulation rate (m ice eq. per year)."""
    sun_zenith: float
    """Solar zenith angle at the S2 overpass (degrees)."""
    sun_azimuth: float
    """Solar azimuth at the S2 overpass (degrees clockwise from north)."""
    downvalley_azimuth: float
    """Mean direction the main valleys drain to (degrees clockwise from north)."""
    lst_reference_elevation: float
    """Elevation (m) at which the land-surface temperatures of ``SYNTHETIC.md`` apply."""
    full_relief_km: float = 12.0
    """Region size (km) from which the full elevation range is used."""
    ela_rise_per_year: float = 6.0
    """Climate warming: rise of the ELA per year after ``date`` (m/yr; used by :meth:`at_year`)."""
    ela_offset: float = 0.0
    """ELA shift (m, full-size elevations) of this scene relative to ``ela``; set by
    :meth:`at_year` so that terrain and every other field stay those of the reference year."""

    def at_year(self, year: int) -> RegionPreset:
        """Return the same region observed in ``year`` (same day of year).

        The ELA is shifted by ``(year - date.year) * ela_rise_per_year``: later years have
        retreated termini.
        """
        shift = (year - self.date.year) * self.ela_rise_per_year
        return replace(self, date=self.date.replace(year=year), ela_offset=self.ela_offset + shift)

    def vertical_scale(self, size_km: float) -> float:
        """Compression factor of all elevations around the ELA for a region of ``size_km``.

        A 2 km test region cannot hold 3 km of relief at realistic slopes; instead it keeps every
        elevation zone (accumulation area, ablation area, treeline, valley floor) by scaling
        ``z - ela`` by ``min(1, size_km / full_relief_km)``.
        """
        return min(1.0, max(size_km, 0.1) / self.full_relief_km)

    def level(self, z: float, size_km: float) -> float:
        """Map a full-size elevation level (m) to the compressed region of ``size_km``."""
        return self.ela + (z - self.ela) * self.vertical_scale(size_km)


PRESETS: dict[str, RegionPreset] = {
    "poiqu": RegionPreset(
        name="poiqu",
        description="Central Himalaya (Poiqu / upper Bhote Koshi basin): high, dry, debris-covered "
        "tongues, proglacial lakes, sparse vegetation in low valleys",
        lon=86.0,
        lat=28.3,
        crs="EPSG:32645",
        date=_dt.date(2018, 10, 15),
        utc_time=_dt.time(4, 55),
        z_min=3800.0,
        z_max=7000.0,
        ela=5700.0,
        treeline=4500.0,
        snowline=5300.0,
        debris_fraction=0.6,
        vegetation_amount=0.35,
        lake_probability=0.7,
        mass_balance_gradient=0.006,
        max_accumulation=0.8,
        sun_zenith=47.0,
        sun_azimuth=158.0,
        downvalley_azimuth=180.0,
        lst_reference_elevation=5000.0,
    ),
    "montblanc": RegionPreset(
        name="montblanc",
        description="Western Alps (Mont Blanc massif): clean valley glaciers, little debris, "
        "vegetated valleys below the treeline",
        lon=6.9,
        lat=45.9,
        crs="EPSG:32632",
        date=_dt.date(2018, 10, 22),
        utc_time=_dt.time(10, 30),
        z_min=1000.0,
        z_max=4800.0,
        ela=3000.0,
        treeline=2200.0,
        snowline=2700.0,
        debris_fraction=0.2,
        vegetation_amount=0.8,
        lake_probability=0.3,
        mass_balance_gradient=0.008,
        max_accumulation=1.5,
        sun_zenith=58.0,
        sun_azimuth=162.0,
        downvalley_azimuth=330.0,
        lst_reference_elevation=3000.0,
    ),
}
"""The named region presets."""


def get_preset(name: str | RegionPreset) -> RegionPreset:
    """Look a preset up by name (or pass a :class:`RegionPreset` through)."""
    if isinstance(name, RegionPreset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown synthetic region preset {name!r}; expected one of {sorted(PRESETS)}"
        ) from None
