"""Each stackstac 0.5.1 breakage is shown on the real items, then the shim in _compat avoids it."""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest
import rasterio
import stackstac
from affine import Affine

from glacierstack import _compat
from glacierstack.catalog import open_catalog
from glacierstack.grid import Grid

pytestmark = pytest.mark.filterwarnings(
    "ignore:Could not parse bucket/account from href:UserWarning"  # pystac migrating old items
)

BOUNDS = (600000.0, 3290000.0, 601000.0, 3291000.0)  # inside tile 20EPT (EPSG:32720)


@pytest.fixture(scope="module")
def es_raw(realdata):
    feats = json.loads((realdata / "stac" / "es_sentinel-2-c1-l2a.json").read_text())["features"]
    return [f for f in feats if f["id"] == "S2B_T20EPT_20250731T131905_L2A"]


def test_pystac_migrates_epsg_to_code_and_stackstac_fails(es_raw):
    item = pystac.Item.from_dict(es_raw[0])
    assert "proj:epsg" not in item.properties and item.properties["proj:code"] == "EPSG:32720"
    plain = item.to_dict(transform_hrefs=False)
    with pytest.raises(ValueError, match="Cannot pick a common CRS"):
        stackstac.stack([plain], assets=["red"], dtype="float64")
    fixed = _compat.item_to_stackstac_dict(item)
    assert fixed["properties"]["proj:epsg"] == 32720
    arr = stackstac.stack([fixed], assets=["red"], dtype="float64")
    assert arr.attrs["crs"].upper() == "EPSG:32720"
    assert arr.shape == (1, 1, 10980, 10980)  # from proj:shape, not guessed from lon/lat


def test_to_dict_resolves_remote_root_link(es_raw):
    item = pystac.Item.from_dict(es_raw[0])
    # '.invalid' never resolves (RFC 2606): the default to_dict() has to fetch the root
    item.set_root(None)
    item.add_link(
        pystac.Link("root", "https://stac.example.invalid/v1", media_type="application/json")
    )
    with pytest.raises(pystac.STACError):
        stackstac.stack([item], assets=["red"], dtype="float64", epsg=32720)
    d = _compat.item_to_stackstac_dict(item)
    assert d["assets"]["red"]["href"].startswith("https://")
    arr = _compat.stack([item], assets=["red"], epsg=32720, bounds=BOUNDS, resolution=10)
    assert arr.shape == (1, 1, 100, 100)


def test_untyped_fill_value_rejected(es_raw):
    for dtype in ("float32", "complex64"):
        with pytest.raises(ValueError, match="fill_value nan is incompatible"):
            stackstac.stack(es_raw, assets=["red"], dtype=dtype, rescale=False)
        assert _compat.typed_fill_value(np.nan, dtype).dtype == np.dtype(dtype)
        arr = _compat.stack(
            es_raw, assets=["red"], epsg=32720, bounds=BOUNDS, resolution=10, dtype=dtype
        )
        assert arr.dtype == np.dtype(dtype)


def test_rescale_float32_rejected(es_raw):
    with pytest.raises(ValueError, match="rescale=True.*float32"):
        stackstac.stack(es_raw, assets=["red"], dtype="float32", fill_value=np.float32(np.nan))
    arr = _compat.stack(
        es_raw,
        assets=["red"],
        epsg=32720,
        bounds=BOUNDS,
        resolution=10,
        dtype="float32",
        rescale=True,
    )
    assert arr.dtype == np.float32


def test_pixel_centre_coordinates(es_raw):
    grid = Grid("EPSG:32720", BOUNDS, 10.0)
    default = stackstac.stack(
        es_raw,
        assets=["red"],
        epsg=32720,
        bounds=BOUNDS,
        resolution=10,
        dtype="float64",
        snap_bounds=False,
    )
    assert default.x.values[0] == BOUNDS[0]  # upper-left corners by default
    arr = _compat.stack(es_raw, assets=["red"], epsg=32720, bounds=BOUNDS, resolution=10)
    np.testing.assert_allclose(arr.x.values, grid.x)
    np.testing.assert_allclose(arr.y.values, grid.y)


def test_compat_shims_on_every_recorded_collection(realdata):
    """proj:code-only items of each provider build on their native CRS after the shim."""
    for fname in (
        "es_cop-dem-glo-30.json",
        "pc_landsat-c2-l2-items.json",
        "pc_sentinel-1-rtc-items.json",
    ):
        cat = open_catalog(realdata / "stac" / fname)
        item = cat.items[0]
        assert "proj:epsg" not in item.properties  # migrated by pystac
        d = _compat.item_to_stackstac_dict(item)
        assert d["properties"]["proj:epsg"] == int(item.properties["proj:code"].split(":")[1])


def test_rescale_shim_pixel_values(tmp_path):
    """stackstac's own rescaling through the shim gives DN * scale + offset, nodata -> NaN."""
    dn = np.arange(1, 101, dtype=np.uint16).reshape(10, 10) * 100
    dn[0, 0] = 0
    path = tmp_path / "b.tif"
    tr = Affine(10, 0, 500000, 0, -10, 5000100)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10,
        height=10,
        count=1,
        dtype="uint16",
        crs="EPSG:32632",
        transform=tr,
        nodata=0,
    ) as ds:
        ds.write(dn, 1)
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "x", "collection": "c",
        "geometry": None, "bbox": [8.99, 45.1, 9.01, 45.2], "links": [],
        "properties": {"datetime": "2020-01-01T00:00:00Z", "proj:code": "EPSG:32632"},
        "assets": {"b": {"href": str(path), "type": "image/tiff; application=geotiff",
                         "proj:shape": [10, 10], "proj:transform": list(tr)[:6],
                         "raster:bands": [{"scale": 0.0001, "offset": -0.1, "nodata": 0}]}},
    }  # fmt: skip
    arr = _compat.stack(
        [item],
        assets=["b"],
        epsg=32632,
        bounds=(500000, 5000000, 500100, 5000100),
        resolution=10,
        dtype="float32",
        rescale=True,
    ).values[0, 0]
    expected = dn.astype(np.float64) * 0.0001 - 0.1
    expected[0, 0] = np.nan
    np.testing.assert_allclose(arr, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_mosaic_is_first_valid_value_along_time(dtype):
    """stack._mosaic (stackstac.mosaic, first on top) vs a NumPy first-valid reference."""
    import dask.array as da
    import xarray as xr

    from glacierstack.stack import _mosaic

    rng = np.random.default_rng(7)
    vals = rng.normal(size=(4, 2, 37, 29)).astype(dtype)
    vals[rng.random(vals.shape) < 0.5] = np.nan
    vals[:, :, 0, 0] = np.nan  # nowhere valid
    arr = xr.DataArray(
        da.from_array(vals, chunks=(1, 1, 16, 10)),
        dims=("time", "band", "y", "x"),
        coords={"time": np.arange(4), "id": ("time", list("abcd")), "band": ["p", "q"]},
    )
    first = np.isfinite(vals).argmax(axis=0)  # index of the first valid layer (0 if none)
    ref = np.take_along_axis(vals, first[None], axis=0)[0]
    got = _mosaic(arr)
    assert got.dims == ("band", "y", "x") and "time" not in got.coords and "id" not in got.coords
    np.testing.assert_array_equal(got.values, ref)
    assert np.isnan(got.values[:, 0, 0]).all()
    single = _mosaic(arr.isel(time=[2]))
    np.testing.assert_array_equal(single.values, vals[2])
