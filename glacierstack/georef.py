"""CF-conformant georeferencing of the Zarr stores we write (cube and mosaic).

One helper, :func:`georeference`, used by every Zarr writer so that a store opened with plain
``xarray.open_zarr(path)`` (default arguments), rioxarray, odc-geo or GDAL's Zarr driver finds
the grid's CRS and transform without our own readers:

- a scalar ``spatial_ref`` **coordinate** (CF grid mapping) with ``crs_wkt``, ``spatial_ref``
  (the same WKT, read by GDAL and older rioxarray), ``GeoTransform`` and the CF projection
  parameters (written by rioxarray);
- every data variable with ``(y, x)`` dimensions gets ``grid_mapping: "spatial_ref"`` and
  ``coordinates: "spatial_ref"``. The second one is what makes default-argument
  ``xarray.open_zarr`` (``decode_coords=True``) return ``spatial_ref`` as a coordinate rather
  than a data variable, so ``.rio.crs`` and ``.odc.geobox`` work on the dataset and on every
  layer, and ``da.rio.to_raster()`` writes the CRS;
- ``_CRS: {"wkt": ...}`` on those variables too: the attribute GDAL's Zarr driver has read since
  GDAL 3.4 (newer GDAL also follows ``grid_mapping``);
- dimension coordinates ``x``/``y`` (pixel centres) with CF ``standard_name``, ``units`` and
  ``axis`` matching the CRS (rioxarray's ``write_coordinate_system``).

Nodata ("fill value") convention, chosen because the Zarr v2 format is the one both xarray and
the rasterio-bundled GDAL (3.10, whose Zarr v3 reader predates the ``bytes`` codec) read:

- float layers: Zarr ``fill_value`` NaN (GDAL reports nodata NaN; xarray keeps float32);
- uint8 layers (labels, classes): **no** Zarr ``fill_value`` (in Zarr v2 xarray would turn it
  into a CF ``_FillValue`` and decode the layer to float32 with NaN) but a declared
  ``nodata: 255`` attribute (read by rioxarray as ``.rio.nodata`` and written by
  ``.rio.to_raster()``) plus CF ``flag_values``/``flag_meanings``. Plain ``xr.open_zarr`` thus
  returns the labels as uint8. The mosaic's ``classes`` and ``probabilities`` are the exception
  (``cryonet.infer.mosaic``): they declare the fill value 255 so that chunks an unfinished run
  never wrote read as missing, not as class 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import CRS

from glacierstack.grid import Grid

__all__ = ["GRID_MAPPING", "georeference", "uint8_layer_attrs"]

GRID_MAPPING = "spatial_ref"
"""Name of the CF grid-mapping coordinate in every store."""


def georeference(ds: xr.Dataset, grid: Grid) -> xr.Dataset:
    """Attach the CF grid mapping of ``grid`` to every spatial layer of ``ds``.

    Parameters
    ----------
    ds
        Dataset with ``y``/``x`` dimension coordinates equal to the grid's pixel centres.
    grid
        The store's grid.

    Returns
    -------
    xarray.Dataset
        A copy with the ``spatial_ref`` coordinate and per-layer attrs/encoding described in
        the module docstring; only metadata changes (lazy data stays lazy).
    """
    ds = ds.rio.write_crs(grid.crs, grid_mapping_name=GRID_MAPPING)
    ds = ds.rio.write_transform(grid.transform, grid_mapping_name=GRID_MAPPING)
    wkt = CRS.from_user_input(grid.crs).to_wkt()
    for name in _spatial_vars(ds):
        var = ds[name]
        var.attrs.pop("grid_mapping", None)
        var.encoding["grid_mapping"] = GRID_MAPPING
        var.encoding["coordinates"] = GRID_MAPPING
        var.attrs["_CRS"] = {"wkt": wkt}
    ds = ds.rio.write_coordinate_system()  # x/y standard_name, units, axis from the CRS
    ds.attrs.setdefault("Conventions", "CF-1.8")
    return ds


def uint8_layer_attrs(
    long_name: str, flag_values: Iterable[int], flag_meanings: Iterable[str], nodata: int
) -> dict[str, object]:
    """CF attrs of a uint8 class layer: names of the values and the declared nodata value."""
    return {
        "long_name": long_name,
        "flag_values": [int(v) for v in flag_values],
        "flag_meanings": " ".join(flag_meanings),
        "nodata": int(nodata),
    }


def _spatial_vars(ds: xr.Dataset) -> list[str]:
    return [str(n) for n, v in ds.data_vars.items() if {"y", "x"} <= set(v.dims)]
