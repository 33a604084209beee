"""The cube read by plain clients (xarray defaults, rioxarray, odc-geo, GDAL's Zarr driver)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings

import dask.array as da
import numpy as np
import pytest
import rasterio
import xarray as xr

from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid
from glacierstack.store import open_cube, write_cube

GRID = Grid("EPSG:32645", (400_000, 3_100_000, 401_000, 3_100_700), 10)  # 70 x 100 px
BANDS = ["B02", "NDVI"]


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    h, w = GRID.shape
    rng = np.random.default_rng(3)
    arr = rng.normal(size=(len(BANDS), h, w)).astype("f4")
    arr[1, :5] = np.nan
    lab = rng.integers(0, 5, GRID.shape).astype("u1")
    lab[:5] = NODATA_LABEL
    feats = xr.DataArray(da.from_array(arr), dims=("band", "y", "x"),
                         coords={"band": BANDS, **GRID.coords()})  # fmt: skip
    labels = xr.DataArray(lab, dims=("y", "x"), coords=GRID.coords())
    path = tmp_path_factory.mktemp("interop") / "cube.zarr"
    write_cube(feats, labels, path, grid=GRID, chunk_size=32, progress=False)
    return path, arr, lab


def test_plain_xarray_defaults_recover_crs_transform_and_uint8_labels(cube):
    path, arr, lab = cube
    ds = xr.open_zarr(path)  # default arguments, as a new user would
    assert "spatial_ref" in ds.coords and "spatial_ref" not in ds.data_vars
    assert ds.rio.crs.to_epsg() == 32645
    for name in ("features", "labels"):
        assert ds[name].rio.crs.to_epsg() == 32645, name
        assert tuple(ds[name].rio.transform())[:6] == tuple(GRID.transform)[:6], name
    assert ds.labels.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels.values, lab)
    assert ds.labels.rio.nodata == NODATA_LABEL
    assert ds.features.dtype == np.float32
    np.testing.assert_array_equal(ds.features.values, arr)
    assert ds.x.attrs["axis"] == "X" and ds.y.attrs["standard_name"] == "projection_y_coordinate"


def test_odc_geo_geobox_from_plain_open(cube):
    import odc.geo.xr  # noqa: F401  (registers .odc)

    ds = xr.open_zarr(cube[0])
    gbox = ds.labels.odc.geobox
    assert gbox is not None and gbox.crs.epsg == 32645
    assert gbox.shape == GRID.shape
    assert tuple(gbox.affine)[:6] == tuple(GRID.transform)[:6]


def test_to_raster_of_plain_opened_layer_has_crs_and_nodata(cube, tmp_path):
    ds = xr.open_zarr(cube[0])
    tif = tmp_path / "labels.tif"
    ds.labels.rio.to_raster(tif)
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32645
        assert src.nodata == NODATA_LABEL
        assert tuple(src.transform)[:6] == tuple(GRID.transform)[:6]
        np.testing.assert_array_equal(src.read(1), cube[2])


def test_gdal_zarr_driver_reports_crs_transform_and_nodata(cube):
    path, arr, lab = cube
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(str(path)) as root:
            subdatasets = root.subdatasets
    assert not any("progress" in s for s in subdatasets), subdatasets
    with rasterio.open(f'ZARR:"{path}":/features') as src:
        assert src.crs.to_epsg() == 32645
        assert tuple(src.transform)[:6] == tuple(GRID.transform)[:6]
        assert src.count == len(BANDS) and np.isnan(src.nodata)
        np.testing.assert_array_equal(src.read(2), arr[1])
    with rasterio.open(f'ZARR:"{path}":/labels') as src:
        assert src.crs.to_epsg() == 32645 and src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), lab)


def test_open_cube_reads_the_previous_layout(cube, tmp_path):
    """Stores written before CF coordinates (labels with a Zarr fill value) still open."""
    old = tmp_path / "old.zarr"
    shutil.copytree(cube[0], old)
    zmeta = json.loads((old / ".zmetadata").read_text())
    for key, meta in zmeta["metadata"].items():
        if key.endswith(".zattrs"):
            meta.pop("coordinates", None)
            meta.pop("_CRS", None)
        if key == "labels/.zarray":
            meta["fill_value"] = NODATA_LABEL
    (old / ".zmetadata").write_text(json.dumps(zmeta))
    assert "spatial_ref" in xr.open_zarr(old).data_vars  # the old layout, as plain xarray saw it
    ds = open_cube(old)
    assert ds.rio.crs.to_epsg() == 32645 and ds.labels.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels.values, cube[2])


@pytest.mark.skipif(
    shutil.which("gdalinfo") is None, reason="gdalinfo (GDAL command-line tools) not installed"
)
def test_gdalinfo_command_line_reads_crs_and_nodata(cube):
    """The system's GDAL tools (e.g. Debian's GDAL 3.6 ``gdal-bin``): CRS via ``_CRS``, nodata."""
    path = cube[0]
    for sub, nodata in (("labels", None), ("features:1", "NaN")):
        out = subprocess.run(["gdalinfo", "-json", f'ZARR:"{path}":/{sub}'], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        info = json.loads(out)
        assert 'ID["EPSG",32645]' in info["coordinateSystem"]["wkt"], sub
        assert info["geoTransform"] == list(GRID.transform.to_gdal()), sub
        assert info["bands"][0].get("noDataValue") == nodata, sub
