"""Training of a registered segmentation model on a glacierstack cube (the paper's recipe).

``train(cube, out, config)`` runs the whole protocol: cut and split the patches (or reuse the
split found in ``out``), compute class-frequency weights on the training patches, train with
Adam + weighted cross-entropy, validate every epoch, and write into the run directory::

    out/
      config.yaml          the TrainConfig used
      split.json           patch windows and their train/val/test assignment
      metrics.csv          one row per epoch (loss, val mIoU, OA, per-class IoU, lr, time)
      metrics.json         the same, plus the run summary (``best_val_miou``: null without
                           validation patches)
      curves.png           training curves
      checkpoints/resume.pt  resume state (model, optimizer, scheduler, AMP scaler, RNG,
                             position in the epoch), written at epoch ends and every
                             ``checkpoint_every_steps`` steps
      checkpoints/last.pt  the checkpoint of the last finished epoch (contract format)
      checkpoints/best.pt  the checkpoint with the best validation mIoU (contract format; the
                           last epoch's when there are no validation patches)

Resuming (the default when ``checkpoints/resume.pt`` exists) restores the model, optimizer,
scheduler, AMP scaler, the Python/NumPy/torch RNG states, the epoch and the position in the
epoch's sample order, so an interrupted run finishes with bitwise the same weights as an
uninterrupted one (on the same hardware and thread count). Under ``torchrun`` the model is
wrapped in ``DistributedDataParallel`` (NCCL on GPU, Gloo on CPU); ``batch_size`` is per
process. The optimisation step itself is :class:`cryonet.engine.Trainer`; the run's setup and
resume state are in :mod:`cryonet.trainsetup`, one epoch in :mod:`cryonet.trainepoch`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cryonet.checkpoint import load_checkpoint
from cryonet.data import PatchSplit
from cryonet.rundir import best_val_miou, plot_curves
from cryonet.train_config import TrainConfig, build_model, load_config
from cryonet.trainepoch import end_epoch, train_epoch
from cryonet.trainsetup import BEST, LAST, RESUME, Progress, setup_run
from cryonet.trainsetup import CONFIG_FILE as CONFIG_FILE
from glacierstack import storage

__all__ = [
    "TrainConfig",
    "TrainResult",
    "best_val_miou",
    "build_model",
    "load_config",
    "train",
]


def _calibrate_best(
    model: nn.Module, best_path: Path, val_loader: torch.utils.data.DataLoader, device: torch.device
) -> None:
    """Fit temperature scaling of the best weights on the validation patches; store it.

    A best checkpoint is rewritten without calibration whenever it improves, so one that has
    a ``calibration`` entry holds the temperature of its own weights and is left alone.
    """
    import copy

    from cryonet.calibration import calibrate_model, store_calibration

    ckpt = load_checkpoint(best_path, map_location=device)
    if "calibration" in ckpt:  # fitted for these weights already (a finished run re-run)
        return
    best = copy.deepcopy(model)
    best.load_state_dict(ckpt["state_dict"])
    store_calibration(best_path, calibrate_model(best, val_loader, device))


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path | str
    """The run directory (a URL string for a run on object storage)."""
    best_checkpoint: Path | str
    last_checkpoint: Path | str
    history: list[dict[str, Any]]
    best_val_miou: float | None
    """Best validation mIoU; ``None`` without validation patches (``best.pt`` is then the
    last epoch's checkpoint)."""


def train(
    cube: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    split: PatchSplit | str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    model_factory: Callable[[int, int], nn.Module] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a model on a cube (see the module docstring for the run directory).

    Parameters
    ----------
    cube
        Zarr cube path.
    out
        Run directory (created; reused for resuming): a path, or an fsspec URL
        (``s3://bucket/runs/a``), in which case the run is staged in a local temporary folder
        (downloaded first, so it resumes) and uploaded when training ends or fails.
    config
        Training options; default :class:`TrainConfig` (the paper's recipe).
    split
        A :class:`~cryonet.data.PatchSplit` or ``split.json`` to use instead of making one
        (e.g. to train several models on the identical split). A ``split.json`` already in
        ``out`` always wins.
    resume
        Continue from ``out/checkpoints/resume.pt`` when it exists.
    progress
        Show a tqdm progress bar (main process only).
    model_factory
        ``f(in_channels, num_classes) -> nn.Module`` used instead of the registry (the model
        config stored in checkpoints is then ``model.config`` if it has one).
    on_step
        Called with the global step after every optimizer step (e.g. for tests/monitoring;
        an exception raised here interrupts training like a crash would).

    Returns
    -------
    TrainResult
    """
    if storage.is_url(out):
        with storage.local_folder(out) as local:
            res = train(cube, local, config, split=split, resume=resume, progress=progress,
                        model_factory=model_factory, on_step=on_step)  # fmt: skip
        url = str(out).rstrip("/")
        return replace(res, run_dir=url, best_checkpoint=f"{url}/{BEST}",
                       last_checkpoint=f"{url}/{LAST}")  # fmt: skip
    config = config or TrainConfig()
    r = setup_run(cube, Path(out), config, split, model_factory)
    prog = Progress()
    if resume and (r.dir / RESUME).exists():
        prog = r.load_resume(r.dir / RESUME)
    for epoch in range(prog.epoch, config.epochs):
        t0 = time.perf_counter()
        train_loss = train_epoch(r, prog, epoch, progress, on_step)
        end_epoch(r, prog, epoch, train_loss, time.perf_counter() - t0, progress)
    if r.dist.main and prog.history:
        plot_curves(prog.history, r.dir / "curves.png")
    if r.dist.main and config.calibrate and len(r.val_ds) and (r.dir / BEST).exists():
        _calibrate_best(r.model, r.dir / BEST, r.val_loader, r.device)
    if r.dist.active:
        torch.distributed.barrier()
    return TrainResult(
        run_dir=r.dir,
        best_checkpoint=r.dir / BEST,
        last_checkpoint=r.dir / LAST,
        history=prog.history,
        best_val_miou=best_val_miou(prog.history),
    )
