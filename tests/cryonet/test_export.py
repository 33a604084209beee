"""Exports of a prediction mosaic: COG class map and outline polygons."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
import zarr
from skimage.measure import label as sk_label

from cryonet.export import export_cog, export_polygons
from cryonet.infer import PROBABILITY_SCALE, InMemoryModel, LoadedModel, predict
from glacierstack.grid import Grid
from glacierstack.store import write_cube

RES = 10.0


class ClassFromBand(torch.nn.Module):
    """Logits = band1 * one_hot(band0): the class map is band 0, the confidence set by band 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, 0].round().long().clamp(0, 4)
        onehot = torch.nn.functional.one_hot(cls, 5).permute(0, 3, 1, 2).float()
        return onehot * x[:, 1:2]


def designed_map() -> np.ndarray:
    m = np.zeros((60, 80), np.uint8)
    m[5:30, 5:40] = 1  # clean ice ...
    m[20:40, 30:50] = 2  # ... touching debris: one glacier polygon
    m[12:16, 12:16] = 0  # hole in the glacier
    m[45:55, 60:75] = 3  # lake
    m[2:4, 70:72] = 3  # small lake
    m[50:58, 5:9] = 2  # isolated debris patch
    m[45:50, 20:30] = 4  # vegetation (not exported)
    return m


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, Grid]:
    tmp = tmp_path_factory.mktemp("export")
    m = designed_map()
    h, w = m.shape
    grid = Grid(
        "EPSG:32632", (340_000.0, 5_080_000.0, 340_000.0 + RES * w, 5_080_000.0 + RES * h), RES
    )
    rng = np.random.default_rng(0)
    feats = np.stack([m.astype(np.float32), rng.uniform(0.5, 4.0, m.shape).astype(np.float32)])
    fa = xr.DataArray(
        feats, dims=("band", "y", "x"), coords={"band": ["cls", "gain"], **grid.coords()}
    )
    labels = xr.DataArray(m, dims=("y", "x"), coords=grid.coords())
    cube = write_cube(fa, labels, tmp / "cube.zarr", grid=grid, chunk_size=32, progress=False)
    model = LoadedModel(ClassFromBand(), ("cls", "gain"), np.zeros(2), np.ones(2))
    out = predict(
        InMemoryModel(model),
        cube,
        tmp / "m.zarr",
        tile_size=32,
        overlap=8,
        device="cpu",
        progress=False,
    )
    return out, m, grid


def test_cog_readable_with_crs_transform_and_values(mosaic, tmp_path: Path) -> None:
    out, m, grid = mosaic
    tif = export_cog(out, tmp_path / "classes.tif", blocksize=256)
    with rasterio.open(tif) as src:
        assert src.crs.to_epsg() == 32632
        assert tuple(src.transform)[:6] == tuple(grid.transform)[:6]
        assert src.nodata == 255 and src.dtypes[0] == "uint8"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert np.array_equal(src.read(1), m)
        assert src.colormap(1)[1][:3] == (0x6B, 0xAE, 0xD6)
    with pytest.raises(FileExistsError):
        export_cog(out, tif)


# blocks of 13 px cut through the glacier, its hole (rows/cols 12-15) and both lakes
@pytest.mark.parametrize("block", [None, 13, 7])
def test_polygon_areas_match_pixel_counts(mosaic, tmp_path: Path, block: int | None) -> None:
    out, m, grid = mosaic
    gpkg = export_polygons(out, tmp_path / "outlines.gpkg", block_size=block)
    probs = np.asarray(zarr.open_group(out)["probabilities"][:]) / PROBABILITY_SCALE
    pix_km2 = RES * RES / 1e6
    for layer, ids in {"glacier": [1, 2], "debris": [2], "water": [3]}.items():
        gdf = gpd.read_file(gpkg, layer=layer)
        assert gdf.crs.to_epsg() == 32632
        mask = np.isin(m, ids)
        comp, n = sk_label(mask, connectivity=1, return_num=True)
        assert len(gdf) == n
        np.testing.assert_allclose(gdf["area_km2"].sum(), mask.sum() * pix_km2, rtol=1e-9)
        np.testing.assert_allclose(gdf.geometry.area / 1e6, gdf["area_km2"], rtol=1e-9)
        conf = probs[ids].sum(axis=0)
        # match each polygon to its component by a point inside it
        for _, row in gdf.iterrows():
            pt = row.geometry.representative_point()
            r, c = rasterio.transform.rowcol(grid.transform, pt.x, pt.y)
            k = comp[r, c]
            assert k > 0
            np.testing.assert_allclose(row["area_km2"], (comp == k).sum() * pix_km2, rtol=1e-9)
            np.testing.assert_allclose(row["mean_confidence"], conf[comp == k].mean(), rtol=1e-6)
            np.testing.assert_allclose(row["min_confidence"], conf[comp == k].min(), rtol=1e-6)
        # the polygons are the pixels of their components, whatever the blocks
        assert all(g.geom_type == "Polygon" and g.is_valid for g in gdf.geometry)
    glacier = gpd.read_file(gpkg, layer="glacier")
    assert len(glacier) == 2 and max(len(g.interiors) for g in glacier.geometry) == 1
    assert 0.5 < glacier["mean_confidence"].min() < 1.0
    if block is not None:  # the same outlines as one block over the whole map
        whole = gpd.read_file(export_polygons(out, tmp_path / "whole.gpkg"), layer="glacier")
        assert (
            whole.geometry.union_all().symmetric_difference(glacier.geometry.union_all()).area == 0
        )


def test_block_size_is_validated_before_any_output(mosaic, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        export_polygons(mosaic[0], tmp_path / "o.gpkg", block_size=0)
    assert not (tmp_path / "o.gpkg").exists()


def test_min_area_filter(mosaic, tmp_path: Path) -> None:
    out, m, _ = mosaic
    gpkg = export_polygons(out, tmp_path / "o.gpkg", min_area_km2=5 * RES * RES / 1e6)
    assert len(gpd.read_file(gpkg, layer="water")) == 1  # the 2x2 lake is dropped
