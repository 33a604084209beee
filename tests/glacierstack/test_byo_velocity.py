"""Bring-your-own rasters: a static catalog of the real ITS_LIVE crops, stacked to UTM 10 m."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Transformer
from rasterio.warp import Resampling, reproject
from scipy import ndimage
from typer.testing import CliRunner

from glacierstack.byo import stac_from_files
from glacierstack.catalog import open_catalog
from glacierstack.cli import app
from glacierstack.grid import Grid
from glacierstack.stack import load_modalities


@pytest.fixture(scope="module")
def crops(realdata):
    stem = realdata / "oggm" / "shop" / "crop_ALA_G0120_0000_"
    return [stem.with_name(stem.name + "vx.tif"), stem.with_name(stem.name + "vy.tif")]


@pytest.fixture(scope="module")
def itslive_catalog(crops, tmp_path_factory):
    out = tmp_path_factory.mktemp("itslive")
    return stac_from_files(
        crops, out, collection="its-live-velocity", datetime="2014-01-01/2022-12-31"
    )


def test_catalog_items_match_rasterio(itslive_catalog, crops):
    cat = pystac.read_file(str(itslive_catalog))
    (item,) = list(cat.get_items(recursive=True))
    assert item.id == "crop_ALA_G0120_0000" and item.collection_id == "its-live-velocity"
    assert set(item.assets) == {"vx", "vy"}
    assert item.properties["start_datetime"].startswith("2014-01-01")
    written = json.loads(Path(item.get_self_href()).read_text())
    for key, path in zip(("vx", "vy"), crops, strict=True):
        a = written["assets"][key]
        with rasterio.open(path) as ds:
            assert "proj:epsg" not in a  # not in projection v2.0.0
            assert ds.crs.to_epsg() == 3413 and a["proj:code"] == "EPSG:3413"
            assert a["proj:shape"] == [ds.height, ds.width]
            assert a["proj:transform"] == list(ds.transform)[:6]
            assert a["raster:bands"][0]["nodata"] == ds.nodata == -32767
        assert item.assets[key].get_absolute_href() == str(path.resolve())
    # the lon/lat bbox contains Columbia Glacier (61.2N, 147.0W)
    assert item.bbox[0] < -147.0 < item.bbox[2] and item.bbox[1] < 61.2 < item.bbox[3]


def _reference(path, grid):
    dst = np.full(grid.shape, np.nan, np.float32)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, 1), dst, dst_transform=grid.transform, dst_crs=grid.crs,
            resampling=Resampling.bilinear, dst_nodata=np.nan,
        )  # fmt: skip
        src_nodata = src.read(1) == src.nodata
    return dst, src_nodata


def test_speed_on_utm_grid_matches_rasterio_reproject(itslive_catalog, crops):
    with rasterio.open(crops[0]) as ds:
        ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform_bounds(*ds.bounds)
    lon, lat = (ll[0] + ll[2]) / 2, (ll[1] + ll[3]) / 2
    grid = Grid.from_bbox((lon - 0.05, lat - 0.025, lon + 0.05, lat + 0.025), resolution=10)
    assert grid.crs == "EPSG:32606"
    ds = load_modalities(
        open_catalog(itslive_catalog, provider="itslive"), grid, None, ["velocity"]
    )
    assert list(ds.data_vars) == ["vx", "vy"] and ds.vx.attrs["units"] == "m/yr"
    speed = np.hypot(ds.vx, ds.vy).values
    (rvx, _), (rvy, _) = _reference(crops[0], grid), _reference(crops[1], grid)
    ref = np.hypot(rvx, rvy)
    # away from nodata and the grid edge
    valid = np.isfinite(ref)
    valid = ndimage.binary_erosion(valid, iterations=30)
    valid[:30], valid[-30:], valid[:, :30], valid[:, -30:] = False, False, False, False
    assert valid.mean() > 0.6 and np.isfinite(speed[valid]).all()
    diff = np.abs(speed[valid] - ref[valid])
    assert np.nanmax(ref[valid]) > 100  # a glacier moves here
    assert np.median(diff) < 0.05 and np.percentile(diff, 99) < 1.0
    np.testing.assert_allclose(speed[valid], ref[valid], rtol=0.01, atol=1.0)


def test_byo_errors(tmp_path, crops):
    with pytest.raises(ValueError, match="does not match pattern"):
        stac_from_files(
            crops,
            tmp_path / "a",
            collection="c",
            datetime="2018",
            pattern=r"^(?P<item>x)_(?P<asset>y)$",
        )
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        stac_from_files([tmp_path / "missing.tif"], tmp_path / "b", collection="c", datetime="2018")
    with pytest.raises(ValueError, match="twice"):
        stac_from_files([crops[0], crops[0]], tmp_path / "c", collection="c", datetime="2018")
    multi = tmp_path / "rgb_img.tif"
    with rasterio.open(
        multi,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=3,
        dtype="uint8",
        crs="EPSG:32632",
        transform=rasterio.transform.from_origin(0, 40, 10, 10),
    ) as ds:
        ds.write(np.zeros((3, 4, 4), np.uint8))  # fmt: skip
    with pytest.raises(ValueError, match="3 bands"):
        stac_from_files([multi], tmp_path / "d", collection="c", datetime="2018")
    assert not (tmp_path / "d" / "catalog.json").exists()


def test_cli_stac_from_files_and_search(tmp_path, crops):
    runner = CliRunner()
    out = tmp_path / "cat"
    res = runner.invoke(
        app,
        ["stac-from-files", *map(str, crops), "--out", str(out),
         "--collection", "its-live-velocity", "--datetime", "2018", "--copy"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "catalog.json").is_file()
    item_dir = out / "its-live-velocity" / "crop_ALA_G0120_0000"  # catalog/collection/item
    item = json.loads((item_dir / "crop_ALA_G0120_0000.json").read_text())
    assert item["assets"]["vx"]["href"] == "./crop_ALA_G0120_0000_vx.tif"  # copied, relative
    res = runner.invoke(
        app,
        [
            "search",
            "--catalog",
            str(out),
            "--bbox",
            "-147.1,61.1,-147.0,61.2",
            "--modality",
            "velocity",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "crop_ALA_G0120_0000" in res.output
    res = runner.invoke(
        app, ["search", "--catalog", str(out), "--bbox", "10,45,11,46", "--modality", "velocity"]
    )
    assert res.exit_code == 1 and "its-live-velocity" in res.output


def test_stac_from_files_validates_including_complex_rasters(tmp_path, stac_errors):
    """Items of stac-from-files (float and complex64 files) validate; data_type is cfloat32."""
    from rasterio.transform import from_origin

    files = []
    for name, dtype in (("s1_20180101_vv", "complex64"), ("s1_20180101_dem", "float32")):
        path = tmp_path / f"{name}.tif"
        data = np.ones((1, 8, 8), dtype=dtype)
        profile = dict(driver="GTiff", width=8, height=8, count=1, dtype=dtype, crs="EPSG:32645",
                       transform=from_origin(500000, 3100080, 10, 10))  # fmt: skip
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
        files.append(path)
    cat = stac_from_files(files, tmp_path / "cat", collection="sentinel-1-slc",
                          datetime="2018-01-01", copy=True)  # fmt: skip
    assert stac_errors(cat.parent) == {}
    (item,) = pystac.read_file(str(cat)).get_items(recursive=True)
    assert item.assets["vv"].extra_fields["raster:bands"][0]["data_type"] == "cfloat32"
