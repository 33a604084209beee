"""Test-time augmentation, ensembles, calibrated temperature and confidence layers in predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from cryonet.infer import (
    DIHEDRAL,
    PROBABILITY_SCALE,
    AveragedModule,
    EnsembleModel,
    InMemoryModel,
    LoadedModel,
    open_mosaic,
    predict,
    predict_array,
)
from cryonet.infer.ensemble import dihedral, inverse_dihedral, parse_tta
from glacierstack.grid import Grid
from glacierstack.store import write_cube

BANDS = ("B02", "B03", "B04", "elevation")
K = 5


def make_cube(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    grid = Grid(
        "EPSG:32645", (500_000.0, 3_100_000.0, 500_000.0 + 10 * w, 3_100_000.0 + 10 * h), 10
    )
    feats = rng.normal(size=(len(BANDS), h, w)).astype(np.float32)
    fa = xr.DataArray(feats, dims=("band", "y", "x"), coords={"band": list(BANDS), **grid.coords()})
    fa.attrs["grid"] = grid.to_attrs()
    labels = xr.DataArray(np.zeros((h, w), np.uint8), dims=("y", "x"), coords=grid.coords())
    write_cube(fa, labels, path, grid=grid, stac_items=["a"], chunk_size=64, progress=False)
    return path


class SmallConv(torch.nn.Module):
    """Two zero-padded 3x3 convolutions: not equivariant near tile edges."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = torch.nn.Conv2d(len(BANDS), 6, 3, padding=1)
        self.c2 = torch.nn.Conv2d(6, K, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x)))


def loaded(module: torch.nn.Module, mean=None, std=None) -> LoadedModel:
    return LoadedModel(
        module,
        BANDS,
        np.zeros(len(BANDS)) if mean is None else mean,
        np.ones(len(BANDS)) if std is None else std,
    )


