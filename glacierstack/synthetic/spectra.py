"""Sentinel-2 band table and surface endmember spectra.

Endmember reflectances follow ``shared/SYNTHETIC.md`` (literature-shaped values: snow and ice
after Warren & Wiscombe 1980 / Painter et al. 2009, turbid proglacial lakes after Giardino et
al. 2010, debris and rock from Paul et al. 2004 and Racoviteanu & Williams 2012, alpine
vegetation a generic green-leaf shape with the red edge at 705-740 nm). Debris and bare rock
are deliberately almost identical: the essential difficulty of debris-covered glacier mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class S2Band:
    """One Sentinel-2 MSI band as exposed by Earth Search."""

    name: str
    """ESA band name (``B01`` .. ``B12``; ``eo:bands`` name)."""
    asset: str
    """Earth Search asset key (``coastal``, ``blue``, ...)."""
    resolution: int
    """Native ground sampling distance (m)."""
    center_wavelength: float
    """Centre wavelength (µm)."""
    full_width_half_max: float
    """Bandwidth (µm)."""

    @property
    def common_name(self) -> str:
        """The eo v1.1.0 ``common_name`` (B05..B07 are all ``rededge``; keys keep 1..3)."""
        from glacierstack.stac_fields import eo_common_name

        return eo_common_name(self.asset)


S2_BANDS: tuple[S2Band, ...] = (
    S2Band("B01", "coastal", 60, 0.443, 0.027),
    S2Band("B02", "blue", 10, 0.490, 0.098),
    S2Band("B03", "green", 10, 0.560, 0.045),
    S2Band("B04", "red", 10, 0.665, 0.038),
    S2Band("B05", "rededge1", 20, 0.704, 0.019),
    S2Band("B06", "rededge2", 20, 0.740, 0.018),
    S2Band("B07", "rededge3", 20, 0.783, 0.028),
    S2Band("B08", "nir", 10, 0.842, 0.145),
    S2Band("B8A", "nir08", 20, 0.865, 0.033),
    S2Band("B09", "nir09", 60, 0.945, 0.026),
    S2Band("B11", "swir16", 20, 1.610, 0.143),
    S2Band("B12", "swir22", 20, 2.190, 0.242),
)
"""The 12 L2A bands in ``glacierstack.layers`` order (no B10)."""

#: ESA name -> common name used by Earth Search ``eo:bands`` (the asset key).
S2_COMMON_NAMES = {b.name: b.asset for b in S2_BANDS}

ENDMEMBERS: dict[str, np.ndarray] = {
    "fresh_snow": np.array(
        [0.90, 0.92, 0.90, 0.88, 0.86, 0.84, 0.82, 0.80, 0.76, 0.70, 0.10, 0.08]
    ),
    "firn": np.array([0.75, 0.75, 0.72, 0.68, 0.64, 0.60, 0.57, 0.54, 0.50, 0.45, 0.06, 0.05]),
    "ice": np.array([0.55, 0.55, 0.52, 0.47, 0.43, 0.38, 0.35, 0.32, 0.28, 0.25, 0.03, 0.02]),
    "debris": np.array([0.12, 0.13, 0.16, 0.19, 0.21, 0.23, 0.24, 0.25, 0.26, 0.26, 0.30, 0.26]),
    "rock": np.array([0.12, 0.13, 0.16, 0.20, 0.22, 0.24, 0.25, 0.26, 0.27, 0.27, 0.31, 0.27]),
    "water": np.array([0.08, 0.10, 0.13, 0.10, 0.07, 0.04, 0.03, 0.03, 0.02, 0.01, 0.01, 0.005]),
    "vegetation": np.array(
        [0.04, 0.04, 0.07, 0.05, 0.12, 0.28, 0.33, 0.35, 0.37, 0.30, 0.22, 0.12]
    ),
}
"""Surface reflectance endmembers, one value per band of :data:`S2_BANDS`."""

#: Band index of the bands the water / vegetation rules use.
GREEN, RED, NIR = 2, 3, 7

WAVELENGTH_POSITION = np.array([(b.center_wavelength - 0.443) / (2.190 - 0.443) for b in S2_BANDS])
"""Band centre wavelengths scaled to 0..1 (used for a per-pixel spectral tilt)."""

NDWI_WATER = 0.17
"""NDWI (green, NIR) threshold of the water rule the labels must agree with."""
NDVI_VEGETATION = 0.3
"""NDVI (red, NIR) threshold of the vegetation rule the labels must agree with."""
VEG_FRACTION_CLASS = 0.6
"""Vegetation-pixel minimum green cover: NDVI of 60 % vegetation over rock is ~0.45."""
VEG_FRACTION_SPARSE = 0.12
"""Background pixels carry at most this green cover: NDVI stays below ~0.2."""
