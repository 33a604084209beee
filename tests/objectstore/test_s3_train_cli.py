"""``cryonet train --split-areas`` with the cube, the run folder and the areas file on s3://.

The S3-compatible server is a real one on 127.0.0.1 (moto in server mode, ``s3`` fixture).
The split written next to the run must equal the one made from a local copy of the cube, the
run must train on it, and nothing may be written to the working directory.
"""

from __future__ import annotations

import json

import fsspec
import pytest
from typer.testing import CliRunner

from cryonet.cli import app
from cryonet.splitareas import split_from_areas
from cryonet.testing import write_toy_cube

CRS = "EPSG:32645"


def _areas_file(path, shape):
    """West half train, east half test, over the toy cube's grid (10 m pixels)."""
    import geopandas as gpd
    from shapely.geometry import box

    ny, nx = shape
    x0, y1, half = 500000.0, 3100000.0, 10.0 * nx / 2
    polys = [box(x0, y1 - 10 * ny, x0 + half, y1), box(x0 + half, y1 - 10 * ny, x0 + 2 * half, y1)]
    gpd.GeoDataFrame({"split": ["train", "test"]}, geometry=polys, crs=CRS).to_file(path)
    return path


@pytest.mark.parametrize("kind", ["halves", "file"])
def test_train_split_areas_on_s3(s3, s3_gdal_env, tmp_path, monkeypatch, kind):
    root = s3["root"]
    bucket, fs = root.removeprefix("s3://"), fsspec.filesystem("s3")
    shape = (40, 64)
    cube = write_toy_cube(tmp_path / "cube.zarr", shape, 3, chunks=32, nodata_rows=0)
    fs.put(str(cube), f"{bucket}/cube.zarr", recursive=True)
    if kind == "file":
        s3_gdal_env()  # GDAL's own settings, for the areas file
        fs.put_file(str(_areas_file(tmp_path / "areas.gpkg", shape)), f"{bucket}/areas.gpkg")
        areas, local_spec = f"{root}/areas.gpkg", {"all": str(tmp_path / "areas.gpkg")}
    else:
        areas, local_spec = "west/east", {"train": "west", "test": "east"}
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    res = CliRunner().invoke(
        app,
        ["train", "--cube", f"{root}/cube.zarr", "--out", f"{root}/run", "--split-areas", areas,
         "--config", "cpu", "--model", "unet-tiny", "--epochs", "1", "--patch-size", "16",
         "--batch-size", "4", "--num-workers", "0", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert list(work.iterdir()) == []  # nothing staged or left behind locally
    got = json.loads(fs.cat_file(f"{bucket}/run/split-areas.json"))
    used = json.loads(fs.cat_file(f"{bucket}/run/split.json"))
    want = split_from_areas(cube, local_spec, 16)
    assert got["train"] == want.train.tolist() and got["test"] == want.test.tolist()
    assert got["train"] and got["test"]
    assert used["train"] == got["train"] and used["test"] == got["test"]  # trained on it
    assert fs.exists(f"{bucket}/run/checkpoints/best.pt")
