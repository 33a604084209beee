"""Which Zarr encoding of a uint8 class layer with nodata 255 do plain readers agree on?

Writes a 32 x 32 georeferenced ``classes`` layer (the mosaic's CF grid mapping) in three
encodings and reports, for each, the dtype plain ``xarray.open_zarr(path)`` gives, and the
nodata GDAL's Zarr driver sees, through rasterio's bundled GDAL and through ``gdalinfo``
(Debian ``gdal-bin``, if installed):

- ``v2-fill``: Zarr v2, ``fill_value`` 255 (what mosaics use);
- ``v2-attr``: Zarr v2, no ``fill_value``, 255 only in a ``nodata`` attribute;
- ``v3-fill``: Zarr v3, ``fill_value`` 255 (xarray does not mask with it by default).

Run: ``python benchmarks/fill_value_interop.py [WORKDIR]`` (results in docs/inference.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from glacierstack.georef import georeference
from glacierstack.grid import Grid


def _write(path: Path, variant: str) -> None:
    grid = Grid("EPSG:32645", (400_000, 3_100_000, 400_320, 3_100_320), 10)
    a = np.full((32, 32), 255, "u1")
    a[:16] = 1
    ds = georeference(xr.Dataset({"classes": (("y", "x"), a)}, coords=grid.coords()), grid)
    ds["classes"].attrs["nodata"] = 255
    fmt = 3 if variant.startswith("v3") else 2
    key = "fill_value" if fmt == 3 else "_FillValue"
    fill = None if variant == "v2-attr" else 255
    ds["classes"].encoding = {key: fill, "chunks": (16, 16)}
    ds.to_zarr(path, zarr_format=fmt, mode="w", consolidated=False)


def _rasterio(path: Path) -> str:
    try:
        with rasterio.open(f'ZARR:"{path}":/classes') as src:
            return f"{src.dtypes[0]}, nodata {src.nodata}, {src.crs}"
    except rasterio.errors.RasterioIOError as e:
        return f"unreadable ({e})"


def _gdalinfo(path: Path) -> str:
    if shutil.which("gdalinfo") is None:
        return "gdalinfo not installed"
    r = subprocess.run(["gdalinfo", f'ZARR:"{path}":/classes'], capture_output=True, text=True)
    if r.returncode != 0:
        return "unreadable"
    nodata = [ln.split("=")[-1] for ln in r.stdout.splitlines() if "NoData Value" in ln]
    return f"nodata {nodata[0] if nodata else None}"


def main(work: Path) -> None:
    print(f"GDAL (rasterio) {rasterio.__gdal_version__}, xarray {xr.__version__}")
    for variant in ("v2-fill", "v2-attr", "v3-fill"):
        path = work / f"{variant}.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _write(path, variant)
            dtype = xr.open_zarr(path, consolidated=False).classes.dtype
            gdal = _rasterio(path)
        print(f"{variant}: xarray {dtype} | rasterio GDAL: {gdal} | gdalinfo: {_gdalinfo(path)}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
