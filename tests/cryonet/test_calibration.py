"""Temperature scaling, ECE and reliability diagrams against independent references."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from cryonet.calibration import (
    calibrate_checkpoint,
    calibration_from_logits,
    checkpoint_temperature,
    confidence_layers,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    reliability,
)


def test_ece_of_a_hand_computed_example():
    # 4 pixels, 2 bins (0-0.5, 0.5-1):
    # conf 0.9 correct, 0.8 wrong, 0.6 correct -> bin 2: acc 2/3, conf 2.3/3, gap 0.1
    # conf 0.4 (3 classes) wrong -> bin 1: acc 0, conf 0.4, gap 0.4
    # ECE = 3/4 * 0.1 + 1/4 * 0.4 = 0.175
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.4, 0.3, 0.3]], dtype=np.float64
    )
    labels = np.array([0, 1, 1, 2])
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.175)
    rel = reliability(probs, labels, n_bins=2)
    assert rel.count.tolist() == [1, 3]
    np.testing.assert_allclose(rel.accuracy, [0.0, 2 / 3])
    # nodata pixels are ignored
    probs2 = np.vstack([probs, [[1.0, 0.0, 0.0]]])
    assert expected_calibration_error(probs2, np.append(labels, 255), 2) == pytest.approx(0.175)


def _overconfident(n=40_000, k=4, sharpen=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports softmax(sharpen * z) (over-confident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, k))
    p = softmax(z, axis=1)
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return (sharpen * z).astype(np.float32), labels


def test_temperature_scaling_recovers_the_sharpening_and_lowers_ece():
    logits, labels = _overconfident(sharpen=3.0)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.06)

    # an independent 1-D optimiser of the same NLL finds the same temperature
    def nll(log_t):
        lp = log_softmax(logits.astype(np.float64) / np.exp(log_t), axis=1)
        return -lp[np.arange(len(labels)), labels].mean()

    ref = float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))
    assert t == pytest.approx(ref, rel=1e-3)

    cal = calibration_from_logits(logits, labels)
    assert cal.ece_before > 0.1
    assert cal.ece_after < 0.02
    assert cal.nll_after < cal.nll_before
    # a calibrated model is left (nearly) alone
    calibrated, lab = _overconfident(sharpen=1.0, seed=1)
    assert fit_temperature(calibrated, lab) == pytest.approx(1.0, abs=0.05)


def test_confidence_layers():
    probs = np.array([[1.0, 0.25, 0.5], [0.0, 0.25, 0.5], [0.0, 0.25, 0.0], [0.0, 0.25, 0.0]])
    pmax, ent = confidence_layers(probs)
    np.testing.assert_allclose(pmax, [1.0, 0.25, 0.5])
    # entropy / log K: certain -> 0, uniform -> 1, two equal classes of four -> log 2 / log 4
    np.testing.assert_allclose(ent, [0.0, 1.0, 0.5], atol=1e-6)


def test_plot_reliability(tmp_path):
    logits, labels = _overconfident(n=2000)
    diagrams = {
        "before": reliability(softmax(logits, 1), labels),
        "after": reliability(softmax(logits / 3, 1), labels),
    }
    path = plot_reliability(diagrams, tmp_path / "rel.png")
    assert path.stat().st_size > 1000


def test_calibrate_checkpoint_stores_the_temperature(tmp_path):
    from cryonet.checkpoint import load_checkpoint, save_checkpoint
    from cryonet.data import CubeSource, make_split
    from cryonet.models import create_model
    from cryonet.testing import write_toy_cube

    cube = write_toy_cube(tmp_path / "toy.zarr", (96, 96), 3, chunks=48)
    source = CubeSource(cube)
    split = make_split(source, _split_config())
    torch.manual_seed(0)
    model = create_model("unet-tiny", in_channels=3, num_classes=5)
    with torch.no_grad():  # an untrained model with a very sharp head: grossly over-confident
        model.head.weight.normal_(0.0, 5.0)
    path = save_checkpoint(
        tmp_path / "m.pt", model, bands=source.bands, mean=[100.0] * 3, std=[10.0] * 3
    )
    assert checkpoint_temperature(load_checkpoint(path)) == 1.0
    cal = calibrate_checkpoint(path, cube, split)
    stored = load_checkpoint(path)
    assert stored["calibration"]["temperature"] == pytest.approx(cal.temperature)
    assert checkpoint_temperature(stored) == pytest.approx(cal.temperature)
    assert cal.temperature > 2.0  # softened
    assert cal.ece_after < cal.ece_before
    assert cal.nll_after <= cal.nll_before + 1e-9
    assert cal.n_pixels > 0
    # the CLI refits on the same pixels: the same temperature
    from typer.testing import CliRunner

    from cryonet.cli import app

    split.to_json(tmp_path / "split.json")
    res = CliRunner().invoke(
        app,
        ["calibrate", "--checkpoint", str(path), "--cube", str(cube)]
        + ["--split", str(tmp_path / "split.json")],
    )
    assert res.exit_code == 0, res.output
    assert f"T = {cal.temperature:.3f}" in res.output


def _split_config():
    from cryonet.data import SplitConfig

    return SplitConfig(patch_size=32, val_fraction=0.3, seed=0)


def _reference_ece(probs, labels, n_bins=15):
    """ECE by an explicit loop over equal-width bins (independent of cryonet.calibration)."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf >= lo) & ((conf < hi) | (b == n_bins - 1))
        if inside.any():
            gap = abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
            total += inside.sum() / len(conf) * gap
    return total


