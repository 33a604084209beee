"""Per-glacier areas and area change against hand-computed rasters."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr
import zarr
from shapely.geometry import box
from typer.testing import CliRunner

from cryonet.areas import AreaOptions, area_change, glacier_areas
from cryonet.cli import app
from glacierstack.classes import CLASS_NAMES, class_table
from glacierstack.grid import Grid

GRID = Grid("EPSG:32645", (500000.0, 3100000.0, 500400.0, 3100400.0), 10.0)  # 40 x 40 px
PX_KM2 = 1e-4


def _mosaic(classes: np.ndarray, probs: np.ndarray | None = None) -> xr.Dataset:
    """A mosaic Dataset in predict's layout; default probabilities: one-hot (certain)."""
    if probs is None:
        probs = np.stack([(classes == k) * 255 for k in range(5)]).astype(np.uint8)
    return xr.Dataset(
        {
            "classes": (("y", "x"), classes.astype(np.uint8)),
            "probabilities": (("class", "y", "x"), probs.astype(np.uint8)),
        },
        coords={"class": list(CLASS_NAMES), **GRID.coords()},
        attrs={
            "grid": GRID.to_attrs(),
            "classes": class_table(),
            "probability_scale": 1 / 255,
            "nodata": 255,
        },
    )


def _xy(col: float, row: float) -> tuple[float, float]:
    return GRID.bounds[0] + 10 * col, GRID.bounds[3] - 10 * row


@pytest.fixture
def inventory():
    # glacier A: columns 2..19, rows 2..21 (18 x 20 px); glacier B: columns 24..35, rows 4..13
    a = box(*_xy(2, 22), *_xy(20, 2))
    b = box(*_xy(24, 14), *_xy(36, 4))
    return gpd.GeoDataFrame({"RGIId": ["RGI-A", "RGI-B"]}, geometry=[a, b], crs=GRID.crs)


def test_area_of_a_known_polygon_raster(inventory):
    cls = np.zeros((40, 40), np.uint8)
    cls[2:22, 2:12] = 1  # 20 x 10 clean inside A
    cls[2:12, 12:20] = 2  # 10 x 8 debris inside A
    cls[16:22, 20:23] = 1  # 18 px of ice just outside A (east), within 30 m of A only
    cls[6:10, 26:30] = 2  # 16 px debris inside B
    cls[30:35, 30:35] = 1  # 25 px of ice outside every outline, far away
    df = glacier_areas(_mosaic(cls), inventory)
    assert df.loc["RGI-A", "clean_km2"] == pytest.approx(200 * PX_KM2)
    assert df.loc["RGI-A", "debris_km2"] == pytest.approx(80 * PX_KM2)
    assert df.loc["RGI-A", "area_km2"] == pytest.approx(280 * PX_KM2)
    assert df.loc["RGI-B", "area_km2"] == pytest.approx(16 * PX_KM2)
    assert df.loc["RGI-A", "inventory_km2"] == pytest.approx(360 * PX_KM2)
    assert df.loc["RGI-A", "n_pixels"] == 360
    # certain (one-hot) probabilities: no expected errors, a zero-width interval
    assert df.loc["RGI-A", "area_low_km2"] == pytest.approx(df.loc["RGI-A", "area_km2"])
    assert df.loc["RGI-A", "area_high_km2"] == pytest.approx(df.loc["RGI-A", "area_km2"])
    # a 30 m buffer takes in the 3 columns east of A (B is more than 30 m from them)
    buf = glacier_areas(_mosaic(cls), inventory, AreaOptions(buffer_m=30.0))
    assert buf.loc["RGI-A", "clean_km2"] == pytest.approx(218 * PX_KM2)
    assert buf.loc["RGI-B", "area_km2"] == pytest.approx(16 * PX_KM2)


def test_interval_is_expected_commission_and_omission(inventory):
    cls = np.zeros((40, 40), np.uint8)
    cls[2:22, 2:20] = 1  # all of A mapped clean
    probs = np.zeros((5, 40, 40), np.uint8)
    probs[1] = np.where(cls == 1, 204, 51)  # p(clean) 0.8 on ice, 0.2 elsewhere
    probs[0] = 255 - probs[1]
    # B (120 px): nothing mapped, p(clean) 0.2 everywhere
    df = glacier_areas(_mosaic(cls, probs), inventory)
    a = df.loc["RGI-A"]
    assert a["area_low_km2"] == pytest.approx((360 - 0.2 * 360) * PX_KM2)
    assert a["area_high_km2"] == pytest.approx(a["area_km2"])  # nothing unmapped inside A
    b = df.loc["RGI-B"]
    assert b["area_km2"] == 0
    assert b["area_high_km2"] == pytest.approx(0.2 * 120 * PX_KM2)


def test_area_change_cli_writes_csv_gpkg_plot(inventory, tmp_path):
    cls1 = np.zeros((40, 40), np.uint8)
    cls1[2:22, 2:20] = 1
    cls1[4:14, 24:36] = 2
    cls2 = cls1.copy()
    cls2[17:22, 2:20] = 0  # A's terminus retreats by 5 rows (90 px)
    paths = []
    for k, c in enumerate((cls1, cls2)):
        ds = _mosaic(c)
        ds.attrs["grid"] = GRID.to_attrs()
        p = tmp_path / f"m{k}.zarr"
        ds.attrs["run"] = {"model": f"test-{k}"}  # what marks a mosaic of predict's layout
        ds.to_zarr(p, zarr_format=2, consolidated=True)
        zarr.open_group(p, mode="a").attrs["complete"] = True
        zarr.consolidate_metadata(p)
        paths.append(p)
    inventory.to_crs("EPSG:4326").to_file(tmp_path / "rgi.gpkg", driver="GPKG")
    df = area_change(paths, tmp_path / "rgi.gpkg", ["2018", "2028"])
    assert df.loc["RGI-A", "change_km2"] == pytest.approx(-90 * PX_KM2)
    assert df.loc["RGI-A", "change_pct"] == pytest.approx(-25.0)
    assert df.loc["RGI-B", "change_km2"] == pytest.approx(0.0)
    res = CliRunner().invoke(
        app,
        ["areas", str(paths[0]), str(paths[1]), "--outlines", str(tmp_path / "rgi.gpkg")]
        + ["--labels", "2018,2028", "--out", str(tmp_path / "out")],
    )
    assert res.exit_code == 0, res.output
    for f in ("areas.csv", "areas.gpkg", "area_change.png"):
        assert (tmp_path / "out" / f).is_file(), f
    gdf = gpd.read_file(tmp_path / "out" / "areas.gpkg", layer="glaciers")
    row = gdf.set_index("RGIId").loc["RGI-A"]
    assert row["change_km2"] == pytest.approx(-90 * PX_KM2)
    # a missing id column is named in the error
    res = CliRunner().invoke(
        app,
        ["areas", str(paths[0]), str(paths[1]), "--outlines", str(tmp_path / "rgi.gpkg")]
        + ["--id-column", "glac_id", "--out", str(tmp_path / "o2")],
    )
    assert res.exit_code != 0 and "glac_id" in res.output
