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
process. The optimisation step itself is :class:`cryonet.engine.Trainer`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from cryonet.checkpoint import load_checkpoint, save_checkpoint
from cryonet.data import (
    SPLIT_FILE,
    CubeSource,
    PatchDataset,
    PatchSampler,
    PatchSplit,
    batch_loader,
    class_counts,
    class_weights,
)
from cryonet.engine import (
    Dist,
    Trainer,
    evaluate_loader,
    get_rng_state,
    init_distributed,
    resolve_device,
    seed_everything,
    set_rng_state,
)
from cryonet.rundir import (
    atomic_save,
    best_val_miou,
    check_resume_config,
    plot_curves,
    prepare_split,
    write_logs,
)
from cryonet.train_config import TrainConfig, build_model, load_config
from glacierstack import storage
from glacierstack.classes import CLASS_NAMES, NODATA_LABEL
from glacierstack.provenance import location_ref

__all__ = [
    "TrainConfig",
    "TrainResult",
    "best_val_miou",
    "build_model",
    "load_config",
    "train",
]

CONFIG_FILE = "config.yaml"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
RESUME = "checkpoints/resume.pt"


# ----------------------------------------------------------------------------- model, files
def _loader(
    dataset: PatchDataset,
    sampler: PatchSampler,
    config: TrainConfig,
    device: torch.device,
    *,
    drop_last: bool,
    seed: int,
) -> torch.utils.data.DataLoader:
    return batch_loader(
        dataset,
        sampler,
        config.batch_size,
        num_workers=config.num_workers,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        # own generator: creating the iterator must not consume the global torch RNG
        generator=torch.Generator().manual_seed(seed),
    )


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


@dataclass
class _Progress:
    """Where a run stands: what the resume file stores besides model and optimizer."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_score: float = -math.inf
    """Selection score of ``best.pt``: the val mIoU, or the epoch without validation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    running: list[float] = field(default_factory=lambda: [0.0, 0])