def _briefly_trained(source, split, seed=0, steps=12):
    """A U-Net trained for a few steps on the toy cube: informative, far from perfect."""
    from cryonet.data import PatchDataset
    from cryonet.models import create_model

    torch.manual_seed(seed)
    model = create_model("unet-tiny", in_channels=3, num_classes=5).train()
    ds = PatchDataset(source, split.subset("train"), 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pick = rng.choice(len(ds), 8)
        x, y = ds[[int(i) for i in pick]]
        loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_temperature_of_an_averaged_ensemble_lowers_its_ece(tmp_path):
    import xarray as xr

    from cryonet.calibration_ensemble import ENSEMBLE_KEY
    from cryonet.checkpoint import load_checkpoint, load_model, save_checkpoint
    from cryonet.data import CubeSource, make_split
    from cryonet.evaluation import evaluate
    from cryonet.infer.ensemble import model_source
    from cryonet.testing import write_toy_cube

    cube = write_toy_cube(tmp_path / "toy.zarr", (96, 96), 3, chunks=48)
    source = CubeSource(cube)
    split = make_split(source, _split_config())
    model = _briefly_trained(source, split)
    paths = []
    for sharpen in (8.0, 16.0):  # two members, the same weights with sharpened logits
        member = copy.deepcopy(model)
        with torch.no_grad():
            member.head.weight.mul_(sharpen)
            member.head.bias.mul_(sharpen)
        paths.append(
            save_checkpoint(
                tmp_path / f"m{sharpen:.0f}.pt",
                member,
                bands=source.bands,
                mean=source.mean,
                std=source.std,
            )  # fmt: skip
        )
    split.to_json(tmp_path / "split.json")
    cal = calibrate_checkpoint(paths[0], cube, tmp_path / "split.json", ensemble=[paths[1]])
    assert cal.temperature > 1.5  # softened
    stored = load_checkpoint(paths[0])
    assert "calibration" not in stored  # the single model's own temperature is untouched
    (entry,) = stored[ENSEMBLE_KEY]
    assert entry["tta"] == [0] and entry["temperature"] == pytest.approx(cal.temperature)

    # reference: the members' softmax averaged by hand on the validation pixels
    ds = xr.open_zarr(cube, mask_and_scale=False)
    feats = ds["features"].values.astype(np.float64)
    labs = ds["labels"].values
    xs, ys = [], []
    for y0, x0 in split.subset("val"):
        raw = feats[:, y0 : y0 + 32, x0 : x0 + 32]
        x = (raw - source.mean[:, None, None]) / source.std[:, None, None]
        xs.append(np.nan_to_num(x, nan=0.0))
        ys.append(labs[y0 : y0 + 32, x0 : x0 + 32])
    x = torch.as_tensor(np.stack(xs), dtype=torch.float32)
    avg = 0.0
    for p in paths:
        member, _ = load_model(p)
        with torch.no_grad():
            avg = avg + softmax(member.eval()(x).double().numpy(), axis=1) / 2
    labels = np.stack(ys).reshape(-1).astype(np.int64)
    keep = labels != 255
    logp = np.log(np.clip(avg, 1e-12, None)).transpose(0, 2, 3, 1).reshape(-1, 5)[keep]
    labels = labels[keep]
    before = _reference_ece(softmax(logp, axis=1), labels)
    after = _reference_ece(softmax(logp / cal.temperature, axis=1), labels)
    assert after < 0.75 * before and cal.nll_after < cal.nll_before
    assert cal.ece_before == pytest.approx(before, abs=1e-4)
    assert cal.ece_after == pytest.approx(after, abs=1e-4)

    # predict / evaluate with the same members apply it; other transforms do not
    assert model_source(paths[0], [paths[1]]).load(torch.device("cpu")).temperature == (
        pytest.approx(cal.temperature)
    )
    assert model_source(paths[0], [paths[1]], "0,4").load(torch.device("cpu")).temperature == 1.0
    assert model_source(paths[1], [paths[0]]).load(torch.device("cpu")).temperature == 1.0
    evaluate(paths[0], cube, split, subset="val", out=tmp_path / "ev", ensemble=[paths[1]])
    report = json.loads((tmp_path / "ev" / "calibration.json").read_text())
    assert report["temperature"] == pytest.approx(cal.temperature)
    assert report["ece_calibrated"] == pytest.approx(after, abs=1e-4)
