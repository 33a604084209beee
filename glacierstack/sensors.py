"""Optical sensor band maps: file/asset band names -> common names -> the cube's optical slots.

The cube's optical layers keep the Sentinel-2 slot names of the CryoNet paper (``B02`` ... ``B12``)
whatever the sensor; a slot holds the band of the same *common name* (STAC ``eo:bands``
``common_name``): ``B02`` = blue, ``B03`` = green, ``B04`` = red, ``B08`` = NIR, ``B11`` = SWIR
1.6 um, ``B12`` = SWIR 2.2 um. Landsat's single NIR band fills the ``B08`` slot (the one every
index reads). The cube records the sensor and, per slot, the band it came from.

A :class:`Sensor` lists the band keys a file or a provider uses (``SR_B4``, ``B4``, ``red``...)
with their common names, the product's encoding (physical = stored * scale + offset; ``None``
when it must come from the file or the user, e.g. TOA products whose rescaling is per scene in
the MTL file), and the sensor's published tasseled-cap coefficients. Sources:

* Sentinel-2 MSI: Shi & Xu (2019), IEEE JSTARS 12(10):4038-4048, doi:10.1109/JSTARS.2019.2938388
  (TOA coefficients, B10 term dropped; see :mod:`glacierstack.features`).
* Landsat 4-5 TM: Crist (1985), "A TM tasseled cap equivalent transformation for reflectance
  factor data", Remote Sens. Environ. 17:301-306, doi:10.1016/0034-4257(85)90102-6.
* Landsat 7 ETM+: Huang, Wylie, Yang, Homer & Zylstra (2002), "Derivation of a tasselled cap
  transformation based on Landsat 7 at-satellite reflectance", Int. J. Remote Sens.
  23(8):1741-1748, doi:10.1080/01431160110106113.
* Landsat 8-9 OLI: Baig, Zhang, Shuai & Tong (2014), "Derivation of a tasselled cap
  transformation based on Landsat 8 at-satellite reflectance", Remote Sens. Lett. 5(5):423-431,
  doi:10.1080/2150704X.2014.915434.

The Landsat coefficients were derived for at-satellite (TOA) or reflectance-factor data; applied
to Collection 2 surface reflectance they are an approximation, as is common practice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "COMMON_TO_SLOT",
    "SENSORS",
    "SLOT_TO_COMMON",
    "Sensor",
    "get_sensor",
    "sensor_for_platform",
]

#: Common band name -> the cube's optical slot (Sentinel-2 band name).
COMMON_TO_SLOT: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "nir09": "B09",
    "swir16": "B11",
    "swir22": "B12",
}
SLOT_TO_COMMON: dict[str, str] = {v: k for k, v in COMMON_TO_SLOT.items()}

_TC = ("tc_brightness", "tc_greenness", "tc_wetness")
_LANDSAT6 = ("blue", "green", "red", "nir", "swir16", "swir22")


def _tc(rows: tuple[tuple[float, ...], ...], names: tuple[str, ...]) -> dict:
    return {c: dict(zip(names, r, strict=True)) for c, r in zip(_TC, rows, strict=True)}


_TC_TM = _tc(
    (
        (0.2043, 0.4158, 0.5524, 0.5741, 0.3124, 0.2303),
        (-0.1603, -0.2819, -0.4934, 0.7940, -0.0002, -0.1446),
        (0.0315, 0.2021, 0.3102, 0.1594, -0.6806, -0.6109),
    ),
    _LANDSAT6,
)
_TC_ETM = _tc(
    (
        (0.3561, 0.3972, 0.3904, 0.6966, 0.2286, 0.1596),
        (-0.3344, -0.3544, -0.4556, 0.6966, -0.0242, -0.2630),
        (0.2626, 0.2141, 0.0926, 0.0656, -0.7629, -0.5388),
    ),
    _LANDSAT6,
)
_TC_OLI = _tc(
    (
        (0.3029, 0.2786, 0.4733, 0.5599, 0.5080, 0.1872),
        (-0.2941, -0.2430, -0.5424, 0.7276, 0.0713, -0.1608),
        (0.1511, 0.1973, 0.3283, 0.3407, -0.7117, -0.4559),
    ),
    _LANDSAT6,
)


@dataclass(frozen=True)
class Sensor:
    """Band layout, encoding and tasseled-cap coefficients of one optical sensor product."""

    name: str
    """Registry name (``landsat-oli-c2l2``...)."""
    title: str
    bands: Mapping[str, str]
    """Band key (file band description or STAC asset key, matched case-insensitively) ->
    common name."""
    scale: float | None = None
    """Product scale (physical = stored * scale + offset); ``None``: from the file or user."""
    offset: float | None = None
    nodata: float | None = None
    tasseled_cap: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Component -> {common name: coefficient}; empty: not defined here (Sentinel-2's 12-band
    coefficients live in :data:`glacierstack.features.TASSELED_CAP_S2`)."""
    tasseled_cap_source: str = ""
    collection: str = "optical"
    """Collection id that :func:`glacierstack.byo.stac_from_files` gives its items by default
    (``optical``: read by the provider configs' ``optical`` modality, asset keys = common
    names)."""

    def common_name(self, key: str) -> str | None:
        """Return the common name of a band key (asset key, description), or None."""
        k = key.strip().lower()
        for b, c in self.bands.items():
            if b.lower() == k:
                return c
        return k if k in COMMON_TO_SLOT else None


