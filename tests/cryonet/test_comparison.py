"""Mean ± std over seeds of a model comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cryonet.cli import app
from cryonet.comparison import format_seed_table, seed_table
from cryonet.metrics import SegmentationMetrics
from cryonet.testing import write_toy_cube


def _metrics(diag: list[int]) -> SegmentationMetrics:
    cm = np.diag(diag).astype(np.int64)
    cm[0, 1] = 10  # 10 background-class-0 pixels predicted as class 1
    return SegmentationMetrics.from_confusion(cm)


def test_seed_table_mean_and_sample_std():
    runs = [_metrics([90, 40, 30, 20, 10]), _metrics([90, 20, 30, 20, 10])]
    df = seed_table({"m": runs})
    # class 1 (clean_ice) IoU: 40 / (40 + 10) = 80 % and 20 / 30 = 66.67 %
    ious = np.array([80.0, 200 / 3])
    row = df.loc["m"]
    assert row[("Clean-ice glacier", "mean")] == pytest.approx(ious.mean())
    assert row[("Clean-ice glacier", "std")] == pytest.approx(ious.std(ddof=1))
    assert row[("Water / glacial lake", "std")] == pytest.approx(0.0)
    assert row[("Seeds", "n")] == 2
    md = format_seed_table(df, {"random forest": {"Mean IoU": 50.0}})
    assert f"{ious.mean():.2f} ± {ious.std(ddof=1):.2f}" in md
    assert "| random forest |" in md and "50.00" in md


def test_compare_cli_over_seeds(tmp_path):
    cube = write_toy_cube(tmp_path / "toy.zarr", (96, 96), 3, chunks=48)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "patch_size": 32,
                "batch_size": 2,
                "epochs": 1,
                "steps_per_epoch": 1,
                "num_workers": 0,
                "device": "cpu",
                "encoder": None,
            }
        )  # fmt: skip
    )
    res = CliRunner().invoke(
        app,
        ["compare", "--cube", str(cube), "--out", str(tmp_path / "cmp"), "--config", str(cfg)]
        + ["--model", "unet-tiny", "--seeds", "0,1", "--baseline", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    for s in (0, 1):
        assert (tmp_path / "cmp" / "unet-tiny" / f"seed{s}" / "checkpoints" / "best.pt").is_file()
    text = (tmp_path / "cmp" / "comparison_seeds.md").read_text()
    assert "| unet-tiny |" in text and "| 2 |" in text
    assert "| random forest (per pixel) |" in text
    from cryonet.comparison import results_from_folder

    found = results_from_folder(tmp_path / "cmp")
    assert list(found) == ["unet-tiny"] and len(found["unet-tiny"]) == 2
    assert format_seed_table(seed_table(found)).splitlines()[2] in text
    # the forest's row: its map scored on the test windows, recomputed here by hand
    import rasterio

    from cryonet.data import PatchSplit
    from glacierstack.store import open_cube

    split = PatchSplit.from_json(tmp_path / "cmp" / "split.json")
    with rasterio.open(tmp_path / "cmp" / "random-forest.tif") as src:
        pred = src.read(1)
    lab = open_cube(cube)["labels"].values
    ys, ps = [], []
    for y0, x0 in split.subset("test"):
        ys.append(lab[y0 : y0 + 32, x0 : x0 + 32].ravel())
        ps.append(pred[y0 : y0 + 32, x0 : x0 + 32].ravel())
    y, p = np.concatenate(ys), np.concatenate(ps)
    ok = np.isfinite(y) & (p != 255)
    oa = 100 * (y[ok] == p[ok]).mean()
    rows = pd.read_csv(tmp_path / "cmp" / "comparison.csv", index_col=0)
    assert rows.loc["random-forest", "Overall accuracy"] == pytest.approx(oa, abs=1e-3)
