"""``cryonet compare``, ``evaluate`` and ``areas`` with their output folders on s3://.

The S3-compatible server is a real one on 127.0.0.1 (moto in server mode, ``s3`` fixture).
compare trains into and tabulates in a folder on the bucket; evaluate reads its checkpoint,
ensemble member and run directory (for ``split.json``) from there and writes its tables there;
the result must equal an evaluation of local copies, and nothing may be written to the working
directory.
"""

from __future__ import annotations

import json

import fsspec
import yaml
from typer.testing import CliRunner

from cryonet.cli import app
from cryonet.evaluation import evaluate
from cryonet.testing import write_toy_cube


def _config(path):
    cfg = {"model": "unet-tiny", "encoder": None, "patch_size": 16, "batch_size": 4,
           "epochs": 1, "num_workers": 0, "device": "cpu", "augment": False}  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_compare_and_evaluate_with_outputs_on_s3(s3, tmp_path, monkeypatch):
    root, fs = s3["root"], fsspec.filesystem("s3")
    bucket = root.removeprefix("s3://")
    cube = write_toy_cube(tmp_path / "cube.zarr", (64, 64), 3, chunks=32, nodata_rows=0)
    fs.put(str(cube), f"{bucket}/cube.zarr", recursive=True)
    config = _config(tmp_path / "tiny.yaml")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["compare", "--cube", f"{root}/cube.zarr", "--out", f"{root}/cmp", "--model", "unet-tiny",
         "--config", str(config), "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for f in ("comparison.md", "split.json", "unet-tiny/checkpoints/best.pt",
              "unet-tiny/evaluation/metrics.json"):  # fmt: skip
        assert fs.exists(f"{bucket}/cmp/{f}"), f
    ckpt = f"{root}/cmp/unet-tiny/checkpoints/best.pt"
    res = runner.invoke(
        app,
        ["evaluate", "--checkpoint", ckpt, "--cube", f"{root}/cube.zarr",
         "--split", f"{root}/cmp/unet-tiny", "--out", f"{root}/eval", "--ensemble", ckpt,
         "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert list(work.iterdir()) == []  # nothing staged or left behind locally
    got = json.loads(fs.cat_file(f"{bucket}/eval/metrics.json"))
    assert fs.exists(f"{bucket}/eval/confusion_matrix.png")

    local = tmp_path / "local"
    fs.get(f"{bucket}/cmp/unet-tiny", str(local), recursive=True)
    best = local / "checkpoints" / "best.pt"
    evaluate(best, cube, local, out=tmp_path / "eval", device="cpu", ensemble=[best])
    want = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert got == want and got  # the same checkpoints, split and cube as the local copies


def test_area_change_folder_on_s3(s3, tmp_path, monkeypatch):
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    from cryonet.areas import area_change, labels_as_mosaic

    root, fs = s3["root"], fsspec.filesystem("s3")
    bucket = root.removeprefix("s3://")
    cube = write_toy_cube(tmp_path / "cube.zarr", (32, 32), 2, chunks=32, nodata_rows=0)
    x0, y1 = 500000.0, 3100000.0
    outlines = gpd.GeoDataFrame(
        {"RGIId": ["A", "B"]},
        geometry=[box(x0, y1 - 320, x0 + 160, y1), box(x0 + 160, y1 - 320, x0 + 320, y1)],
        crs="EPSG:32645",
    )
    mosaic = labels_as_mosaic(cube)
    monkeypatch.chdir(tmp_path)  # a URL taken for a relative path would land here
    area_change([mosaic, mosaic], outlines, ["t1", "t2"], f"{root}/areas")
    area_change([mosaic, mosaic], outlines, ["t1", "t2"], tmp_path / "areas")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/areas")) == [
        "area_change.png", "areas.csv", "areas.gpkg"]  # fmt: skip
    with fs.open(f"{bucket}/areas/areas.csv") as f:
        got = pd.read_csv(f)
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "areas" / "areas.csv"))
    assert got["area_km2_t1"].sum() > 0


def test_checkpoint_written_and_calibrated_on_s3(s3, tmp_path, monkeypatch):
    import torch

    from cryonet.calibration import Calibration, checkpoint_temperature, store_calibration
    from cryonet.checkpoint import load_checkpoint, load_model, save_checkpoint
    from cryonet.models import create_model

    root, fs = s3["root"], fsspec.filesystem("s3")
    monkeypatch.chdir(tmp_path)  # a URL taken for a relative path would land here
    torch.manual_seed(0)
    model = create_model("unet-tiny", 3, 5).eval()
    url = f"{root}/run/checkpoints/best.pt"
    bands = ["band0", "band1", "band2"]
    got = save_checkpoint(url, model, bands=bands, mean=[0.0] * 3, std=[1.0] * 3, epoch=2)
    assert got == url and fs.exists(url.removeprefix("s3://"))
    store_calibration(url, Calibration(1.7, 0.2, 0.1, 1.0, 0.9, 10))
    assert list(tmp_path.iterdir()) == []  # nothing written locally
    assert checkpoint_temperature(load_checkpoint(url)) == 1.7  # the new upload is read
    loaded, meta = load_model(url)
    assert meta["epoch"] == 2 and meta["bands"] == bands
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
