"""Training loop: outputs, learning, exact resume after interruption, configs, DDP (gloo)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from cryonet.testing import write_toy_cube
from cryonet.training import TrainConfig, load_config, train


class Tiny(nn.Module):
    """Small CNN with BatchNorm and dropout (so RNG and running stats matter for resume)."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout2d(0.2),
            nn.Conv2d(8, k, 1),
        )
        self.config = {"name": "tiny-test", "encoder": None, "in_channels": c, "num_classes": k}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyAux(Tiny):
    """Tiny with one auxiliary head (deep supervision): unused heads would break DDP."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__(c, k)
        self.deep_supervision = True
        self.aux = nn.Conv2d(8, k, 1)

    def forward_aux(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.net[:4](x)
        return [self.aux(h), self.net[4](h)]


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    return write_toy_cube(tmp_path_factory.mktemp("cube") / "toy.zarr", (200, 168), 3, chunks=64)


def _cfg(**kw) -> TrainConfig:
    base = dict(
        model="tiny-test", encoder=None, patch_size=32, batch_size=4, epochs=3, lr=1e-2,
        num_workers=0, device="cpu", augment=True, scheduler="cosine", grad_clip=1.0, seed=7,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_run_directory_contents_and_learning(cube, tmp_path):
    cfg = _cfg(epochs=4)
    res = train(cube, tmp_path / "run", cfg, model_factory=Tiny, progress=False)
    run = res.run_dir
    for f in ("config.yaml", "split.json", "metrics.csv", "metrics.json", "curves.png"):
        assert (run / f).is_file(), f
    assert res.best_checkpoint.is_file() and res.last_checkpoint.is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert "val_iou_debris" in rows[0]
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == cfg.lr
    # the toy classes are separable per pixel: a few epochs must reach a useful model
    assert res.best_val_miou > 0.5
    ckpt = torch.load(res.best_checkpoint, weights_only=True)
    assert ckpt["bands"] == ["band0", "band1", "band2"] and len(ckpt["mean"]) == 3
    assert ckpt["metrics"]["val_miou"] == pytest.approx(res.best_val_miou)
    # temperature scaling fitted on the validation patches is stored with the best weights
    cal = ckpt["calibration"]
    assert cal["subset"] == "val" and cal["n_pixels"] > 0 and cal["temperature"] > 0
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    # a finished run is not retrained
    again = train(cube, tmp_path / "run", cfg, model_factory=Tiny, progress=False)
    assert len(again.history) == 4


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("every", [3, 0], ids=["mid-epoch-checkpoint", "epoch-checkpoint"])
def test_resume_after_interruption_is_bitwise_identical(cube, tmp_path, every):
    cfg = _cfg(checkpoint_every_steps=every)
    ref = train(cube, tmp_path / "ref", cfg, model_factory=Tiny, progress=False)

    def crash(step: int) -> None:
        if step == 7:
            raise _Crash("simulated crash")

    with pytest.raises(_Crash):
        train(cube, tmp_path / "b", cfg, model_factory=Tiny, progress=False, on_step=crash)
    res = train(cube, tmp_path / "b", cfg, model_factory=Tiny, progress=False)

    a = torch.load(ref.run_dir / "checkpoints/resume.pt", weights_only=True)
    b = torch.load(res.run_dir / "checkpoints/resume.pt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    sa, sb = a["train_state"]["optimizer"]["state"], b["train_state"]["optimizer"]["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(ref.history) == drop(res.history)


def test_resume_refuses_a_changed_config(cube, tmp_path):
    train(cube, tmp_path / "r", _cfg(epochs=1), model_factory=Tiny, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(cube, tmp_path / "r", _cfg(epochs=2, lr=0.5), model_factory=Tiny, progress=False)
    # more epochs is allowed (continue training)
    res = train(cube, tmp_path / "r", _cfg(epochs=2), model_factory=Tiny, progress=False)
    assert len(res.history) == 2


def test_epoch_repeats_and_runs_saved_before_the_option(cube, tmp_path):
    from cryonet.data import PatchSplit

    res = train(cube, tmp_path / "a", _cfg(epochs=1, epoch_repeats=3), model_factory=Tiny,
                progress=False)  # fmt: skip
    n_train = len(PatchSplit.from_json(tmp_path / "a" / "split.json").subset("train"))
    assert res.history[0]["step"] == (3 * n_train) // 4  # three passes, batches of 4
    one = train(cube, tmp_path / "b", _cfg(epochs=1), model_factory=Tiny, progress=False)
    assert one.history[0]["step"] == n_train // 4
    # a run saved before the option existed resumes with its default (1 pass) ...
    path = tmp_path / "b" / "checkpoints" / "resume.pt"
    state = torch.load(path, weights_only=True)
    del state["train_state"]["config"]["epoch_repeats"]
    torch.save(state, path)
    again = train(cube, tmp_path / "b", _cfg(epochs=2), model_factory=Tiny, progress=False)
    assert len(again.history) == 2
    # ... and refuses another value
    with pytest.raises(ValueError, match="epoch_repeats: 1 -> 2"):
        train(cube, tmp_path / "b", _cfg(epochs=3, epoch_repeats=2), model_factory=Tiny,
              progress=False)  # fmt: skip


def test_bundled_configs_and_overrides(tmp_path):
    paper = load_config("paper")
    assert (paper.lr, paper.weight_decay, paper.batch_size, paper.epochs) == (3e-4, 1e-4, 16, 100)
    assert (paper.patch_size, paper.test_fraction, paper.model) == (256, 0.2, "cryonet")
    assert paper.class_weighting == "inverse" and paper.encoder == "resnet101"
    # the dataclass defaults are the paper's recipe: paper.yaml differs only where written out
    # (the encoder, which is cryonet's default anyway) or machine-dependent (loader workers)
    defaults = TrainConfig()
    differ = {
        f.name for f in fields(TrainConfig) if getattr(paper, f.name) != getattr(defaults, f.name)
    }
    assert differ == {"encoder", "num_workers"}
    from cryonet.models.registry import resolve_config

    assert resolve_config(defaults.model, 3, 5, encoder=defaults.encoder)["encoder"] == "resnet101"
    cpu = load_config("cpu", epochs=2)
    assert cpu.epochs == 2 and cpu.device == "cpu" and cpu.model == "cryonet-tiny"
    assert cpu.model_options == {"full_resolution": 32} and cpu.epoch_repeats == 4
    assert load_config("cpu").epochs == 12  # what docs/demo.md and `cryonet demo --help` say
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: 0.1\nlearning_rate: 3\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="nosuchpreset"):
        load_config("nosuchpreset")


def test_preset_keeps_its_encoder():
    """TrainConfig(model='cryonet-tiny') is the preset's ResNet-18, not the paper's ResNet-101."""
    from cryonet.training import build_model

    model = build_model(TrainConfig(model="cryonet-tiny"), 3, 5)
    assert model.config["encoder"] == "resnet18"
    assert sum(p.numel() for p in model.parameters()) < 15e6  # ResNet-101 CryoNet: 47.7 M


def test_no_validation_patches_reports_no_miou(cube, tmp_path):
    res = train(cube, tmp_path / "nv", _cfg(epochs=2, val_fraction=0.0), model_factory=Tiny,
                progress=False)  # fmt: skip
    assert res.best_val_miou is None
    summary = json.loads((res.run_dir / "metrics.json").read_text())["summary"]
    assert summary["best_val_miou"] is None
    best = torch.load(res.best_checkpoint, weights_only=True)
    assert best["epoch"] == 2  # the last epoch is kept as "best"


def test_deep_supervision_loss_averages_every_head():
    from cryonet.engine import Trainer
    from cryonet.models import create_model

    torch.manual_seed(0)
    model = create_model("cryonet-tiny", 3, 5, deep_supervision=True)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with torch.no_grad():
        outs = model.forward_aux(x)
        expected = sum(float(loss_fn(o, y)) for o in outs) / len(outs)
    assert len(outs) == 4
    trainer = Trainer(model, loss_fn, torch.device("cpu"), lr=1e-2)
    heads = [h.weight.detach().clone() for h in model.aux_heads]
    assert trainer.step(x, y) == pytest.approx(expected, rel=1e-5)
    for before, head in zip(heads, model.aux_heads, strict=True):
        assert not torch.equal(before, head.weight)  # every auxiliary head was trained


_DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
sys.path.insert(0, {testdir!r})
from test_train import TinyAux, _cfg
from cryonet.training import train
models = []
def factory(c, k):
    models.append(TinyAux(c, k))
    return models[-1]
cfg = _cfg(epochs=2, batch_size=2, checkpoint_every_steps=2)
res = train({cube!r}, {out!r}, cfg, model_factory=factory, progress=False)
params = {{k: v.detach() for k, v in models[0].named_parameters()}}
torch.save(params, {out!r} + f"/rank{{dist.get_rank()}}.pt")
print("val", res.best_val_miou)
"""


@pytest.mark.distributed
def test_ddp_two_cpu_processes_gloo(cube, tmp_path):
    script = tmp_path / "ddp.py"
    out = tmp_path / "ddp"
    script.write_text(
        textwrap.dedent(
            _DDP_SCRIPT.format(testdir=str(Path(__file__).parent), cube=str(cube), out=str(out))
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*cmd, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:  # DDP keeps the replicas' parameters identical (BN buffers stay per rank)
        assert torch.equal(r0[k], r1[k]), k
    # the auxiliary head took part (DDP raises on parameters that get no gradient)
    assert "aux.weight" in r0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 and (out / "checkpoints/best.pt").is_file()


@pytest.mark.gpu
def test_amp_training_on_cuda(cube, tmp_path):
    cfg = _cfg(epochs=1, device="cuda", amp=True)
    res = train(cube, tmp_path / "gpu", cfg, model_factory=Tiny, progress=False)
    assert np.isfinite(res.history[-1]["train_loss"])
    ckpt = torch.load(res.best_checkpoint, weights_only=True)
    assert all(v.device.type == "cpu" for v in ckpt["state_dict"].values())
