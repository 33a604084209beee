"""docs/your-own-data.md, run: a Landsat-like 4-band uint8 scene (another CRS and grid) plus
outlines -> cube on the file's grid -> glacier model on one half -> scores beside the forest on
the other half -> COG/GPKG, using only the commands of the guide (CLI, no Python glue)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cryonet.cli import app as cryonet_app
from glacierstack.cli import app as glacierstack_app
from glacierstack.grid import Grid
from tests.byo.landsat_like import make_landsat_like

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "your-own-data.md"
APPS = {"glacierstack": glacierstack_app, "cryonet": cryonet_app}


def guide_commands() -> list[list[str]]:
    """The shell commands of the guide's bash blocks (continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(ln) for ln in text.splitlines() if ln.strip()]


def _small(args: list[str], overrides: dict[str, str]) -> list[str]:
    out = list(args)
    for opt, val in overrides.items():
        if opt in out:
            out[out.index(opt) + 1] = val
    return out


def run_guide(workdir: Path, overrides: dict[str, str]) -> dict[str, str]:
    """Run every command of the guide in ``workdir``; returns each command's output."""
    outputs = {}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for args in guide_commands():
            prog, *rest = _small(args, overrides)
            res = CliRunner().invoke(APPS[prog], rest)
            assert res.exit_code == 0, f"{' '.join(args)} failed:\n{res.output}\n{res.exception}"
            outputs[f"{prog} {rest[0]}"] = res.output
    finally:
        os.chdir(cwd)
    return outputs


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A synthetic 3 km region, its Landsat-like scene and its glacier outlines."""
    d = tmp_path_factory.mktemp("byo")
    res = CliRunner().invoke(glacierstack_app, ["synth", "--out", str(d / "syn"), "--size-km",
                                                "3", "--no-progress"])  # fmt: skip
    assert res.exit_code == 0, res.output
    work = d / "work"
    work.mkdir()
    make_landsat_like(d / "syn", work / "scene.tif")
    shutil.copy(next((d / "syn").glob("synthetic-truth/*/glacier_outlines.gpkg")),
                work / "outlines.gpkg")  # fmt: skip
    return work


@pytest.mark.slow
def test_guide_runs_end_to_end(scene):
    out = run_guide(
        scene,
        {"--patch-size": "16", "--epochs": "3", "--chunk-size": "64"},
    )
    # layers: the four bands and what follows from them; SWIR layers are not computable
    table = out["glacierstack layers"]
    assert "landsat-etm-c2l2" in table
    # the cube is on the scene's own grid, with every computable layer and two classes
    from glacierstack.store import open_cube

    ds = open_cube(scene / "cube.zarr")
    assert Grid.from_attrs(ds.attrs["grid"]) == Grid.from_raster(scene / "scene.tif")
    assert list(ds.band.values) == ["B02", "B03", "B04", "B08", "NDVI", "NDWI", "NDGI",
                                    "glcm_dissimilarity", "PC1", "PC2", "PC3"]  # fmt: skip
    assert [c["name"] for c in ds.attrs["classes"]] == ["background", "glacier"]
    labels = ds["labels"].values
    assert set(np.unique(labels)) <= {0, 1, 255} and (labels == 1).sum() > 100
    # whole-area scores on the east half: every labelled east pixel once, for both maps
    scores = json.loads((scene / "scores.json").read_text())
    east = labels[:, labels.shape[1] // 2 :]
    n_east = int((east != 255).sum())
    for name in ("cnn", "forest"):
        r = scores["results"][name]
        assert r["pixels"] == n_east == int(np.sum(r["confusion_matrix"]))
        assert 0.0 <= r["classes"]["glacier"]["iou"] <= 1.0
    assert scores["results"]["forest"]["classes"]["glacier"]["iou"] > 0.2  # it learned glaciers
    # the checkpoint records the scheme, sensor and layers; prediction followed training
    from cryonet.checkpoint import load_checkpoint
    from cryonet.infer import open_mosaic

    ckpt = load_checkpoint(scene / "run" / "checkpoints" / "best.pt")
    assert ckpt["extra"]["class_scheme"]["name"] == "glacier"
    assert ckpt["extra"]["sensor"] == "landsat-etm-c2l2"
    assert [c["name"] for c in ckpt["classes"]] == ["background", "glacier"]
    assert list(ckpt["bands"]) == list(ds.band.values)
    run = open_mosaic(scene / "map.zarr").attrs["run"]
    assert (run["tile_size"], run["overlap"]) == (16, 4)  # the training patch size, a quarter
    # exports: a COG on the cube grid and a glacier outline layer
    with rasterio.open(scene / "map.tif") as cog:
        assert cog.crs.to_epsg() == 32644 and cog.shape == labels.shape
    assert "glacier" in gpd.list_layers(scene / "mapped.gpkg")["name"].tolist()


@pytest.mark.slow
def test_landsat_c2l2_recorded_items_through_the_cli(realdata):
    """The same start with real Landsat C2 L2 metadata (no pixels): layers and search."""
    items = str(realdata / "stac" / "pc_landsat-c2-l2-items.json")
    res = CliRunner().invoke(glacierstack_app, ["layers", "--catalog", items, "--modalities",
                                                "landsat"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "landsat-oli-c2l2" in res.output and "tc_brightness" in res.output
    res = CliRunner(env={"COLUMNS": "200"}).invoke(glacierstack_app, [
        "search", "--catalog", items, "--modality", "landsat", "--bbox", "148.5,-42.5,149.0,-42.0",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "LC09_L2SP_089090_20240417_02_T1" in res.output
