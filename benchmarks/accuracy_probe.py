"""What limits a CNN's accuracy on a cube? Cheap, controlled training probes.

Usage::

    python benchmarks/accuracy_probe.py CUBE SPLIT_JSON --model MODEL [--steps N]
        [--weights inverse|sqrt_inverse|none] [--opts JSON] [--eval-every N]

Trains one model on the split's training patches (held in memory, normalised with the cube's
statistics like ``cryonet train``; random flips/rotations; Adam, one-cycle learning rate,
gradient clipping at 1, batches of 16, one torch thread) for a fixed number of optimizer steps
and prints the test IoU per class, the test mIoU and the **process CPU time** (user + system,
``resource.getrusage``), which unlike wall time does not depend on how busy a shared machine is.

``MODEL`` is a registry name or preset (``unet-tiny``, with ``--opts '{"full_resolution": 32}'``
for options) or one of two probes that never down-sample:

* ``pixel-mlp``: a per-pixel classifier (1x1 convolutions 30 -> 128 -> 128 -> 5 with BN/ReLU);
* ``fullres-cnn``: two 3x3 and one 1x1 conv-BN-ReLU of 64 channels, then a 1x1 head
  (a 5x5 receptive field).

If the probes beat the registry models at equal CPU time, the models lose per-pixel
information (down-sampling), not the data. Not part of the library; see docs/training.md.
"""

from __future__ import annotations

import argparse
import json
import resource

import numpy as np
import torch
from torch import nn

from cryonet.data import CubeSource, PatchSplit, class_weights
from cryonet.models import create_model

NAMES = ("background", "clean_ice", "debris", "water", "vegetation")


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def probe_model(name: str, c: int, k: int, opts: dict) -> nn.Module:
    """A registry model or one of the two non-down-sampling probes."""

    def cbr(i: int, o: int, ks: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, ks, padding=ks // 2), nn.BatchNorm2d(o), nn.ReLU()]

    if name == "pixel-mlp":
        return nn.Sequential(*cbr(c, 128, 1), *cbr(128, 128, 1), nn.Conv2d(128, k, 1))
    if name == "fullres-cnn":
        return nn.Sequential(*cbr(c, 64, 3), *cbr(64, 64, 3), *cbr(64, 64, 1), nn.Conv2d(64, k, 1))
    return create_model(name, c, k, **opts)


def patches(source: CubeSource, split: PatchSplit, subset: str) -> tuple[torch.Tensor, ...]:
    """Normalised features (NaN -> 0) and labels of a subset's windows."""
    p = split.patch_size
    std = np.where(source.std > 0, source.std, 1.0)[:, None, None]
    xs, ys = [], []
    for y0, x0 in split.subset(subset):
        raw = source.read_features(int(y0), int(x0), p)
        xs.append(np.nan_to_num((raw - source.mean[:, None, None]) / std, nan=0.0))
        ys.append(source.read_labels(int(y0), int(x0), p))
    x = torch.from_numpy(np.stack(xs).astype(np.float32))
    return x, torch.from_numpy(np.stack(ys).astype(np.int64))


def test_iou(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> np.ndarray:
    """IoU per class of the arg-max over the patches (label 255 ignored)."""
    model.eval()
    cm = np.zeros((k, k), np.int64)
    with torch.no_grad():
        for i in range(0, len(x), 16):
            pred = model(x[i : i + 16]).argmax(1).numpy()
            ref = y[i : i + 16].numpy()
            ok = ref != 255
            cm += np.bincount(ref[ok] * k + pred[ok], minlength=k * k).reshape(k, k)
    model.train()
    tp = np.diag(cm)
    return tp / np.maximum(cm.sum(0) + cm.sum(1) - tp, 1)


def main() -> None:
    """Parse the arguments, train, print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cube")
    ap.add_argument("split")
    ap.add_argument("--model", default="fullres-cnn")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weights", default="inverse", choices=["inverse", "sqrt_inverse", "none"])
    ap.add_argument("--opts", default="{}", help="model options as JSON")
    ap.add_argument("--eval-every", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    source = CubeSource(a.cube, cache="memory")
    split = PatchSplit.from_json(a.split)
    xtr, ytr = patches(source, split, "train")
    xte, yte = patches(source, split, "test")
    k = len(NAMES)
    counts = np.bincount(ytr[ytr != 255].numpy(), minlength=k)
    w = torch.as_tensor(class_weights(counts, a.weights), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=w, ignore_index=255)
    model = probe_model(a.model, xtr.shape[1], k, json.loads(a.opts)).train()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps)
    c0 = cpu_seconds()
    for step in range(a.steps):
        idx = torch.as_tensor(rng.integers(0, len(xtr), 16))
        code = int(rng.integers(0, 8))
        xb, yb = xtr[idx], ytr[idx]
        if code >= 4:
            xb, yb = xb.flip(-1), yb.flip(-1)
        xb, yb = torch.rot90(xb, code % 4, (-2, -1)), torch.rot90(yb, code % 4, (-2, -1))
        loss = loss_fn(model(xb.contiguous()), yb.contiguous())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if a.eval_every and (step + 1) % a.eval_every == 0:
            miou = 100 * test_iou(model, xte, yte, k).mean()
            print(f"step {step + 1}: test mIoU {miou:.2f} %, CPU {cpu_seconds() - c0:.0f} s")
    cpu = cpu_seconds() - c0
    iou = test_iou(model, xte, yte, k)
    print(json.dumps({
        "model": a.model, "opts": json.loads(a.opts), "steps": a.steps, "weights": a.weights,
        "test_iou": {n: round(100 * v, 2) for n, v in zip(NAMES, iou, strict=True)},
        "test_miou": round(100 * float(iou.mean()), 2), "cpu_s": round(cpu),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
