"""Pixel reads through the whole path (files -> byo catalog -> load_modalities) on tiny GeoTIFFs.

Every expected value is computed by hand from the DNs the test writes.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from glacierstack.byo import EncodingOptions, stac_from_files
from glacierstack.catalog import open_catalog
from glacierstack.grid import Grid
from glacierstack.modalities import get_provider
from glacierstack.stack import (
    OdcStacLoader,
    StackstacLoader,
    load_modalities,
    plan_reads,
    read_plan,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:Use `@` matmul:PendingDeprecationWarning"
)  # rasterio/odc-geo internals

CRS = "EPSG:32632"
X0, Y1 = 500000.0, 5000000.0
S2_ASSETS = get_provider("synthetic").modality("s2").assets


def _write(path, data, x0, y1, res, nodata, dtype):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=dtype,
        crs=CRS,
        transform=from_origin(x0, y1, res, res),
        nodata=nodata,
    ) as ds:
        ds.write(data.astype(dtype), 1)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    d = tmp_path_factory.mktemp("px")
    files = []
    # two overlapping S2 scenes of one day: west covers x 0..300 m, east 200..500 m (10 m pixels)
    east = np.full((30, 30), 3000, np.uint16)
    for k, asset in enumerate(S2_ASSETS):
        west = np.full((30, 30), 2000 + k, np.uint16)
        west[10:15, 22:27] = 0  # a nodata hole inside the overlap: east must fill it
        files.append(_write(d / f"a_west_{asset}.tif", west, X0, Y1, 10, 0, "uint16"))
        files.append(_write(d / f"b_east_{asset}.tif", east + k, X0 + 200, Y1, 10, 0, "uint16"))
    # the files declare no encoding: the sensor band map gives it (never a provider default)
    s2 = stac_from_files(
        files, d / "s2", collection="sentinel-2-l2a", datetime="2018-10-15",
        encoding=EncodingOptions(sensor="sentinel-2-l2a"),
    )  # fmt: skip
    dem = np.linspace(4000, 5000, 25 * 25, dtype=np.float32).reshape(25, 25)
    dem[0, 0] = -32767
    dem_cat = stac_from_files(
        [_write(d / "dem_data.tif", dem, X0, Y1, 20, -32767, "float32")],
        d / "dem", collection="cop-dem-glo-30", datetime="2021-04-22",
    )  # fmt: skip
    lst = np.full((25, 25), 36000, np.uint16)
    lst_cat = stac_from_files(
        [_write(d / "ls_lwir11.tif", lst, X0, Y1, 20, 0, "uint16")],
        d / "lst", collection="landsat-c2-l2", datetime="2018-10-10",
        encoding=EncodingOptions(scale=0.00341802, offset=149.0),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    slc = []
    for date in ("20181001", "20181025"):
        z = (rng.normal(size=(50, 50)) + 1j * rng.normal(size=(50, 50))).astype(np.complex64)
        slc.append(z)
        _write(d / f"S1_{date}_vv.tif", z, X0, Y1, 10, None, "complex64")
    s1_cat = stac_from_files(
        sorted(d.glob("S1_*_vv.tif")), d / "s1", collection="sentinel-1-slc",
        pattern=r"^(?P<item>S1_(?P<date>\d{8}))_(?P<asset>vv)$",
    )  # fmt: skip
    return {"s2": s2, "dem": dem_cat, "lst": lst_cat, "insar": s1_cat, "slc": slc}


GRID = Grid(CRS, (X0, Y1 - 300, X0 + 500, Y1), 10.0)


@pytest.mark.parametrize("loader", [StackstacLoader(), OdcStacLoader()], ids=["stackstac", "odc"])
def test_s2_mosaic_scale_offset_and_nodata(region, loader):
    ds = load_modalities(
        {"s2": region["s2"]}, GRID, "2018-10", provider="synthetic", loader=loader
    ).compute()
    assert ds.attrs["stac_items"] == ["a_west", "b_east"]
    for k, band in enumerate(ds.data_vars):
        v = ds[band].values
        assert v.dtype == np.float32
        west_val = (2000 + k) * 1e-4 - 0.1
        east_val = (3000 + k) * 1e-4 - 0.1
        np.testing.assert_allclose(v[:, :20], west_val, rtol=1e-6)  # west only
        np.testing.assert_allclose(v[:, 30:], east_val, rtol=1e-6)  # east only
        np.testing.assert_allclose(v[:10, 20:30], west_val, rtol=1e-6)  # overlap: first scene
        np.testing.assert_allclose(v[10:15, 23:26], east_val, rtol=1e-6)  # hole filled by east


@pytest.mark.parametrize("loader", [StackstacLoader(), OdcStacLoader()], ids=["stackstac", "odc"])
def test_explicit_row_and_column_chunks(region, loader):
    # a tile task reads with explicit (row sizes, column sizes): chunks and pixels must follow
    plan = plan_reads({"s2": region["s2"]}, GRID, "2018-10", provider="synthetic", loader=loader)
    ds = read_plan(plan, GRID, chunks=((10, 20), (20, 30)))
    assert ds.B04.chunks[-2:] == ((10, 20), (20, 30))
    k = list(ds.data_vars).index("B04")
    v = ds.B04.values
    np.testing.assert_allclose(v[:, :20], (2000 + k) * 1e-4 - 0.1, rtol=1e-6)
    np.testing.assert_allclose(v[:, 30:], (3000 + k) * 1e-4 - 0.1, rtol=1e-6)


@pytest.mark.parametrize("loader", [StackstacLoader(), OdcStacLoader()], ids=["stackstac", "odc"])
def test_dem_lst_units_and_nodata(region, loader):
    ds = load_modalities(
        {"dem": region["dem"], "lst": region["lst"]}, GRID, "2018-10", provider="synthetic",
        loader=loader,
    ).compute()  # fmt: skip
    assert np.isnan(ds.elevation.values[0, 0])  # nodata -32767 -> NaN
    inner = ds.elevation.values[5:-5, 5:-5]
    assert np.isfinite(inner).all() and 4000 <= inner.min() and inner.max() <= 5000
    np.testing.assert_allclose(ds.lst.values, 36000 * 0.00341802 + 149.0, rtol=1e-6)  # 272.05 K
    assert ds.lst.attrs["units"] == "K" and ds.elevation.attrs["units"] == "m"


def test_complex_pair_kept_exact(region):
    ds = load_modalities({"insar": region["insar"]}, GRID, None, provider="synthetic")
    assert list(ds.data_vars) == ["s1_ref", "s1_sec"]
    assert ds.s1_ref.dtype == np.complex64
    ref, sec = ds.s1_ref.values, ds.s1_sec.values
    np.testing.assert_array_equal(ref, region["slc"][0][:30, :])  # nearest on the same grid
    np.testing.assert_array_equal(sec, region["slc"][1][:30, :])
    assert ds.s1_ref.attrs["datetime"].startswith("2018-10-01")


def test_grid_outside_data_is_nan(region):
    grid = Grid(CRS, (X0 + 400, Y1 - 100, X0 + 600, Y1), 10.0)  # half beyond the east scene
    ds = load_modalities({"s2": region["s2"]}, grid, "2018-10-15", ["s2"], provider="synthetic")
    v = ds.B04.values
    assert np.isfinite(v[:, :10]).all() and np.isnan(v[:, 10:]).all()


def test_open_catalog_directory_defaults_to_synthetic_config(region):
    cat = open_catalog(region["s2"].parent)
    assert cat.provider.name == "synthetic" and cat.collections() == ["sentinel-2-l2a"]
