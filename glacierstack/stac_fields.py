"""The STAC extension versions our writers declare, and field values valid under them.

Every STAC item glacierstack writes (the synthetic generator, ``stac-from-files``) declares
exactly these schema URLs and fills their fields so that the item validates against them:

- projection **v2.0.0**: ``proj:code`` (``"EPSG:32645"``) or ``proj:wkt2``; there is no
  ``proj:epsg`` in v2 (readers that still want it, stackstac 0.5.1, get it back from
  ``proj:code`` in :func:`glacierstack._compat.item_to_stackstac_dict`);
- raster **v1.1.0**: ``data_type`` from the extension's list (``cfloat32`` for NumPy's
  ``complex64``, see :func:`raster_data_type`);
- eo **v1.1.0**: ``common_name`` from the extension's list (Sentinel-2 B05..B07 are all
  ``rededge``; the asset keys ``rededge1..3`` stay as Earth Search names them);
- sar **v1.0.0**; sat **v1.0.0** (``sat:relative_orbit``) and view **v1.0.0** (sun angles),
  declared whenever an item carries one of their fields (:func:`extensions_of`).

The tests validate every item and collection we write against these exact schema files
(stored under ``tests/data/stac-schemas/``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "EO_EXT",
    "PROJ_EXT",
    "RASTER_EXT",
    "SAR_EXT",
    "SAT_EXT",
    "VIEW_EXT",
    "eo_common_name",
    "extensions_of",
    "raster_data_type",
]

PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO_EXT = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
SAR_EXT = "https://stac-extensions.github.io/sar/v1.0.0/schema.json"
SAT_EXT = "https://stac-extensions.github.io/sat/v1.0.0/schema.json"
VIEW_EXT = "https://stac-extensions.github.io/view/v1.0.0/schema.json"

_BY_PREFIX = {"eo:": EO_EXT, "sar:": SAR_EXT, "sat:": SAT_EXT, "view:": VIEW_EXT}

_COMPLEX = {
    "complex64": "cfloat32",
    "complex128": "cfloat64",
    "complex_int16": "cint16",  # rasterio's name for GDAL CInt16
}
_REAL = {
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
}  # fmt: skip


def raster_data_type(dtype: str | np.dtype) -> str:
    """Raster-extension ``data_type`` of a NumPy/rasterio dtype (``"other"`` if it has none).

    Examples
    --------
    >>> raster_data_type("complex64"), raster_data_type(np.dtype("uint16"))
    ('cfloat32', 'uint16')
    """
    name = str(dtype) if str(dtype) in _COMPLEX else np.dtype(dtype).name
    if name in _COMPLEX:
        return _COMPLEX[name]
    return name if name in _REAL else "other"


def eo_common_name(name: str) -> str:
    """Return the eo v1.1.0 ``common_name`` of a band name (``rededge1..3`` -> ``rededge``)."""
    return "rededge" if name.startswith("rededge") else name


def extensions_of(properties: Iterable[str]) -> set[str]:
    """Extension schema URLs that item property names (``sar:...``, ``view:...``) oblige.

    Examples
    --------
    >>> sorted(extensions_of(["datetime", "sat:relative_orbit"]))
    ['https://stac-extensions.github.io/sat/v1.0.0/schema.json']
    """
    return {url for key in properties for p, url in _BY_PREFIX.items() if key.startswith(p)}
