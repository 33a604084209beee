"""Lazy stacks from the real recorded metadata alone (no pixel reads: the hrefs are remote)."""

from __future__ import annotations

import dask
import numpy as np
import pytest

from glacierstack.catalog import EmptySearchError, open_catalog
from glacierstack.grid import Grid
from glacierstack.inputs import ReadConfig
from glacierstack.layers import ALL_LAYERS
from glacierstack.stack import RasterLoader, StackstacLoader, load_modalities

S2 = [b for b in ALL_LAYERS if b.startswith("B")]
#: metadata only: the recorded hrefs are remote, no file is opened
META = ReadConfig(check_files=False)


def _check_on_grid(ds, grid, names):
    assert list(ds.data_vars) == names
    assert (ds.sizes["y"], ds.sizes["x"]) == grid.shape
    np.testing.assert_array_equal(ds.x.values, grid.x)
    np.testing.assert_array_equal(ds.y.values, grid.y)
    assert ds.rio.crs.to_epsg() == grid.epsg
    assert tuple(ds.rio.transform())[:6] == tuple(grid.transform)[:6]
    for n in names:
        assert ds[n].dims == ("y", "x") and dask.is_dask_collection(ds[n])
        assert ds[n].dtype == np.float32
    assert ds.attrs["grid"] == grid.to_attrs()


def test_es_s2_two_tile_mosaic(realdata):
    cat = open_catalog(realdata / "stac" / "es_sentinel-2-c1-l2a.json")
    grid = Grid.from_bbox((-39.05, -4.75, -38.95, -4.65), resolution=10)
    assert grid.crs == "EPSG:32724"
    ds = load_modalities(cat, grid, "2025-07-25/2025-08-05", ["s2"], chunks=512, read=META)
    _check_on_grid(ds, grid, S2)
    assert set(ds.attrs["stac_items"]) == {
        "S2B_T24MVV_20250731T130245_L2A",
        "S2B_T24MWV_20250731T130245_L2A",
    }
    assert ds.B04.attrs["offset"] == [-0.1] and ds.B04.attrs["scale"] == [0.0001]
    assert ds.B04.data.chunksize == (512, 512)


def test_pc_s2_baseline_offsets_recorded(realdata):
    cat = open_catalog(realdata / "stac" / "pc_sentinel-2-l2a-items.json")
    assert cat.provider.name == "planetary-computer"
    grid = Grid.from_bbox((94.0, 81.2, 94.6, 81.4), resolution=20)  # Severnaya Zemlya, glaciated
    ds = load_modalities(cat, grid, "2024-04-19", ["s2"], read=META)
    _check_on_grid(ds, grid, S2)
    assert ds.B03.attrs["offset"] == [-0.1]  # PB 05.10, items without raster:bands


def test_pc_dem_at_the_pole_on_a_polar_grid(realdata):
    cat = open_catalog(realdata / "stac" / "pc_cop-dem-glo-30-items.json")
    grid = Grid.from_bbox((-178.5, -89.6, -177.5, -89.4), resolution=30, crs="EPSG:3031")
    ds = load_modalities(cat, grid, None, ["dem"], read=META)
    _check_on_grid(ds, grid, ["elevation"])
    assert ds.elevation.attrs["units"] == "m"
    assert "Copernicus_DSM_COG_10_S90_00_W178_00_DEM" in ds.attrs["stac_items"]


def test_es_landsat_lst_from_a_modality_mapping(realdata):
    grid = Grid.from_bbox((-104.3, 40.2, -104.2, 40.3), resolution=30)
    ds = load_modalities(
        {"lst": realdata / "stac" / "es_landsat-c2-l2.json"},
        grid,
        "2023-10-08",
        provider="earth-search",
        read=META,
    )
    _check_on_grid(ds, grid, ["lst"])
    assert ds.lst.attrs["units"] == "K" and ds.lst.attrs["offset"] == [149.0]
    assert ds.attrs["stac_items"] == ["LC08_L2SP_033032_20231008_02_T1"]


def test_pc_landsat_mosaic_of_adjacent_scenes(realdata):
    cat = open_catalog(realdata / "stac" / "pc_landsat-c2-l2-items.json")
    items = {it.id: it for it in cat.items}
    a, b = items["LC09_L2SP_089089_20240417_02_T1"], items["LC09_L2SP_089088_20240417_02_T2"]
    lat = (a.bbox[1] + b.bbox[3]) / 2  # the along-track overlap of the two scenes
    lon = (max(a.bbox[0], b.bbox[0]) + min(a.bbox[2], b.bbox[2])) / 2
    grid = Grid.from_bbox((lon - 0.2, lat - 0.3, lon + 0.2, lat + 0.3), resolution=30)
    ds = load_modalities(cat, grid, "2024-04-17", ["lst"], read=META)
    _check_on_grid(ds, grid, ["lst"])
    assert set(ds.attrs["stac_items"]) >= {a.id, b.id}


def test_pc_s1_rtc_optional_modality(realdata):
    cat = open_catalog(realdata / "stac" / "pc_sentinel-1-rtc-items.json")
    grid = Grid.from_bbox((15.0, 30.2, 15.1, 30.3), resolution=10)
    ds = load_modalities(cat, grid, "2024-04-19", ["s1_rtc"], read=META)
    _check_on_grid(ds, grid, ["vv", "vh"])


def test_loader_protocol_and_errors(realdata):
    assert isinstance(StackstacLoader(), RasterLoader)
    cat = open_catalog(realdata / "stac" / "es_sentinel-2-c1-l2a.json")
    grid = Grid.from_bbox((-39.05, -4.75, -38.95, -4.65))
    with pytest.raises(KeyError, match="no modality 'velocity'"):
        load_modalities(cat, grid, "2025-07", ["velocity"])
    with pytest.raises(EmptySearchError, match="sentinel-2-c1-l2a.*2019"):
        load_modalities(cat, grid, "2019-01", ["s2"])
