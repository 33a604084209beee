"""Training, the run's fixed state: files, datasets, model, trainer and the resume state.

:func:`setup_run` builds a :class:`Run` (device, process group, split, datasets, model,
:class:`~cryonet.engine.Trainer`); :class:`Progress` is where a run stands, what
``checkpoints/resume.pt`` stores besides model and optimizer (:meth:`Run.save_resume`,
:meth:`Run.load_resume`).

Split out of :mod:`cryonet.training`, which runs it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from cryonet.checkpoint import save_checkpoint
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
    get_rng_state,
    init_distributed,
    resolve_device,
    seed_everything,
    set_rng_state,
)
from cryonet.rundir import atomic_save, check_resume_config, prepare_split
from cryonet.train_config import TrainConfig, build_model
from glacierstack.classes import CLASS_NAMES, NODATA_LABEL
from glacierstack.provenance import location_ref

__all__ = [
    "BEST",
    "CONFIG_FILE",
    "LAST",
    "Progress",
    "RESUME",
    "Run",
    "cube_class_names",
    "make_loader",
    "setup_run",
]

CONFIG_FILE = "config.yaml"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
RESUME = "checkpoints/resume.pt"


# ----------------------------------------------------------------------------- model, files
def make_loader(
    dataset: PatchDataset,
    sampler: PatchSampler,
    config: TrainConfig,
    device: torch.device,
    *,
    drop_last: bool,
    seed: int,
) -> torch.utils.data.DataLoader:
    """Return the run's DataLoader over ``dataset`` in ``sampler`` order."""
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


@dataclass
class Progress:
    """Where a run stands: what the resume file stores besides model and optimizer."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_score: float = -math.inf
    """Selection score of ``best.pt``: the val mIoU, or the epoch without validation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    running: list[float] = field(default_factory=lambda: [0.0, 0])


@dataclass(frozen=True)
class Run:
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
        """Save the model as ``RUN/name`` (e.g. ``checkpoints/best.pt``) with its metadata."""
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
        self, prog: Progress, epoch: int, step: int, metrics: Mapping[str, Any]
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

    def load_resume(self, path: Path) -> Progress:
        """Restore model, trainer and RNG states from ``path``; return the run's progress."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        ts = state["train_state"]
        check_resume_config(ts["config"], self.config, path)
        self.model.load_state_dict(state["state_dict"])
        self.trainer.load_state_dict(ts)
        prog = Progress(
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


def setup_run(
    cube: str | os.PathLike[str],
    run: Path,
    config: TrainConfig,
    split: PatchSplit | str | os.PathLike[str] | None,
    model_factory: Callable[[int, int], nn.Module] | None,
) -> Run:
    """Device, process group, split, datasets, model and trainer of a run."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    dist = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    source = CubeSource(cube, cache=config.cache)
    sp = prepare_split(run, source, config, split, main=False)
    n_cls = len(cube_class_names(source))  # the cube's class scheme (five classes by default)
    counts = class_counts(source, sp.subset("train"), sp.patch_size, n_cls)
    weights = torch.as_tensor(class_weights(counts, config.class_weighting), device=device)
    seed_everything(config.seed)
    factory = model_factory or (lambda c, k: build_model(config, c, k))
    model = factory(source.n_bands, n_cls).to(device)

    train_ds = PatchDataset(source, sp.subset("train"), sp.patch_size)
    sampler = PatchSampler(
        len(train_ds), shuffle=True, augment=config.augment, seed=config.seed,
        rank=dist.rank, world_size=dist.world_size, repeats=config.epoch_repeats,
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
    val_loader = make_loader(val_ds, val_sampler, config, device, drop_last=False, seed=config.seed)
    return Run(
        run, str(cube), config, source, model, trainer, train_ds, sampler, val_ds, val_loader,
        steps_per_epoch, device, dist,
    )  # fmt: skip


def cube_class_names(source: CubeSource) -> tuple[str, ...]:
    """Class names of the cube's class scheme (the five CryoNet classes for older cubes)."""
    return tuple(str(c["name"]) for c in source.classes) or CLASS_NAMES