def _landsat(prefix: str, numbers: Mapping[int, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, common in numbers.items():
        out[f"{prefix}B{n}"] = common
        out[f"B{n}"] = common
        out[f"band{n}"] = common
        out[f"band {n}"] = common
    return out


_TM_BANDS = {1: "blue", 2: "green", 3: "red", 4: "nir", 5: "swir16", 7: "swir22"}
_OLI_BANDS = {1: "coastal", 2: "blue", 3: "green", 4: "red", 5: "nir", 6: "swir16", 7: "swir22"}
# STAC providers' Landsat asset keys: nir08 is the broad NIR of TM/ETM+/OLI, filling the B08 slot
_LANDSAT_ASSETS = {"nir08": "nir"}
# Collection 2 Level-2 surface reflectance encoding: (scale, offset, nodata)
_C2L2: tuple[float, float, float] = (2.75e-5, -0.2, 0.0)
_TM_CITE = "Crist 1985, Remote Sens. Environ. 17:301-306, doi:10.1016/0034-4257(85)90102-6"
_ETM_CITE = "Huang et al. 2002, Int. J. Remote Sens. 23(8):1741-1748, doi:10.1080/01431160110106113"
_OLI_CITE = "Baig et al. 2014, Remote Sens. Lett. 5(5):423-431, doi:10.1080/2150704X.2014.915434"
_S2_CITE = (
    "Shi & Xu 2019, IEEE JSTARS 12(10):4038-4048, doi:10.1109/JSTARS.2019.2938388 "
    "(TOA coefficients; B10 term dropped)"
)


def _make_sensors() -> dict[str, Sensor]:
    s2 = {b: c for c, b in COMMON_TO_SLOT.items()} | {
        f"B{int(b[1:]) if b[1:].isdigit() else b[1:]}": c
        for c, b in COMMON_TO_SLOT.items()  # B2, B3 ... spelled without the zero
    }
    tm = _landsat("SR_", _TM_BANDS) | _LANDSAT_ASSETS
    oli = _landsat("SR_", _OLI_BANDS) | _LANDSAT_ASSETS
    out = [
        Sensor("sentinel-2-l2a", "Sentinel-2 MSI L2A (baseline >= 04.00: DN/10000 - 0.1)", s2,
               1e-4, -0.1, 0.0, {}, _S2_CITE),
        Sensor("landsat-tm-c2l2", "Landsat 4-5 TM Collection 2 Level-2 surface reflectance",
               tm, *_C2L2, tasseled_cap=_TC_TM, tasseled_cap_source=_TM_CITE),
        Sensor("landsat-etm-c2l2", "Landsat 7 ETM+ Collection 2 Level-2 surface reflectance",
               tm, *_C2L2, tasseled_cap=_TC_ETM, tasseled_cap_source=_ETM_CITE),
        Sensor("landsat-oli-c2l2", "Landsat 8-9 OLI Collection 2 Level-2 surface reflectance",
               oli, *_C2L2, tasseled_cap=_TC_OLI, tasseled_cap_source=_OLI_CITE),
        Sensor("landsat-tm-toa", "Landsat 4-5 TM TOA reflectance or DN (scale/offset from the "
               "MTL file)", tm, tasseled_cap=_TC_TM, tasseled_cap_source=_TM_CITE,
               ),
        Sensor("landsat-etm-toa", "Landsat 7 ETM+ TOA reflectance or DN (scale/offset from the "
               "MTL file)", tm, tasseled_cap=_TC_ETM, tasseled_cap_source=_ETM_CITE,
               ),
        Sensor("landsat-oli-toa", "Landsat 8-9 OLI TOA reflectance or DN (scale/offset from "
               "the MTL file)", oli, tasseled_cap=_TC_OLI, tasseled_cap_source=_OLI_CITE,
               ),
        Sensor("optical", "Any optical sensor, bands named by common name "
               "(blue, green, red, nir, swir16, swir22...)", {}),
    ]  # fmt: skip
    return {s.name: s for s in out}


SENSORS: dict[str, Sensor] = _make_sensors()
"""Sensor registry: name -> :class:`Sensor`."""

_PLATFORMS = {
    "landsat-4": "landsat-tm-c2l2",
    "landsat-5": "landsat-tm-c2l2",
    "landsat-7": "landsat-etm-c2l2",
    "landsat-8": "landsat-oli-c2l2",
    "landsat-9": "landsat-oli-c2l2",
    "sentinel-2a": "sentinel-2-l2a",
    "sentinel-2b": "sentinel-2-l2a",
    "sentinel-2c": "sentinel-2-l2a",
}


def get_sensor(name: str) -> Sensor:
    """Return the sensor called ``name`` (error lists the known ones)."""
    try:
        return SENSORS[name]
    except KeyError:
        raise KeyError(f"unknown sensor {name!r}; known: {sorted(SENSORS)}") from None


def sensor_for_platform(platform: str | None, default: str) -> str:
    """Sensor name of a STAC ``platform`` property (``landsat-7``...), else ``default``."""
    return _PLATFORMS.get(str(platform or "").lower(), default)
