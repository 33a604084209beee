"""Bring your own data with inputs and outputs on s3://: the docs/your-own-data.md commands.

stac-from-files, layers, cube --like, then cryonet split (areas file on s3), baseline and score.

The S3-compatible server is a real one on 127.0.0.1 (moto in server mode, ``s3`` fixture).
Input rasters are read by GDAL, configured the way docs/cluster.md says (its own ``AWS_*``
settings); the catalog and the cube are written through the storage options (the fixture sets
them as ``--storage-option`` would). Every output built from the bucket must equal the one built
from local copies of the same files, and nothing may be written to local disk.
"""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cryonet.cli import app as cryonet_app
from glacierstack.cli import app
from glacierstack.store import open_cube

CRS = "EPSG:32644"


def _rgbn(path: Path) -> Path:
    data = np.stack([np.full((12, 12), 40 + 20 * k, np.uint8) for k in range(4)])
    data[1] += np.arange(12, dtype=np.uint8)[None, :]
    data[3] += (np.arange(144, dtype=np.uint8).reshape(12, 12) % 7) * 3
    with rasterio.open(
        path, "w", driver="GTiff", width=12, height=12, count=4, dtype="uint8", crs=CRS,
        transform=from_origin(500010.0, 3100000.0, 30.0, 30.0), nodata=0,
    ) as ds:  # fmt: skip
        ds.write(data)
        ds.scales, ds.offsets = (0.004,) * 4, (0.0,) * 4
    return path


def _byo(
    runner: CliRunner, scene: str, cat: str, cube: str, copy: bool, outlines: str | None = None
) -> None:
    for args in (
        ["stac-from-files", scene, "--out", cat, "--sensor", "optical",
         "--bands", "blue,green,red,nir", "--datetime", "2020-08-01"]
        + (["--copy"] if copy else []),
        ["layers", "--catalog", cat],
        ["cube", "--catalog", cat, "--like", scene, "--out", cube, "--no-progress",
         "--chunk-size", "16", "--scheme", "glacier"]
        + (["--glacier-outlines", outlines] if outlines else []),
    ):  # fmt: skip
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args[0], res.output)


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "reference"])
def test_stac_from_files_layers_cube_on_s3(
    s3, s3_gdal_env, tmp_path, monkeypatch, stac_errors, copy
):
    root = s3["root"]
    bucket, fs = root.removeprefix("s3://"), fsspec.filesystem("s3")
    s3_gdal_env()  # GDAL's own settings, for the input rasters
    local = tmp_path / "local"
    local.mkdir()
    scene, outlines = _rgbn(local / "scene.tif"), _areas(local / "outlines.gpkg")
    fs.put_file(str(scene), f"{bucket}/in/scene.tif")
    fs.put_file(str(outlines), f"{bucket}/in/outlines.gpkg")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    runner = CliRunner()
    _byo(runner, f"{root}/in/scene.tif", f"{root}/cat", f"{root}/cube.zarr", copy,
         f"{root}/in/outlines.gpkg")  # fmt: skip
    _byo(runner, str(scene), str(local / "cat"), str(local / "cube.zarr"), copy, str(outlines))

    assert list(work.iterdir()) == []  # nothing staged or left behind locally
    assert fs.exists(f"{bucket}/cat/catalog.json")
    fs.get(f"{bucket}/cat", str(tmp_path / "from-s3"), recursive=True)
    assert stac_errors(tmp_path / "from-s3") == {}
    vrts = sorted((tmp_path / "from-s3").rglob("*.vrt"))
    assert len(vrts) == 4
    src = "scene.tif" if copy else "/vsis3/" + f"{bucket}/in/scene.tif"
    assert f">{src}</SourceFilename>" in vrts[0].read_text()  # GDAL can open it from the VRT
    got, want = open_cube(f"{root}/cube.zarr"), open_cube(local / "cube.zarr")
    assert list(got.band.values) == list(want.band.values) and "NDVI" in got.band.values
    np.testing.assert_array_equal(got["features"].values, want["features"].values)
    np.testing.assert_allclose(got["features"].sel(band="B04").values, 80 * 0.004, rtol=1e-6)
    np.testing.assert_array_equal(got["labels"].values, want["labels"].values)
    assert (got["labels"].values == 1).sum() > 0  # the outlines (read by GDAL from s3) burnt in
    assert got.rio.crs == want.rio.crs and got.rio.transform() == want.rio.transform()


def _areas(path: Path) -> Path:
    import geopandas as gpd
    from shapely.geometry import box

    x0, y1 = 500010.0, 3100000.0  # the scene: 12 x 12 px of 30 m
    west, east = box(x0, y1 - 360, x0 + 180, y1), box(x0 + 180, y1 - 360, x0 + 360, y1)
    gdf = gpd.GeoDataFrame({"split": ["train", "test"]}, geometry=[west, east], crs=CRS)
    gdf.to_file(path, driver="GPKG")
    return path


def _split_baseline_score(runner: CliRunner, cube: str, areas: str, out: str) -> None:
    for args in (
        ["split", "--cube", cube, "--out", f"{out}/split.json", "--patch-size", "4",
         "--areas", areas],
        ["baseline", "--cube", cube, "--split-file", f"{out}/split.json",
         "--out", f"{out}/forest.tif", "--n-estimators", "5"],
        ["score", "--cube", cube, "--area", f"{areas}:test", "--map",
         f"forest={out}/forest.tif", "--out", f"{out}/scores.json"],
    ):  # fmt: skip
        res = runner.invoke(cryonet_app, args)
        assert res.exit_code == 0, (args[0], res.output)


def test_split_baseline_score_on_s3(s3, s3_gdal_env, tmp_path, monkeypatch):
    import json

    root = s3["root"]
    bucket, fs = root.removeprefix("s3://"), fsspec.filesystem("s3")
    s3_gdal_env()  # GDAL's own settings, for the areas file
    local = tmp_path / "local"
    local.mkdir()
    scene, areas = _rgbn(local / "scene.tif"), _areas(local / "areas.gpkg")
    fs.put_file(str(areas), f"{bucket}/in/areas.gpkg")
    runner = CliRunner()
    _byo(runner, str(scene), str(local / "cat"), str(local / "cube.zarr"), copy=True)
    fs.put(str(local / "cube.zarr"), f"{bucket}/cube.zarr", recursive=True)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    _split_baseline_score(runner, f"{root}/cube.zarr", f"{root}/in/areas.gpkg", f"{root}/out")
    _split_baseline_score(runner, str(local / "cube.zarr"), str(areas), str(local / "out"))

    assert list(work.iterdir()) == []
    got = {n: fs.cat_file(f"{bucket}/out/{n}") for n in ("split.json", "scores.json")}
    split, ref = (
        json.loads(got["split.json"]),
        json.loads((local / "out" / "split.json").read_text()),
    )
    assert split.pop("config")["areas"]["test"] == f"{root}/in/areas.gpkg:test"  # the URL given
    ref.pop("config")
    assert split == ref and split["train"] and split["test"]
    with fs.open(f"{bucket}/out/forest.tif") as f, rasterio.open(f) as a, \
            rasterio.open(local / "out" / "forest.tif") as b:  # fmt: skip
        np.testing.assert_array_equal(a.read(1), b.read(1))
    s3_scores, local_scores = (
        json.loads(got["scores.json"]),
        json.loads((local / "out" / "scores.json").read_text()),
    )
    assert s3_scores["results"] == local_scores["results"]
    assert s3_scores["results"]["forest"]["pixels"] > 0
