"""Labels: rasterised real RGI outlines checked against polygon areas and point-in-polygon."""

from __future__ import annotations

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from shapely.geometry import LineString, box

from glacierstack.classes import NODATA_LABEL
from glacierstack.grid import Grid
from glacierstack.labels import (
    LabelRules,
    compose_labels,
    make_labels,
    rasterize_outlines,
    read_outlines,
)

UTM32 = "EPSG:32632"


@pytest.fixture(scope="module")
def hef(realdata):
    return realdata / "oggm" / "test-files" / "Hintereisferner_RGI6.shp"


@pytest.fixture(scope="module")
def hef_grid(hef) -> Grid:
    bounds = gpd.read_file(hef).to_crs(UTM32).total_bounds
    return Grid.from_bbox(bounds + np.array([-200, -200, 200, 200]), bbox_crs=UTM32, resolution=10)


def test_rgi6_area_matches_polygon_area(hef, hef_grid):
    mask = rasterize_outlines(hef, hef_grid, chunks=256).values
    poly_area = gpd.read_file(hef).to_crs(UTM32).area.sum()  # m^2, same CRS
    raster_area = mask.sum() * hef_grid.resolution**2
    assert poly_area > 5e6  # Hintereisferner is ~8 km^2 in RGI6
    assert raster_area == pytest.approx(poly_area, rel=2e-3)


def test_rgi7_pixel_centres_inside_polygon(realdata):
    path = realdata / "oggm" / "test-files" / "rgi7" / "rgi7g_hef.shp"
    outline = gpd.read_file(path).to_crs(UTM32)
    bounds = outline.total_bounds
    grid = Grid.from_bbox(bounds + np.array([-100, -100, 100, 100]), bbox_crs=UTM32, resolution=20)
    mask = rasterize_outlines(path, grid, chunks=(61, 97)).values  # awkward chunks
    # independent reference: shapely point-in-polygon on every pixel centre
    xx, yy = np.meshgrid(grid.x, grid.y)
    ref = shapely.contains_xy(outline.union_all(), xx, yy)
    assert ref.sum() > 10_000
    mismatch = np.count_nonzero(mask != ref)
    assert mismatch <= max(1, int(1e-4 * ref.size))  # only exact-boundary ties may differ


def test_chunking_and_crs_do_not_change_the_mask(hef, hef_grid, tmp_path):
    one = rasterize_outlines(hef, hef_grid, chunks=hef_grid.shape).values
    many = rasterize_outlines(hef, hef_grid, chunks=(53, 77))
    assert isinstance(many.data, da.Array)
    assert many.data.numblocks[0] > 3 and many.data.numblocks[1] > 3
    np.testing.assert_array_equal(one, many.values)
    # the same outline in Web Mercator, as a GeoPackage: reprojection is handled
    gpkg = tmp_path / "hef_3857.gpkg"
    gpd.read_file(hef).to_crs("EPSG:3857").to_file(gpkg)
    other = rasterize_outlines(gpkg, hef_grid, chunks=128).values
    assert np.count_nonzero(other != one) <= 2


def test_invalid_rgi_geometries_are_repaired(realdata):
    path = realdata / "oggm" / "test-workflow" / "rgi" / "rgi_oetztal.shp"
    raw = gpd.read_file(path)
    assert not raw.is_valid.all()  # the sample really has invalid polygons
    gdf = read_outlines(path)
    assert gdf.is_valid.all() and len(gdf) == len(raw)
    utm = gdf.to_crs(UTM32)
    grid = Grid.from_bbox(utm.total_bounds, bbox_crs=UTM32, resolution=20)
    mask = rasterize_outlines(gdf, grid, chunks=300).values
    assert mask.sum() * 400 == pytest.approx(utm.union_all().area, rel=5e-3)


def test_outlines_outside_grid_warn(hef):
    far = Grid("EPSG:32645", (400_000, 3_100_000, 401_000, 3_101_000), 10)
    with pytest.warns(UserWarning, match="intersect the grid"):
        mask = rasterize_outlines(hef, far)
    assert not mask.values.any()