@dataclass(frozen=True)
class _Run:
    """Everything an epoch needs, fixed for the whole run."""

    dir: Path
    cube: str
    config: TrainConfig
    source: CubeSource
    model: nn.Module
    trainer: Trainer
    train_ds: PatchDataset
    sampler: PatchSampler
    val_ds: PatchDataset
    val_loader: torch.utils.data.DataLoader
    steps_per_epoch: int
    device: torch.device
    dist: Dist

    def checkpoint(self, name: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        # constant bands (std 0) are divided by 1 by PatchDataset; store what the model saw
        std_used = np.where(self.source.std > 0, self.source.std, 1.0)
        save_checkpoint(
            self.dir / name, self.model, bands=self.source.bands, mean=self.source.mean,
            std=std_used, epoch=epoch, metrics=metrics, classes=self.source.classes or None,
            extra={"config": self.config.to_dict(), "cube": location_ref(self.cube),
                   "class_scheme": self.source.attrs.get("class_scheme", {"name": "cryonet5"}),
                   "sensor": self.source.attrs.get("sensor", "")},
        )  # fmt: skip

    def save_resume(
        self, prog: _Progress, epoch: int, step: int, metrics: Mapping[str, Any]
    ) -> None:
        """Resume file (model + training state) and, at epoch ends, the last checkpoint.

        Collective under torchrun: every rank calls it (the RNG states are gathered).
        """
        rng: Any = get_rng_state()
        if self.dist.active:
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        if not self.dist.main:
            return
        state = {
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "train_state": {
                "config": self.config.to_dict(),
                **self.trainer.state_dict(),
                "rng": rng,
                "epoch": epoch,
                "step": step,
                "global_step": prog.global_step,
                "best_score": prog.best_score,
                "history": prog.history,
                "running": list(prog.running),
            },
        }
        atomic_save(state, self.dir / RESUME)
        if step == 0:
            self.checkpoint(LAST, epoch, metrics)

    def load_resume(self, path: Path) -> _Progress:
        """Restore model, trainer and RNG states from ``path``; return the run's progress."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        ts = state["train_state"]
        check_resume_config(ts["config"], self.config, path)
        self.model.load_state_dict(state["state_dict"])
        self.trainer.load_state_dict(ts)
        prog = _Progress(
            epoch=int(ts["epoch"]),
            step=int(ts["step"]),
            global_step=int(ts["global_step"]),
            best_score=float(ts["best_score"]),
            history=list(ts["history"]),
            running=[float(ts["running"][0]), int(ts["running"][1])],
        )
        rng = ts["rng"]
        set_rng_state(rng[self.dist.rank] if isinstance(rng, list) else rng)
        return prog


def _setup(
    cube: str | os.PathLike[str],
    run: Path,
    config: TrainConfig,
    split: PatchSplit | str | os.PathLike[str] | None,
    model_factory: Callable[[int, int], nn.Module] | None,
) -> _Run:
    """Device, process group, split, datasets, model and trainer of a run."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    dist = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    source = CubeSource(cube, cache=config.cache)
    sp = prepare_split(run, source, config, split, main=False)
    n_cls = len(_class_names(source))  # the cube's class scheme (five classes by default)
    counts = class_counts(source, sp.subset("train"), sp.patch_size, n_cls)
    weights = torch.as_tensor(class_weights(counts, config.class_weighting), device=device)
    seed_everything(config.seed)
    factory = model_factory or (lambda c, k: build_model(config, c, k))
    model = factory(source.n_bands, n_cls).to(device)

    train_ds = PatchDataset(source, sp.subset("train"), sp.patch_size)
    sampler = PatchSampler(
        len(train_ds), shuffle=True, augment=config.augment, seed=config.seed,
        rank=dist.rank, world_size=dist.world_size,
    )  # fmt: skip
    full_steps = len(sampler) // config.batch_size
    if full_steps == 0:
        raise ValueError(
            f"{len(train_ds)} training patches over {dist.world_size} process(es) do not fill "
            f"one batch of {config.batch_size}; lower batch_size or patch_size"
        )
    # the run folder is written only now that the inputs are known to fit (no debris)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        (run / CONFIG_FILE).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        sp_path = run / SPLIT_FILE
        if not sp_path.exists():
            sp.to_json(sp_path)
    if dist.active:
        torch.distributed.barrier()
    steps_per_epoch = min(full_steps, config.steps_per_epoch or full_steps)
    trainer = Trainer(
        model, nn.CrossEntropyLoss(weight=weights, ignore_index=NODATA_LABEL), device,
        lr=config.lr, weight_decay=config.weight_decay, schedule=config.scheduler,
        total_steps=steps_per_epoch * config.epochs, amp=config.amp, grad_clip=config.grad_clip,
        distributed=dist.active,
    )  # fmt: skip
    val_ds = PatchDataset(source, sp.subset("val"), sp.patch_size)
    val_sampler = PatchSampler(
        len(val_ds), shuffle=False, rank=dist.rank, world_size=dist.world_size, equal_shards=False
    )
    val_loader = _loader(val_ds, val_sampler, config, device, drop_last=False, seed=config.seed)
    return _Run(
        run, str(cube), config, source, model, trainer, train_ds, sampler, val_ds, val_loader,
        steps_per_epoch, device, dist,
    )  # fmt: skip


def _train_epoch(
    r: _Run,
    prog: _Progress,
    epoch: int,
    progress: bool,
    on_step: Callable[[int], None] | None,
) -> float:
    """Run the (rest of the) epoch's optimizer steps; return the mean training loss."""
    from tqdm.auto import tqdm

    cfg = r.config
    skip = prog.step if epoch == prog.epoch else 0
    r.sampler.set_epoch(epoch)
    r.sampler.set_start(skip * cfg.batch_size)
    if skip == 0:
        prog.running = [0.0, 0]
    loader = _loader(
        r.train_ds, r.sampler, cfg, r.device, drop_last=True, seed=cfg.seed * 100003 + epoch
    )
    r.trainer.train_mode()
    bar = tqdm(
        total=r.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False, dynamic_ncols=True, disable=not (progress and r.dist.main),
    )  # fmt: skip
    step = skip
    with bar:
        for x, y in loader:
            if step >= r.steps_per_epoch:
                break
            loss = r.trainer.step(x, y)
            step += 1
            prog.global_step += 1
            prog.running[0] += loss
            prog.running[1] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{prog.running[0] / prog.running[1]:.4f}")
            if on_step is not None:
                on_step(prog.global_step)
            every = cfg.checkpoint_every_steps
            if every and prog.global_step % every == 0 and step < r.steps_per_epoch:
                r.save_resume(prog, epoch, step, {})
    train_loss = prog.running[0] / max(prog.running[1], 1)
    if r.dist.active:
        t = torch.tensor([train_loss], dtype=torch.float64, device=r.device)
        torch.distributed.all_reduce(t)
        train_loss = float(t) / r.dist.world_size
    return train_loss


def _class_names(source: CubeSource) -> tuple[str, ...]:
    """Class names of the cube's class scheme (the five CryoNet classes for older cubes)."""
    return tuple(str(c["name"]) for c in source.classes) or CLASS_NAMES


def _validate(r: _Run) -> dict[str, float]:
    """Compute validation loss, mIoU, overall accuracy and per-class IoU (NaN without patches)."""
    names = _class_names(r.source)
    if not len(r.val_ds):
        nan = float("nan")
        return {"val_loss": nan, "val_miou": nan, "val_overall_accuracy": nan} | {
            f"val_iou_{k}": nan for k in names
        }
    m, loss = evaluate_loader(
        r.model, r.val_loader, r.device, loss_fn=r.trainer.loss_fn, amp=r.config.amp,
        num_classes=len(names), class_names=names,
    )  # fmt: skip
    ious = dict(zip(names, m.iou.tolist(), strict=True))
    return {"val_loss": loss, "val_miou": m.miou, "val_overall_accuracy": m.overall_accuracy} | {
        f"val_iou_{k}": v for k, v in ious.items()
    }


def _end_epoch(
    r: _Run, prog: _Progress, epoch: int, train_loss: float, seconds: float, progress: bool
) -> None:
    """Log the epoch, keep the best checkpoint, write the resume state and the logs."""
    from tqdm.auto import tqdm

    val = _validate(r)
    row = {
        "epoch": epoch + 1,
        "step": prog.global_step,
        "train_loss": train_loss,
        **val,
        "lr": r.trainer.lr,
        "seconds": seconds,
    }
    prog.history.append(row)
    miou = val["val_miou"]
    if progress and r.dist.main:
        tqdm.write(
            f"epoch {epoch + 1}/{r.config.epochs}: loss {train_loss:.4f}  "
            f"val loss {val['val_loss']:.4f}  val mIoU {miou:.4f}  "
            f"val OA {val['val_overall_accuracy']:.4f}"
        )
    # without validation patches the latest epoch is kept as "best"
    score = miou if not math.isnan(miou) else float(epoch)
    improved = score > prog.best_score
    if improved:
        prog.best_score = score
    metrics = {k: v for k, v in row.items() if not isinstance(v, float) or math.isfinite(v)}
    if improved and r.dist.main:
        r.checkpoint(BEST, epoch + 1, {**metrics, "selected_by": "val_miou"})
    r.save_resume(prog, epoch + 1, 0, metrics)
    if r.dist.main:
        summary = {"best_val_miou": best_val_miou(prog.history), "cube": location_ref(r.cube)}
        write_logs(r.dir, prog.history, summary)


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
    r = _setup(cube, Path(out), config, split, model_factory)
    prog = _Progress()
    if resume and (r.dir / RESUME).exists():
        prog = r.load_resume(r.dir / RESUME)
    for epoch in range(prog.epoch, config.epochs):
        t0 = time.perf_counter()
        train_loss = _train_epoch(r, prog, epoch, progress, on_step)
        _end_epoch(r, prog, epoch, train_loss, time.perf_counter() - t0, progress)
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
