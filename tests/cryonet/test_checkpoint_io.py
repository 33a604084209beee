"""Checkpoint round trips, safe loading and band-list checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cryonet.checkpoint import check_bands, load_checkpoint, load_model, save_checkpoint
from cryonet.models import create_model
from glacierstack.classes import class_table
from glacierstack.layers import ALL_LAYERS

BANDS = list(ALL_LAYERS)


@pytest.fixture
def trained() -> nn.Module:
    """A tiny CryoNet whose BN running statistics have moved away from their defaults."""
    torch.manual_seed(0)
    model = create_model("cryonet-tiny", 30, 5, deep_supervision=True).train()
    with torch.no_grad():
        model(torch.randn(2, 30, 32, 32) * 3 + 1)
    return model.eval()


def _stats() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=30).astype(np.float32), rng.uniform(0.5, 2, size=30)


def test_round_trip_reproduces_outputs_and_metadata(tmp_path: Path, trained: nn.Module) -> None:
    mean, std = _stats()
    path = save_checkpoint(
        tmp_path / "sub" / "m.pt", trained, bands=BANDS, mean=mean, std=std, epoch=np.int64(7),
        metrics={"miou": np.float32(0.5), "acc": np.float64(0.9), "iou": np.array([0.1, 0.2]),
                 "n": 3},
        extra={"config": {"lr": 3e-4, "layers": ("B01", "B02")}},
    )  # fmt: skip
    model, meta = load_model(path, bands=BANDS)
    assert not model.training and meta["epoch"] == 7
    x = torch.randn(2, 30, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x), rtol=0, atol=0)
    assert meta["bands"] == BANDS and meta["classes"] == class_table()
    np.testing.assert_array_equal(meta["mean"], mean.astype(np.float64))
    np.testing.assert_array_equal(meta["std"], std)
    assert type(meta["metrics"]["acc"]) is float
    assert meta["metrics"]["miou"] == pytest.approx(0.5) and meta["metrics"]["iou"] == [0.1, 0.2]
    assert meta["model"]["deep_supervision"] is True
    assert meta["extra"]["config"]["layers"] == ["B01", "B02"]
    assert set(meta["software"]) == {"cryonet", "torch"}
    # The file is a plain dict that the restricted unpickler accepts on its own.
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, dict) and "state_dict" in raw
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary leftovers


def test_wrapped_model_is_unwrapped(tmp_path: Path, trained: nn.Module) -> None:
    mean, std = _stats()
    path = save_checkpoint(
        tmp_path / "m.pt", nn.DataParallel(trained), bands=BANDS, mean=mean, std=std
    )
    keys = load_checkpoint(path)["state_dict"].keys()
    assert not any(k.startswith("module.") for k in keys)


def test_different_band_lists_are_named(tmp_path: Path, trained: nn.Module) -> None:
    mean, std = _stats()
    path = save_checkpoint(tmp_path / "m.pt", trained, bands=BANDS, mean=mean, std=std)
    cube = [b for b in BANDS if b != "coherence"] + ["lst_night"]
    with pytest.raises(ValueError, match=r"lacks bands \['coherence'\]"):
        load_model(path, bands=cube)
    # the one band rule: by name, in the checkpoint's order; cube order and extras are free
    swapped = BANDS.copy()
    swapped[3], swapped[4] = swapped[4], swapped[3]
    load_model(path, bands=[*swapped, "lst_night"])
    assert check_bands(BANDS, swapped)[3:5] == [4, 3]
    with pytest.raises(ValueError, match=f"lacks bands \\[{BANDS[-1]!r}\\]"):
        check_bands(BANDS, BANDS[:-1])


def test_save_validates_inputs_and_writes_nothing_on_error(
    tmp_path: Path, trained: nn.Module
) -> None:
    mean, std = _stats()
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match="29 band names given but the model has 30"):
        save_checkpoint(path, trained, bands=BANDS[:-1], mean=mean[:-1], std=std[:-1])
    bad_std = std.copy()
    bad_std[2] = 0
    with pytest.raises(ValueError, match=r"std is not finite and positive for bands \['B03'\]"):
        save_checkpoint(path, trained, bands=BANDS, mean=mean, std=bad_std)
    with pytest.raises(TypeError, match=r"metrics\['when'\] has type object"):
        save_checkpoint(path, trained, bands=BANDS, mean=mean, std=std, metrics={"when": object()})
    with pytest.raises(ValueError, match="class table has 2 classes"):
        save_checkpoint(path, trained, bands=BANDS, mean=mean, std=std, classes=class_table()[:2])
    with pytest.raises(ValueError, match="no model config"):
        save_checkpoint(path, nn.Conv2d(30, 5, 1), bands=BANDS, mean=mean, std=std)
    assert not path.exists() and list(tmp_path.iterdir()) == []


class _Payload:
    """Arbitrary object: a weights_only load must refuse it."""


def test_unsafe_or_foreign_files_are_rejected(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "cryonet-checkpoint", "obj": _Payload()}, unsafe)
    with pytest.raises(ValueError, match="unsafe.pt is not a loadable cryonet checkpoint"):
        load_checkpoint(unsafe)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="foreign.pt is not a cryonet checkpoint"):
        load_model(foreign)
    partial = tmp_path / "partial.pt"
    torch.save({"format": "cryonet-checkpoint", "version": 1}, partial)
    with pytest.raises(ValueError, match="lacks the entries.*state_dict"):
        load_model(partial)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")
