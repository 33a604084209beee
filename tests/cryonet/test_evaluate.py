"""Evaluation tables, the comparison of models, and the train/evaluate/compare CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import confusion_matrix as sk_confusion
from typer.testing import CliRunner

from cryonet.cli import app
from cryonet.data import PatchSplit
from cryonet.evaluation import PAPER_CLASS_ORDER, evaluate, metric_tables
from cryonet.metrics import SegmentationMetrics
from cryonet.models import create_model
from cryonet.testing import write_toy_cube
from glacierstack.store import open_cube

FAST = {
    "patch_size": 32,
    "batch_size": 2,
    "epochs": 1,
    "steps_per_epoch": 1,
    "num_workers": 0,
    "device": "cpu",
    "encoder": None,
}


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return write_toy_cube(tmp_path_factory.mktemp("cube") / "toy.zarr", (160, 160), 3, chunks=64)


@pytest.fixture(scope="module")
def cmp(cube, tmp_path_factory):
    """Two small registry models compared through the CLI (trained on one split)."""
    root = tmp_path_factory.mktemp("cmp")
    cfg = root / "fast.yaml"
    cfg.write_text(yaml.safe_dump(FAST))
    res = CliRunner().invoke(
        app,
        ["compare", "--cube", str(cube), "--out", str(root / "cmp"), "--config", str(cfg)]
        + ["--model", "segformer-tiny", "--model", "unet-tiny", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    return root / "cmp", cfg


@pytest.fixture(scope="module")
def run(cmp):
    return cmp[0] / "segformer-tiny"


def test_evaluate_ensemble_tta_and_calibration_report(cube, run, tmp_path):
    ckpt_path = run / "checkpoints" / "best.pt"
    one = evaluate(ckpt_path, cube, run, device="cpu")
    # an ensemble of the same checkpoint twice is the checkpoint
    two = evaluate(ckpt_path, cube, run, device="cpu", ensemble=[ckpt_path])
    np.testing.assert_array_equal(two.confusion, one.confusion)
    tta = evaluate(ckpt_path, cube, run, device="cpu", tta="all", out=tmp_path / "tta")
    assert tta.total_pixels == one.total_pixels
    # ECE before / after the checkpoint's temperature, and a reliability diagram
    evaluate(ckpt_path, cube, run, device="cpu", out=tmp_path / "ev")
    cal = json.loads((tmp_path / "ev" / "calibration.json").read_text())
    stored = torch.load(ckpt_path, weights_only=True)["calibration"]["temperature"]
    assert cal["temperature"] == pytest.approx(stored)
    assert 0 <= cal["ece_calibrated"] <= 1 and cal["pixels"] == one.total_pixels
    assert (tmp_path / "ev" / "reliability.png").stat().st_size > 1000
    cal_tta = json.loads((tmp_path / "tta" / "calibration.json").read_text())
    assert cal_tta["temperature"] == 1.0  # members are calibrated inside the average


def test_evaluate_matches_an_independent_computation(cube, run, tmp_path):
    ckpt_path = run / "checkpoints" / "best.pt"
    m = evaluate(ckpt_path, cube, run, out=tmp_path / "ev", device="cpu")
    # independent: rebuild the model by hand, normalise with xarray, count with scikit-learn
    ckpt = torch.load(ckpt_path, weights_only=True)
    model = create_model(**ckpt["model"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    ds = open_cube(cube)
    feats = ((ds["features"] - ds["band_mean"]) / ds["band_std"]).fillna(0.0).values
    labels = np.asarray(ds["labels"].values, dtype=np.float64)  # 255 (or NaN if decoded): nodata
    split = PatchSplit.from_json(run / "split.json")
    ys, ps = [], []
    with torch.no_grad():
        for y0, x0 in split.subset("test"):
            x = torch.as_tensor(feats[None, :, y0 : y0 + 32, x0 : x0 + 32], dtype=torch.float32)
            ps.append(model(x).argmax(1).numpy().ravel())
            ys.append(labels[y0 : y0 + 32, x0 : x0 + 32].ravel())
    y, p = np.concatenate(ys), np.concatenate(ps)
    keep = np.isfinite(y) & (y != 255)
    assert 0 < keep.sum() < keep.size  # the toy cube's top rows are nodata: some are skipped
    ref = sk_confusion(y[keep].astype(int), p[keep], labels=range(5))
    np.testing.assert_array_equal(m.confusion, ref)
    # tables shaped like the paper's Tables I-III
    iou = pd.read_csv(tmp_path / "ev" / "table_I_iou.csv", index_col=0)
    assert list(iou.columns) == [
        "Clean-ice glacier",
        "Debris-covered glacier",
        "Water / glacial lake",
        "Vegetation",
        "Background",
        "Mean IoU",
    ]
    by_name = dict(zip(m.class_names, m.iou, strict=True))
    expected = [100 * by_name[c] for c in PAPER_CLASS_ORDER] + [100 * m.miou]
    np.testing.assert_allclose(iou.iloc[0].to_numpy(), expected, atol=1e-3)
    for f in ("table_II_recall.md", "table_III_precision.md", "summary.md", "confusion_matrix.png"):
        assert (tmp_path / "ev" / f).is_file(), f
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())


def test_evaluate_cli(cube, run, tmp_path):
    res = CliRunner().invoke(
        app,
        ["evaluate", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--cube", str(cube)]
        + ["--split", str(run / "split.json"), "--out", str(tmp_path), "--device", "cpu"],
    )
    assert res.exit_code == 0, res.output
    assert "overall accuracy" in res.output
    assert "| Model |" in (tmp_path / "table_I_iou.md").read_text()


def test_evaluate_refuses_a_cube_lacking_a_band(run, tmp_path):
    other = write_toy_cube(tmp_path / "two.zarr", (160, 160), 2, chunks=64)
    with pytest.raises(ValueError, match=r"two.zarr lacks bands \['band2'\]"):
        evaluate(run / "checkpoints" / "best.pt", other, run / "split.json", device="cpu")


def test_metric_tables_from_hand_matrices():
    cm = np.diag([10, 20, 30, 40, 50])
    cm[1, 2] = 10  # 10 clean-ice pixels predicted as debris
    m = SegmentationMetrics.from_confusion(cm)
    t = metric_tables({"A": m, "B": SegmentationMetrics.from_confusion(np.diag([1, 1, 1, 1, 1]))})
    assert list(t["iou"].index) == ["A", "B"]
    assert t["iou"].loc["A", "Clean-ice glacier"] == pytest.approx(100 * 20 / 30)
    assert t["iou"].loc["A", "Debris-covered glacier"] == pytest.approx(100 * 30 / 40)
    assert t["recall"].loc["A", "Clean-ice glacier"] == pytest.approx(100 * 20 / 30)
    assert t["precision"].loc["A", "Debris-covered glacier"] == pytest.approx(100 * 30 / 40)
    assert t["summary"].loc["A", "Overall accuracy"] == pytest.approx(100 * 150 / 160)
    assert t["summary"].loc["B", "Mean IoU"] == pytest.approx(100.0)


def test_compare_uses_one_split_for_all_models(cmp):
    out = cmp[0]
    shared = (out / "split.json").read_text()
    names = ["segformer-tiny", "unet-tiny"]
    for name in names:
        assert (out / name / "split.json").read_text() == shared
        assert (out / name / "evaluation" / "table_I_iou.csv").is_file()
    table = pd.read_csv(out / "comparison.csv", index_col=0)
    assert list(table.index) == names
    for name in names:
        per_model = pd.read_csv(out / name / "evaluation" / "summary.csv", index_col=0)
        assert table.loc[name, "Overall accuracy"] == pytest.approx(
            per_model.iloc[0]["Overall accuracy"], abs=1e-3
        )
    assert (out / "overall_accuracy.png").is_file()
    assert (out / "comparison.md").read_text().count("\n| ") == 3  # header + 2 models


def test_train_cli_resumes_a_finished_run(cube, cmp):
    out, cfg = cmp
    run = out / "unet-tiny"
    before = (run / "checkpoints" / "best.pt").stat().st_mtime_ns
    res = CliRunner().invoke(
        app,
        ["train", "--cube", str(cube), "--out", str(run), "--model", "unet-tiny"]
        + ["--config", str(cfg), "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    assert "best checkpoint" in res.output
    assert (run / "checkpoints" / "best.pt").stat().st_mtime_ns == before  # nothing retrained
    assert yaml.safe_load((run / "config.yaml").read_text())["model"] == "unet-tiny"


def test_overlapping_test_windows_count_each_pixel_once(cube, run):
    from cryonet.data import CubeSource, SplitConfig, make_split

    src = CubeSource(cube)
    split = make_split(src, SplitConfig(patch_size=32, overlap=16, seed=3))
    test = split.subset("test")
    union = np.zeros(src.shape, bool)
    for y0, x0 in test:
        union[y0 : y0 + 32, x0 : x0 + 32] = True
    labelled = union & (src.labels != 255)
    ckpt = run / "checkpoints" / "best.pt"
    once = evaluate(ckpt, cube, split, device="cpu", batch_size=3)
    twice = evaluate(ckpt, cube, split, device="cpu", batch_size=3, dedupe=False)
    assert once.total_pixels == labelled.sum()
    per_window = sum(int((src.read_labels(y, x, 32) != 255).sum()) for y, x in test)
    assert twice.total_pixels == per_window > once.total_pixels


def test_one_band_rule_reordered_cube_gives_the_same_results(cube, run, tmp_path):
    """predict, evaluate, importance and finetune take the checkpoint's bands by name."""
    from cryonet.infer import open_mosaic, predict
    from cryonet.permutation import importance_from_checkpoint
    from cryonet.transfer import FinetuneConfig, finetune

    shuffled = write_toy_cube(tmp_path / "shuffled.zarr", (160, 160), 3, chunks=64,
                              band_order=[2, 0, 1])  # fmt: skip
    assert list(open_cube(shuffled)["band"].values) == ["band2", "band0", "band1"]
    ckpt = run / "checkpoints" / "best.pt"
    a, b = (evaluate(ckpt, c, run, device="cpu") for c in (cube, shuffled))
    assert np.array_equal(a.confusion, b.confusion) and a.total_pixels > 0
    kw = dict(split=run, repeats=1, device="cpu", progress=False)
    ia, ib = (importance_from_checkpoint(ckpt, c, **kw) for c in (cube, shuffled))
    assert ia.baseline == ib.baseline and ia.bands == ib.bands == ("band0", "band1", "band2")
    fa, fb = (
        finetune(ckpt, c, tmp_path / f"ft{i}", FinetuneConfig(0, patch_size=32), progress=False)
        for i, c in enumerate((cube, shuffled))
    )
    assert np.array_equal(fa.before.confusion, fb.before.confusion)
    pkw = dict(tile_size=32, overlap=8, device="cpu", progress=False)
    pa, pb = (
        predict(ckpt, c, tmp_path / f"m{i}.zarr", **pkw) for i, c in enumerate((cube, shuffled))
    )
    assert np.array_equal(open_mosaic(pa)["classes"].values, open_mosaic(pb)["classes"].values)