class Pointwise(torch.nn.Module):
    """1x1 convolutions only: equivariant under every rotation and flip of the input."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.c1 = torch.nn.Conv2d(len(BANDS), 8, 1)
        self.c2 = torch.nn.Conv2d(8, K, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.tanh(self.c1(x)))


def _feats(h: int = 40, w: int = 52, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(BANDS), h, w)).astype(np.float32)


def _tta_model(module: torch.nn.Module, tta=DIHEDRAL, n: int = 1, t: float = 1.0) -> LoadedModel:
    src = EnsembleModel(
        tuple(InMemoryModel(_with_t(loaded(module), t)) for _ in range(n)), tuple(tta)
    )
    return src.load(torch.device("cpu"))


def _with_t(m: LoadedModel, t: float) -> LoadedModel:
    return LoadedModel(m.module, m.bands, m.mean, m.std, m.classes, m.meta, t)


def test_dihedral_transforms_are_the_group_d4():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    outs = [dihedral(x, c) for c in DIHEDRAL]
    # eight distinct transforms of an asymmetric image, each undone by its inverse
    assert len({o.numpy().tobytes() for o in outs}) == 8
    for c, o in zip(DIHEDRAL, outs, strict=True):
        assert torch.equal(inverse_dihedral(o, c), x)
    # against NumPy: code 1 = one quarter turn, code 4 = left-right flip
    np.testing.assert_array_equal(outs[1].numpy(), np.rot90(x.numpy(), 1, axes=(2, 3)))
    np.testing.assert_array_equal(outs[4].numpy(), x.numpy()[..., ::-1])
    assert parse_tta("all") == DIHEDRAL and parse_tta(None) == (0,) and parse_tta("0,5") == (0, 5)
    with pytest.raises(ValueError, match="0..7"):
        parse_tta("0,8")


def test_tta_of_an_equivariant_model_equals_no_tta():
    feats = _feats()
    ref, cls_ref = predict_array(feats, loaded(Pointwise()), _tiling())
    tta, cls_tta = predict_array(feats, _tta_model(Pointwise()), _tiling())
    np.testing.assert_allclose(tta, ref, atol=1e-5)
    assert np.array_equal(cls_ref, cls_tta)
    # ... but not for a model with zero-padded 3x3 convolutions: TTA really runs the transforms
    ref2, _ = predict_array(feats, loaded(SmallConv()), _tiling())
    tta2, _ = predict_array(feats, _tta_model(SmallConv()), _tiling())
    assert np.abs(tta2 - ref2).max() > 1e-3


def test_tta_equals_the_explicit_average_over_transforms():
    feats = _feats(32, 32)
    m = SmallConv()
    x = torch.from_numpy(feats[None])
    with torch.no_grad():
        expect = np.mean(
            [
                np.rot90(
                    torch.softmax(
                        m(torch.from_numpy(np.rot90(feats, k, (1, 2)).copy()[None])), 1
                    ).numpy()[0],
                    -k,
                    (1, 2),
                )
                for k in range(4)
            ],
            axis=0,
        )
        got = torch.softmax(_tta_model(m, (0, 1, 2, 3)).module(x), 1).numpy()[0]
    np.testing.assert_allclose(got, expect, atol=1e-5)


def test_ensemble_of_identical_models_equals_one_model():
    feats = _feats()
    one, c1 = predict_array(feats, loaded(SmallConv(seed=3)), _tiling())
    three, c3 = predict_array(feats, _tta_model(SmallConv(seed=3), (0,), n=3), _tiling())
    np.testing.assert_allclose(three, one, atol=1e-5)
    assert np.array_equal(c1, c3)
    # two different members: the mean of their probabilities
    a, _ = predict_array(feats, loaded(SmallConv(seed=1)), _tiling())
    b, _ = predict_array(feats, loaded(SmallConv(seed=2)), _tiling())
    src = EnsembleModel(
        (InMemoryModel(loaded(SmallConv(seed=1))), InMemoryModel(loaded(SmallConv(seed=2))))
    )
    ab, _ = predict_array(feats, src.load(torch.device("cpu")), _tiling())
    np.testing.assert_allclose(ab, (a + b) / 2, atol=1e-5)


def test_member_statistics_and_temperature_are_applied():
    feats = _feats() * 3 + 10
    mean, std = np.full(len(BANDS), 10.0), np.full(len(BANDS), 3.0)
    m = SmallConv(seed=4)
    ref, _ = predict_array(feats, loaded(m, mean, std), _tiling())
    # a member with other statistics sees its own normalisation of the same raw input
    src = EnsembleModel((InMemoryModel(loaded(m)), InMemoryModel(loaded(m, mean, std))))
    mixed, _ = predict_array(feats, src.load(torch.device("cpu")), _tiling())
    plain, _ = predict_array(feats, loaded(m), _tiling())
    np.testing.assert_allclose(mixed, (plain + ref) / 2, atol=1e-5)
    # temperature 2 = logits halved
    hot, _ = predict_array(feats, _with_t(loaded(m, mean, std), 2.0), _tiling())
    half = AveragedModule([m], [2.0])
    with torch.no_grad():
        x = torch.from_numpy(((feats - 10) / 3)[None])
        expect = torch.softmax(m(x) / 2, 1)[0].numpy()
        got = torch.softmax(half(x), 1)[0].numpy()
    np.testing.assert_allclose(got, expect, atol=1e-6)
    assert np.abs(hot - ref).max() > 1e-3


def test_predict_writes_confidence_layers_and_resumes_with_tta(tmp_path: Path):
    cube = make_cube(tmp_path / "cube.zarr", 60, 70)
    kw = dict(tile_size=32, overlap=8, chunk_size=48, device="cpu", progress=False)
    src = EnsembleModel((InMemoryModel(loaded(SmallConv())),), (0, 1))
    out = predict(src, cube, tmp_path / "m.zarr", **kw)
    ds = open_mosaic(out)
    p = ds["probabilities"].values / PROBABILITY_SCALE
    conf, ent = (
        ds["confidence"].values / PROBABILITY_SCALE,
        ds["entropy"].values / PROBABILITY_SCALE,
    )
    assert ds["confidence"].dtype == np.uint8 and ds["entropy"].dtype == np.uint8
    np.testing.assert_allclose(conf, p.max(axis=0), atol=3 / PROBABILITY_SCALE)
    pe = np.clip(p, 1e-12, 1)
    np.testing.assert_allclose(ent, -(p * np.log(pe)).sum(0) / np.log(K), atol=0.03)
    assert ds.attrs["provenance"]["model"]["tta"] == [0, 1]
    # the same ensemble resumes (same signature); another TTA set is a different run
    assert predict(src, cube, out, **kw) == out
    with pytest.raises(ValueError, match="different run"):
        predict(EnsembleModel(src.members, (0, 2)), cube, out, **kw)


def _tiling():
    from cryonet.infer import TilingOptions

    return TilingOptions(tile_size=32, overlap=8, batch_size=4, device="cpu")
