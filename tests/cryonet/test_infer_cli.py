"""``cryonet predict`` / ``cryonet export`` end to end with a real checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from typer.testing import CliRunner

import cryonet.checkpoint as checkpoint
import cryonet.models as models
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

    # --ensemble and --tta through the CLI, with a calibrated member (temperature 2)
    import shutil

    from cryonet.calibration import Calibration, store_calibration
    from cryonet.infer import AveragedModule

    hot = shutil.copy(ckpt, tmp_path / "hot.pt")
    store_calibration(hot, Calibration(2.0, 0.0, 0.0, 0.0, 0.0, 1))
    out2 = tmp_path / "map_tta.zarr"
    res = runner.invoke(
        app,
        ["predict", "--checkpoint", str(ckpt), "--ensemble", str(hot), "--tta", "0,4",
         "--cube", str(cube), "--out", str(out2), "--tile-size", "64", "--overlap", "16",
         "--chunk-size", "48", "--device", "cpu", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ref2, _ = predict_array(
        feats,
        LoadedModel(AveragedModule([model, model], [1.0, 2.0], (0, 4)), tuple(BANDS), mean, std),
        TilingOptions(64, 16, device="cpu"),
    )
    got2 = np.asarray(zarr.open_group(out2)["probabilities"][:]) / PROBABILITY_SCALE
    assert np.abs(got2 - ref2).max() <= 0.5 / PROBABILITY_SCALE + 1e-4
    # TTA + temperature changed the probabilities
    assert np.abs(got2 - got).max() > 2 / PROBABILITY_SCALE


@pytest.mark.distributed
def test_threads_local_cluster_and_processes_write_bit_identical_mosaics(tmp_path: Path) -> None:
    """One vocabulary for both CLIs: `--scheduler local:2` starts a LocalCluster (it used to
    dial tcp://local:2), `processes` runs a process pool; every scheduler gives the same bytes."""
    h, w = 64, 64
    grid = Grid("EPSG:32645", (600_000.0, 3_000_000.0, 600_640.0, 3_000_640.0), 10)
    rng = np.random.default_rng(2)
    feats = rng.normal(0.0, 1.0, size=(len(BANDS), h, w)).astype(np.float32)
    fa = xr.DataArray(feats, dims=("band", "y", "x"), coords={"band": BANDS, **grid.coords()})
    labels = xr.DataArray(np.zeros((h, w), np.uint8), dims=("y", "x"), coords=grid.coords())
    cube = write_cube(fa, labels, tmp_path / "cube.zarr", grid=grid, chunk_size=32, progress=False)
    model = models.create_model("unet", in_channels=len(BANDS), num_classes=5, encoder="resnet18")
    ckpt = checkpoint.save_checkpoint(
        tmp_path / "m.pt", model, bands=BANDS, mean=np.zeros(4), std=np.ones(4),
        classes=class_table(), epoch=1,
    )  # fmt: skip
    maps = {}
    for sched in ("threads", "local:2", "processes"):
        out = tmp_path / f"{sched.replace(':', '')}.zarr"
        res = CliRunner().invoke(
            app,
            ["predict", "--checkpoint", str(ckpt), "--cube", str(cube), "--out", str(out),
             "--tile-size", "32", "--overlap", "8", "--chunk-size", "24", "--device", "cpu",
             "--scheduler", sched, "--threads", "2", "--torch-threads", "1", "--no-progress"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        group = zarr.open_group(out, mode="r")
        maps[sched] = (np.asarray(group["classes"][:]), np.asarray(group["probabilities"][:]))
    for sched in ("local:2", "processes"):
        np.testing.assert_array_equal(maps[sched][0], maps["threads"][0])
        np.testing.assert_array_equal(maps[sched][1], maps["threads"][1])


def test_predict_refuses_a_bad_scheduler(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["predict", "--checkpoint", str(tmp_path / "m.pt"), "--cube", str(tmp_path / "c.zarr"),
         "--out", str(tmp_path / "o.zarr"), "--scheduler", "local2"],
    )  # fmt: skip
    assert res.exit_code != 0 and "local:N" in res.output
