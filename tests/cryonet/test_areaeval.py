"""Whole-area scores, area masks and area splits, checked against hand-counted values."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import box

from cryonet.areaeval import area_mask, score_map
from glacierstack.grid import Grid

GRID = Grid("EPSG:32645", (0.0, 0.0, 80.0, 40.0), 10.0)  # 4 rows x 8 cols
CLASSES = [{"id": 0, "name": "background"}, {"id": 1, "name": "clean_ice"},
           {"id": 2, "name": "debris"}]  # fmt: skip


def test_area_masks():
    west = area_mask("west", GRID)
    assert west[:, :4].all() and not west[:, 4:].any()
    assert area_mask("south", GRID)[2:].all() and not area_mask("south", GRID)[:2].any()
    # bbox in the grid CRS: pixel centres 5, 15, ... inside x 0..30 and y 20..40
    b = area_mask("bbox:0,20,30,40", GRID)
    assert b.sum() == 2 * 3 and b[0, :3].all() and b[1, :3].all()


def test_vector_area_with_split_column(tmp_path):
    f = tmp_path / "areas.gpkg"
    polys = [box(0, 0, 40, 40), box(40, 0, 80, 40)]
    gdf = gpd.GeoDataFrame({"split": ["train", "test"]}, geometry=polys, crs="EPSG:32645")
    gdf.to_crs("EPSG:4326").to_file(f)  # another CRS: reprojected onto the grid
    assert area_mask(f"{f}:test", GRID)[:, 4:].all()
    assert not area_mask(f"{f}:test", GRID)[:, :4].any()
    with pytest.raises(ValueError, match="no polygons"):
        area_mask(f"{f}:val", GRID)


def test_score_map_counts_every_labelled_pixel_once():
    labels = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 2], [2, 0, 1, 1]], np.uint8)
    mask = np.ones_like(labels, bool)
    r = score_map(pred, labels, mask, CLASSES, {"glacier": ["clean_ice", "debris"]})
    assert r["pixels"] == 7
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 1], [1, 0, 1]]
    assert r["overall_accuracy"] == pytest.approx(4 / 7)
    # clean ice: tp 2, fp 1, fn 1 -> IoU 2/4; background: tp 1, fp 1, fn 1 -> 1/3
    assert r["classes"]["clean_ice"]["iou"] == pytest.approx(0.5)
    assert r["classes"]["background"]["iou"] == pytest.approx(1 / 3)
    assert r["classes"]["debris"]["precision"] == pytest.approx(0.5)
    # glacier group: label glacier at 5 pixels, predicted glacier at 5, both at 4 -> 4/6
    assert r["groups"]["glacier"]["iou"] == pytest.approx(4 / 6)
    east = np.zeros_like(mask)
    east[:, 2:] = True
    assert score_map(pred, labels, east, CLASSES)["pixels"] == 3


def test_area_split_and_forest_baseline(tmp_path):
    """Windows fully inside their area; the forest trains on train pixels and maps the cube."""
    import rasterio

    from cryonet.baseline import BaselineConfig, train_baseline
    from cryonet.splitareas import split_from_areas
    from cryonet.testing import write_toy_cube
    from glacierstack.store import open_cube

    cube = write_toy_cube(tmp_path / "toy.zarr", (64, 96), 3, chunks=32)
    sp = split_from_areas(cube, {"train": "west", "test": "east"}, 16)
    w = sp.windows
    assert len(sp.train) and len(sp.test) and len(sp.val) == 0
    assert (w[sp.train][:, 1] + 16 <= 48).all() and (w[sp.test][:, 1] >= 48).all()
    assert sp.config["method"] == "areas"
    over = split_from_areas(cube, {"train": "west", "test": "east"}, 16, overlap=8)
    assert len(over.train) > len(sp.train)
    assert (over.windows[over.train][:, 1] + 16 <= 48).all()  # still inside the west half
    sp.to_json(tmp_path / "split.json")
    out = train_baseline(cube, tmp_path / "rf.tif", split_file=tmp_path / "split.json",
                         config=BaselineConfig(n_estimators=10))  # fmt: skip
    labels = open_cube(cube)["labels"].values
    with rasterio.open(out) as ds:
        pred = ds.read(1)
    east = np.zeros(labels.shape, bool)
    east[:, 48:] = True
    classes = [{"id": i, "name": n} for i, n in enumerate(
        ("background", "clean_ice", "debris", "water", "vegetation"))]  # fmt: skip
    r = score_map(pred, labels, east, classes)
    assert r["pixels"] == int((labels[:, 48:] != 255).sum())
    assert r["overall_accuracy"] > 0.5  # the toy cube's classes are separable per pixel


def test_train_split_areas_option_writes_the_area_split(tmp_path):
    from cryonet.cli.train import _area_split
    from cryonet.data import PatchSplit
    from cryonet.testing import write_toy_cube

    cube = write_toy_cube(tmp_path / "toy.zarr", (64, 96), 3, chunks=32)
    path = _area_split(cube, tmp_path / "run", "west/east", 16)
    sp = PatchSplit.from_json(path)
    assert sp.config["areas"] == {"train": "west", "test": "east"}
    assert (sp.windows[sp.train][:, 1] + 16 <= 48).all() and (sp.windows[sp.test][:, 1] >= 48).all()
