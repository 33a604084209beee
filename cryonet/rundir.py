"""The run directory of :func:`cryonet.training.train`: split, logs, curves, resume checks.

Everything here reads or writes files of a run (``split.json``, ``metrics.csv/json``,
``curves.png``, atomic ``torch.save``); nothing trains.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cryonet.data import SPLIT_FILE, CubeSource, PatchSplit, make_split
from cryonet.train_config import TrainConfig
from glacierstack import storage

__all__ = [
    "atomic_save",
    "best_val_miou",
    "check_resume_config",
    "plot_curves",
    "prepare_split",
    "write_logs",
]


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: never a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        storage.publish(tmp, path)
    except BaseException:
        storage.discard(tmp)
        raise


def check_resume_config(saved: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    """Refuse to resume with a config that differs beyond run-time settings (``epochs``, ...)."""
    mine = config.to_dict()
    allowed = {
        "epochs", "num_workers", "device", "checkpoint_every_steps", "cache", "threads",
        "calibrate",
    }  # fmt: skip
    # an option added after the run was saved had its default value then
    old = TrainConfig().to_dict() | dict(saved)
    diff = sorted(k for k in mine if k not in allowed and old.get(k) != mine[k])
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {mine[k]!r}" for k in diff)
        raise ValueError(
            f"cannot resume {path}: the config differs in {details}; "
            "use a new run directory or resume=False"
        )


def plot_curves(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Plot training/validation loss and validation mIoU/accuracy per epoch."""
    from cryonet._plot import subplots

    ep = [h["epoch"] for h in history]
    fig, (a, b) = subplots(1, 2, figsize=(9, 3.4))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    a.plot(ep, [h["val_loss"] for h in history], label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("weighted cross-entropy")
    a.legend()
    b.plot(ep, [h["val_miou"] for h in history], label="val mIoU")
    b.plot(ep, [h["val_overall_accuracy"] for h in history], label="val overall accuracy")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_logs(run: Path, history: list[dict[str, Any]], summary: Mapping[str, Any]) -> None:
    """Write ``metrics.csv`` (one row per epoch) and ``metrics.json`` (+ summary), atomically."""
    if not history:
        return
    keys = list(history[0])
    tmp = run / "metrics.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    storage.publish(tmp, run / "metrics.csv")
    tmp = run / "metrics.json.tmp"
    tmp.write_text(json.dumps({"summary": dict(summary), "epochs": history}, indent=1))
    storage.publish(tmp, run / "metrics.json")


def prepare_split(
    run: Path,
    source: CubeSource,
    config: TrainConfig,
    split: PatchSplit | str | os.PathLike[str] | None,
    main: bool,
) -> PatchSplit:
    """Return the run's split: its ``split.json``, else the one given, else a new one."""
    path = run / SPLIT_FILE
    if path.exists():
        sp = PatchSplit.from_json(path)
    elif split is not None:
        sp = split if isinstance(split, PatchSplit) else PatchSplit.from_json(split)
    else:
        sp = make_split(source, config.split_config())
    sp.check_cube(source)
    if sp.patch_size != config.patch_size:
        raise ValueError(
            f"split {path} has {sp.patch_size}-px patches but the config asks for "
            f"{config.patch_size}"
        )
    if main and not path.exists():
        sp.to_json(path)
    return sp


def best_val_miou(history: Sequence[Mapping[str, Any]]) -> float | None:
    """Best finite validation mIoU of a run's epochs, ``None`` when none was measured."""
    values = [float(h["val_miou"]) for h in history if math.isfinite(float(h["val_miou"]))]
    return max(values) if values else None
