"""``cryonet predict`` / ``cryonet export`` end to end with a real checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from typer.testing import CliRunner

from cryonet.cli import app
from cryonet.infer import (
    PROBABILITY_SCALE,
    LoadedModel,
    TilingOptions,
    open_mosaic,
    predict_array,
)
from glacierstack.classes import class_table
from glacierstack.grid import Grid
from glacierstack.store import write_cube

checkpoint = pytest.importorskip("cryonet.checkpoint")
models = pytest.importorskip("cryonet.models")

BANDS = ["B03", "B04", "B08", "coherence"]


def test_predict_and_export_from_checkpoint(tmp_path: Path) -> None:
    h, w = 72, 80
    grid = Grid(
        "EPSG:32645", (600_000.0, 3_000_000.0, 600_000.0 + 10 * w, 3_000_000.0 + 10 * h), 10
    )
    rng = np.random.default_rng(1)
    feats = rng.normal(2.0, 3.0, size=(len(BANDS), h, w)).astype(np.float32)
    fa = xr.DataArray(feats, dims=("band", "y", "x"), coords={"band": BANDS, **grid.coords()})
    labels = xr.DataArray(np.zeros((h, w), np.uint8), dims=("y", "x"), coords=grid.coords())
    cube = write_cube(fa, labels, tmp_path / "cube.zarr", grid=grid, chunk_size=32, progress=False)

    model = models.create_model("unet", in_channels=len(BANDS), num_classes=5, encoder="resnet18")
    mean, std = feats.mean(axis=(1, 2)), feats.std(axis=(1, 2))
    ckpt = checkpoint.save_checkpoint(
        tmp_path / "m.pt", model, bands=BANDS, mean=mean, std=std, classes=class_table(), epoch=3
    )

    runner = CliRunner()
    out = tmp_path / "map.zarr"
    res = runner.invoke(
        app,
        ["predict", "--checkpoint", str(ckpt), "--cube", str(cube), "--out", str(out),
         "--tile-size", "64", "--overlap", "16", "--chunk-size", "48", "--device", "cpu",
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ds = open_mosaic(out)
    assert ds.attrs["provenance"]["model"]["model"]["name"] == "unet"
    assert len(ds.attrs["run"]["model"]) == 64  # sha256 of the checkpoint

    ref, _ = predict_array(
        feats,
        LoadedModel(model.eval(), tuple(BANDS), mean, std),
        TilingOptions(64, 16, device="cpu"),
    )
    got = np.asarray(zarr.open_group(out)["probabilities"][:]) / PROBABILITY_SCALE
    assert np.abs(got - ref).max() <= 0.5 / PROBABILITY_SCALE + 1e-4

    res = runner.invoke(
        app,
        [
            "export",
            str(out),
            "--cog",
            str(tmp_path / "c.tif"),
            "--polygons",
            str(tmp_path / "o.gpkg"),
        ],
    )
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "c.tif") as src:
        assert np.array_equal(src.read(1), ds["classes"].values)
    assert (tmp_path / "o.gpkg").is_file()