def test_compose_precedence_by_hand():
    # columns: 0 bg, 1 veg, 2 water, 3 water+veg, 4 glacier+water, 5 debris in glacier,
    #          6 debris outside glacier, 7 invalid glacier, 8 NaN ndwi
    glacier = np.array([[0, 0, 0, 0, 1, 1, 0, 1, 0]], bool)
    debris = np.array([[0, 0, 0, 0, 0, 1, 1, 0, 0]], bool)
    ndwi = np.array([[0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, np.nan]])
    ndvi = np.array([[0.0, 0.6, 0.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0]])
    valid = np.array([[1, 1, 1, 1, 1, 1, 1, 0, 1]], bool)
    got = compose_labels(glacier, debris, ndwi, ndvi, valid)
    np.testing.assert_array_equal(got, [[0, 4, 3, 3, 1, 2, 0, NODATA_LABEL, 0]])
    loose = compose_labels(
        glacier, debris, ndwi, ndvi, valid, LabelRules(debris_within_glacier=False)
    )
    assert loose[0, 6] == 2
    strict = compose_labels(glacier, debris, ndwi, ndvi, valid, LabelRules(water_ndwi=0.6))
    assert strict[0, 2] == 0 and strict[0, 3] == 4
    # thresholds are strict inequalities
    edge = compose_labels(glacier[:, :1], debris[:, :1], np.array([[0.17]]), np.array([[0.3]]),
                          valid[:, :1])  # fmt: skip
    assert edge[0, 0] == 0


def test_make_labels_end_to_end_on_rgi(hef, hef_grid):
    gl = gpd.read_file(hef).to_crs(UTM32)
    # a "debris" outline: the lowest 1.5 km of the bounding box, intersected with the glacier
    xmin, ymin, xmax, ymax = gl.total_bounds
    debris = gpd.GeoDataFrame(
        geometry=[box(xmin - 50, ymin - 50, xmin + 1500, ymax + 50)], crs=UTM32
    )
    h, w = hef_grid.shape
    coords = hef_grid.coords()
    rng = np.random.default_rng(0)
    ndwi = xr.DataArray(rng.uniform(-1, 1, (h, w)).astype("f4"), dims=("y", "x"), coords=coords)
    ndvi = xr.DataArray(rng.uniform(-1, 1, (h, w)).astype("f4"), dims=("y", "x"), coords=coords)
    ndwi[:5, :5] = np.nan
    labels = make_labels(
        hef_grid, glacier_outlines=hef, debris_outlines=debris, ndwi=ndwi, ndvi=ndvi.chunk(100),
        chunks=128,
    )  # fmt: skip
    assert isinstance(labels.data, da.Array) and labels.dtype == np.uint8
    lab = labels.values
    xx, yy = np.meshgrid(hef_grid.x, hef_grid.y)
    inside = shapely.contains_xy(gl.union_all(), xx, yy)
    in_debris = inside & shapely.contains_xy(debris.union_all(), xx, yy)
    ok = np.isfinite(ndwi.values)
    w_, v_ = ndwi.values, ndvi.values
    ref = np.where(v_ > 0.3, 4, 0)
    ref = np.where(w_ > 0.17, 3, ref)
    ref = np.where(inside, 1, ref)
    ref = np.where(in_debris, 2, ref)
    ref = np.where(ok, ref, NODATA_LABEL)
    assert np.mean(lab == ref) > 0.999
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4, NODATA_LABEL}


def test_errors_name_the_file(tmp_path, hef_grid):
    with pytest.raises(FileNotFoundError, match="nope.gpkg"):
        read_outlines(tmp_path / "nope.gpkg", what="glacier outlines")
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"this is not a geopackage")
    with pytest.raises(ValueError, match="junk.gpkg"):
        read_outlines(junk)
    nocrs = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)])
    with pytest.raises(ValueError, match="no CRS"):
        read_outlines(nocrs, what="debris outlines")
    lines = gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs="EPSG:4326")
    with pytest.raises(ValueError, match="LineString"):
        read_outlines(lines)
    bad = xr.DataArray(np.zeros((3, 3)), dims=("y", "x"))
    with pytest.raises(ValueError, match="ndwi has shape"):
        make_labels(hef_grid, ndwi=bad)
    h, w = hef_grid.shape
    shifted = xr.DataArray(
        np.zeros((h, w)), dims=("y", "x"), coords={"y": hef_grid.y + 5, "x": hef_grid.x}
    )
    with pytest.raises(ValueError, match="ndvi y coordinates"):
        make_labels(hef_grid, ndvi=shifted)
