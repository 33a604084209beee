"""The end-to-end demo on small synthetic regions: every step, re-use, redo, the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cryonet.cli import app
from cryonet.demo import STEPS, DemoConfig, run_demo

_SMALL = {
    "size_km": 1.2,
    "train_overrides": {
        "patch_size": 32,
        "epochs": 1,
        "batch_size": 4,
        "steps_per_epoch": 2,
        "num_workers": 0,
    },
    "tile_size": 64,
    "overlap": 16,
    "importance_repeats": 2,
    "importance_max_samples": 2,
    "finetune_iterations": 2,
    "finetune_batch_size": 4,
}
SMALL = DemoConfig(**_SMALL)
SMALL_FT1 = DemoConfig(**{**_SMALL, "finetune_iterations": 1})
NAMES = [s.name for s in STEPS]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: avoids oversubscribing 2 cores under xdist
    out = tmp_path_factory.mktemp("demo")
    res = run_demo(out, SMALL, progress=False)
    yield res
    torch.set_num_threads(n)


def test_every_step_ran_and_recorded(demo):
    assert list(demo.ran) == NAMES
    for name in NAMES:
        rec = json.loads((demo.out / "steps" / f"{name}.json").read_text())
        assert rec["step"] == name and rec["seconds"] >= 0
        for rel in rec["outputs"].values():
            assert (demo.out / rel).exists(), (name, rel)
    cfg = json.loads((demo.out / "steps" / "config.json").read_text())
    assert cfg["size_km"] == 1.2


def test_synthetic_catalogs_and_cubes(demo):
    import pystac

    from glacierstack.store import open_cube

    for preset, epsg in (("poiqu", 32645), ("montblanc", 32632)):
        cat = pystac.Catalog.from_file(
            demo.out / demo.records[f"synth_{preset}"]["outputs"]["catalog"]
        )
        cols = {c.id for c in cat.get_children()}
        assert {"sentinel-2-l2a", "cop-dem-glo-30", "synthetic-truth"} <= cols
        ds = open_cube(demo.out / demo.records[f"cube_{preset}"]["outputs"]["cube"])
        assert ds.features.sizes["band"] == 30 and ds.rio.crs.to_epsg() == epsg
        assert ds.sizes["y"] == ds.sizes["x"] == 120  # 1.2 km at 10 m
        labels = ds.labels.values
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 4, 255}
        assert (labels != 255).mean() > 0.5


def test_training_evaluation_prediction_outlines(demo):
    import geopandas as gpd
    import rasterio

    from cryonet.checkpoint import load_model
    from cryonet.infer import open_mosaic
    from glacierstack.store import open_cube

    ckpt = demo.out / demo.records["train"]["outputs"]["checkpoint"]
    model, meta = load_model(ckpt)
    assert len(meta["bands"]) == 30 and meta["model"]["name"] == "cryonet"
    summary = pd.read_csv(demo.out / "evaluate" / "summary.csv", index_col=0)
    assert summary["Overall accuracy"].iloc[0] == pytest.approx(
        100 * demo.records["evaluate"]["overall_accuracy"], abs=1e-3
    )
    mos = open_mosaic(demo.out / demo.records["predict"]["outputs"]["mosaic"])
    cube = open_cube(demo.out / demo.records["cube_poiqu"]["outputs"]["cube"])
    assert mos["classes"].shape == cube["labels"].shape
    with rasterio.open(demo.out / demo.records["outlines"]["outputs"]["cog"]) as src:
        np.testing.assert_array_equal(src.read(1), mos["classes"].values)
    gpkg = demo.out / demo.records["outlines"]["outputs"]["gpkg"]
    for layer, info in demo.records["outlines"]["layers"].items():
        df = gpd.read_file(gpkg, layer=layer)
        assert len(df) == info["polygons"]
        assert df["area_km2"].sum() == pytest.approx(info["area_km2"])
    # the glacier layer covers exactly the predicted clean-ice + debris pixels
    n_glacier = int(np.isin(mos["classes"].values, [1, 2]).sum())
    assert demo.records["outlines"]["layers"]["glacier"]["area_km2"] == pytest.approx(
        n_glacier * 1e-4
    )


def test_importance_and_transfer_outputs(demo):
    imp = pd.read_csv(demo.out / demo.records["importance"]["outputs"]["csv"], index_col="band")
    assert len(imp) == 30
    # sorted by mean mIoU drop, most important first; two repeats give a defined spread
    assert imp["miou_drop_mean"].is_monotonic_decreasing
    assert np.isfinite(imp["miou_drop_std"]).all()
    side = json.loads((demo.out / "importance" / "importance.json").read_text())
    assert side["repeats"] == 2 and side["n_samples"] == demo.records["importance"]["n_samples"]
    assert side["n_samples"] == 2
    tr = pd.read_csv(demo.out / demo.records["transfer"]["outputs"]["csv"], index_col="class")
    assert tr.loc["mean", "IoU before"] == pytest.approx(
        demo.records["transfer"]["miou_before"], abs=1e-6
    )
    assert tr.loc["mean", "IoU after"] == pytest.approx(
        demo.records["transfer"]["miou_after"], abs=1e-6
    )
    assert (demo.out / "transfer" / "finetuned.pt").exists()


def test_report_has_every_section(demo):
    text = demo.report.read_text()
    for heading in (
        "## Overview",
        "## Evaluation on the Poiqu test patches",
        "## Map of the whole Poiqu region",
        "## Outlines",
        "## Permutation channel importance",
        "## Transfer to Mont Blanc",
        "## Calibrated confidence",
        "## Glacier area change 2018 -> 2028",
    ):
        assert heading in text
    assert "report_files/confidence_map.png" in text and "evaluate/reliability.png" in text
    areas = pd.read_csv(demo.out / "areas" / "areas.csv", index_col=0)
    ref = pd.read_csv(demo.out / "areas" / "reference_areas.csv", index_col=0)
    assert (
        len(areas) == len(ref) > 0 and (areas["area_low_km2_2018"] <= areas["area_km2_2018"]).all()
    )
    # the synthetic glaciers retreat: the reference (truth) area shrinks
    assert ref["change_km2"].sum() < 0
    for link in ("report_files/class_map.png", "importance/importance.png"):
        assert f"]({link})" in text and (demo.out / link).exists()
    assert "evaluate/confusion_matrix.png" in text
    assert (demo.out / "report.html").exists()


def test_rerun_reuses_everything_and_redo_cascades(demo):
    t0 = time.perf_counter()
    again = run_demo(demo.out, SMALL, progress=False)
    assert again.ran == () and time.perf_counter() - t0 < 30
    assert again.records["train"]["finished"] == demo.records["train"]["finished"]
    # a changed transfer option reruns transfer and the report only
    changed = run_demo(demo.out, SMALL_FT1, progress=False)
    assert changed.ran == ("transfer", "report")
    # redo one step: it and the steps depending on it run again, nothing else
    redone = run_demo(demo.out, SMALL_FT1, redo=["outlines"], progress=False)
    assert redone.ran == ("outlines", "report")


def test_interrupted_step_is_rerun(demo, tmp_path):
    # whatever other tests left: first bring the output folder up to date with SMALL_FT1
    run_demo(demo.out, SMALL_FT1, progress=False)
    # a step without a record (e.g. killed) runs again; steps before it are reused
    (demo.out / "steps" / "evaluate.json").unlink()
    res = run_demo(demo.out, SMALL_FT1, progress=False)
    assert res.ran == ("evaluate", "report")
    assert not list((demo.out / "steps").glob("*.started"))
    # interrupted while running with other parameters: its folder is emptied first
    (demo.out / "steps" / "evaluate.json").unlink()
    (demo.out / "steps" / "evaluate.started").write_text("a-different-key")
    (demo.out / "evaluate" / "leftover.txt").write_text("from the interrupted run")
    res = run_demo(demo.out, SMALL_FT1, progress=False)
    assert res.ran == ("evaluate", "report")
    assert not (demo.out / "evaluate" / "leftover.txt").exists()
    assert (demo.out / "evaluate" / "summary.csv").exists()


def test_until_and_bad_names(tmp_path):
    with pytest.raises(ValueError, match="unknown demo step"):
        run_demo(tmp_path, redo=["nope"], progress=False)
    assert DemoConfig(size_km=20).resolved_montblanc_km() == 10.0
    assert DemoConfig(size_km=3).resolved_montblanc_km() == 3
    assert DemoConfig(size_km=3, montblanc_size_km=5).resolved_montblanc_km() == 5


def test_cli_demo_reuses_finished_run(demo):
    runner = CliRunner()
    args = [
        "demo",
        "--out",
        str(demo.out),
        "--size-km",
        "1.2",
        "--no-progress",
        "--until",
        "cube_poiqu",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["demo", "--out", str(demo.out), "--redo-step", "nope"])
    assert res.exit_code != 0 and "unknown step" in res.output


def test_cli_importance_and_finetune(demo, tmp_path):
    runner = CliRunner()
    ckpt = str(demo.out / demo.records["train"]["outputs"]["checkpoint"])
    cube = str(demo.out / demo.records["cube_poiqu"]["outputs"]["cube"])
    res = runner.invoke(
        app,
        ["importance", "--checkpoint", ckpt, "--cube", cube, "--out", str(tmp_path / "imp"),
         "--split", str(demo.out / "train"), "--repeats", "1", "--max-samples", "2",
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "baseline mIoU" in res.output and (tmp_path / "imp" / "importance.png").exists()
    mb = str(demo.out / demo.records["cube_montblanc"]["outputs"]["cube"])
    res = runner.invoke(
        app,
        ["finetune", "--checkpoint", ckpt, "--cube", mb, "--out", str(tmp_path / "ft"),
         "--iterations", "1", "--batch-size", "2", "--patch-size", "32", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.output and (tmp_path / "ft" / "transfer_metrics.md").exists()
