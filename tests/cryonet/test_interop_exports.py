"""Exports read by the standard clients: rio-cogeo, GDAL (category names, RAT), geopandas.

Also: no output (cube, mosaic, COG and its sidecar, GeoPackage) records a local path.
"""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
import xarray as xr

from cryonet.export import export_cog, export_polygons
from cryonet.infer import InMemoryModel, LoadedModel, predict
from glacierstack.classes import CLASS_NAMES, CLASSES
from glacierstack.grid import Grid
from glacierstack.store import write_cube

GRID = Grid("EPSG:32632", (340_000, 5_080_000, 341_500, 5_081_000), 10)  # 100 x 150 px


class ClassFromBand(torch.nn.Module):
    """Logits = one_hot(band 0): the class map is band 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = x[:, 0].round().long().clamp(0, 4)
        return torch.nn.functional.one_hot(cls, 5).permute(0, 3, 1, 2).float() * 4


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[Path, dict[str, Path], np.ndarray]:
    tmp = tmp_path_factory.mktemp("exports")
    h, w = GRID.shape
    m = np.zeros((h, w), np.uint8)
    m[10:60, 20:90], m[40:70, 80:120], m[75:90, 10:40], m[5:15, 130:145] = 1, 2, 3, 4
    feats = xr.DataArray(np.stack([m, m]).astype("f4"), dims=("band", "y", "x"),
                         coords={"band": ["cls", "b"], **GRID.coords()})  # fmt: skip
    labels = xr.DataArray(m, dims=("y", "x"), coords=GRID.coords())
    cube = write_cube(feats, labels, tmp / "cube.zarr", grid=GRID, chunk_size=64, progress=False)
    model = LoadedModel(ClassFromBand(), ("cls", "b"), np.zeros(2), np.ones(2))
    mosaic = predict(InMemoryModel(model, key="exports"), cube, tmp / "m.zarr", tile_size=64,
                     overlap=16, chunk_size=48, device="cpu", scheduler="synchronous",
                     progress=False)  # fmt: skip
    # blocksize 64 < 150 px: the COG needs overviews
    cog = export_cog(mosaic, tmp / "out" / "classes.tif", blocksize=64)
    gpkg = export_polygons(mosaic, tmp / "out" / "outlines.gpkg")
    return tmp, {"cube": cube, "mosaic": mosaic, "cog": cog, "gpkg": gpkg}, m


def test_cog_validates_strictly_and_has_overviews(outputs):
    from rio_cogeo.cogeo import cog_validate

    cog = outputs[1]["cog"]
    valid, errors, warns = cog_validate(str(cog), strict=True)
    assert valid and not errors and not warns, (errors, warns)
    with rasterio.open(cog) as src:
        assert src.overviews(1), "a COG larger than one tile needs overviews"
        assert src.crs.to_epsg() == 32632 and src.nodata == 255
        np.testing.assert_array_equal(src.read(1), outputs[2])


def test_cog_category_names_and_rat_through_gdal(outputs, tmp_path):
    """GDAL itself serialises what it reads for the band (CreateCopy to VRT)."""
    vrt = tmp_path / "seen.vrt"
    rasterio.shutil.copy(outputs[1]["cog"], vrt, driver="VRT")
    band = ET.parse(vrt).getroot().find("VRTRasterBand")
    cats = [c.text or "" for c in band.find("CategoryNames")]
    assert cats == list(CLASS_NAMES)
    rat = band.find("GDALRasterAttributeTable")
    names = [f.find("Name").text for f in rat.findall("FieldDefn")]
    rows = {int(r[0].text): [f.text for f in r] for r in rat.findall("Row")}
    assert names[:3] == ["value", "class", "label"]
    assert {k: v[1] for k, v in rows.items()} == {c.id: c.name for c in CLASSES}
    water = rows[3]
    assert tuple(int(v) for v in water[3:6]) == tuple(
        int(CLASSES[3].color[i : i + 2], 16) for i in (1, 3, 5)
    )


def test_one_name_per_class_in_the_geopackage(outputs):
    gpkg = outputs[1]["gpkg"]
    layers = set(gpd.list_layers(gpkg)["name"])
    assert layers == {"glacier", "debris", "water"}
    water = gpd.read_file(gpkg, layer="water")
    assert len(water) == 1 and water.area.sum() == pytest.approx(15 * 30 * 100)
    assert not layers - {"glacier"} - set(CLASS_NAMES)  # one-class layers bear the class name


def test_no_local_path_in_any_output_metadata(outputs):
    tmp, paths, _ = outputs
    needles = [str(tmp), str(tmp.resolve()), "/tmp/", "/home/"]
    texts = {
        "cube": (paths["cube"] / ".zmetadata").read_text(),
        "mosaic": (paths["mosaic"] / ".zmetadata").read_text(),
    }
    with rasterio.open(paths["cog"]) as src:
        texts["cog"] = repr([src.tags(), src.tags(1), src.descriptions])
    aux = paths["cog"].with_name(paths["cog"].name + ".aux.xml")
    texts["cog.aux.xml"] = aux.read_text()
    with sqlite3.connect(paths["gpkg"]) as con:
        rows = con.execute("SELECT * FROM gpkg_contents").fetchall()
    texts["gpkg"] = repr(rows)
    for name, text in texts.items():
        for needle in needles:
            assert needle not in text, f"{name} records a local path ({needle})"
