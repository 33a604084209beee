"""Training of a registered segmentation model on a glacierstack cube (the paper's recipe).

``train(cube, out, config)`` runs the whole protocol: cut and split the patches (or reuse the
split found in ``out``), compute class-frequency weights on the training patches, train with
Adam + weighted cross-entropy, validate every epoch, and write into the run directory::

    out/
      config.yaml          the TrainConfig used
      split.json           patch windows and their train/val/test assignment
      metrics.csv          one row per epoch (loss, val mIoU, OA, per-class IoU, lr, time)
      metrics.json         the same, plus the run summary
      curves.png           training curves
      checkpoints/last.pt  resume state (model, optimizer, scheduler, AMP scaler, RNG, position)
      checkpoints/best.pt  the checkpoint with the best validation mIoU (contract format)

Resuming (the default when ``checkpoints/last.pt`` exists) restores the model, optimizer,
scheduler, AMP scaler, the Python/NumPy/torch RNG states, the epoch and the position in the
epoch's sample order, so an interrupted run finishes with bitwise the same weights as an
uninterrupted one (on the same hardware and thread count). Under ``torchrun`` the model is
wrapped in ``DistributedDataParallel`` (NCCL on GPU, Gloo on CPU); ``batch_size`` is per
process.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

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
    SplitConfig,
    batch_loader,
    class_counts,
    class_weights,
    make_split,
)
from cryonet.metrics import ConfusionMatrix, SegmentationMetrics
from glacierstack.classes import CLASS_NAMES, NODATA_LABEL, NUM_CLASSES

__all__ = [
    "TrainConfig",
    "TrainResult",
    "build_model",
    "evaluate_loader",
    "load_config",
    "train",
]

CONFIG_FILE = "config.yaml"
LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"
RESUME = "checkpoints/resume.pt"


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (defaults: the paper's recipe)."""

    model: str = "cryonet"
    """Architecture or preset name of :mod:`cryonet.models` (e.g. ``cryonet``, ``cryonet-tiny``)."""
    encoder: str | None = "resnet101"
    """Encoder name; ``None``: the model's/preset's default."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword options of the architecture (e.g. ``decoder_channels``)."""
    patch_size: int = 256
    """Patch edge in pixels."""
    overlap: int = 0
    """Pixels shared by neighbouring patch windows."""
    split: Literal["random", "blocked"] = "random"
    """Random patch split (paper) or spatially blocked split."""
    block_size: int = 1024
    """Block edge (pixels) of the blocked split."""
    test_fraction: float = 0.2
    """Share of patches in the test set (paper: 0.2)."""
    val_fraction: float = 0.1
    """Share of patches, taken from the training 80 %, used to select the best checkpoint."""
    min_valid_fraction: float = 0.05
    """Patches with fewer labelled pixels are dropped."""
    epochs: int = 100
    """Number of epochs."""
    batch_size: int = 16
    """Patches per optimizer step (per process under torchrun)."""
    lr: float = 3e-4
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """Adam weight decay (L2)."""
    scheduler: Literal["constant", "cosine", "onecycle"] = "constant"
    """Learning-rate schedule, stepped per optimizer step (paper: constant)."""
    class_weighting: Literal["inverse", "sqrt_inverse", "median", "none"] = "inverse"
    """Class-frequency weights of the cross-entropy, from the training patches."""
    augment: bool = False
    """Random flips / 90-degree rotations of training patches."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value."""
    amp: bool = True
    """Mixed precision (bfloat16, or float16 with loss scaling) on CUDA; ignored on CPU."""
    steps_per_epoch: int | None = None
    """Cap the optimizer steps per epoch (``None``: one pass over the training patches)."""
    num_workers: int = 2
    """DataLoader worker processes."""
    cache: Literal["auto", "memory", "zarr"] = "auto"
    """How patches are read, see :class:`cryonet.data.CubeSource`."""
    checkpoint_every_steps: int = 0
    """Also write the resume state every N optimizer steps (0: only at epoch ends)."""
    seed: int = 0
    """Seed of the split, the sample order, augmentation and the model initialisation."""
    device: str = "auto"
    """``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    threads: int | None = None
    """torch intra-op CPU threads (``None``: torch's default, one per core)."""
    calibrate: bool = True
    """Fit temperature scaling on the validation patches at the end and store it in the best
    checkpoint (:func:`cryonet.calibration.calibrate_checkpoint`)."""

    def __post_init__(self) -> None:
        """Refuse values that cannot work, naming the option (before any work or output)."""
        at_least = {
            "patch_size": (self.patch_size, 8),
            "epochs": (self.epochs, 1),
            "batch_size": (self.batch_size, 1),
            "block_size": (self.block_size, 1),
            "num_workers": (self.num_workers, 0),
            "checkpoint_every_steps": (self.checkpoint_every_steps, 0),
            "overlap": (self.overlap, 0),
        }
        if self.threads is not None:
            at_least["threads"] = (self.threads, 1)
        if self.steps_per_epoch is not None:
            at_least["steps_per_epoch"] = (self.steps_per_epoch, 1)
        for name, (value, lo) in at_least.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(
                    f"training option {name} must be an integer >= {lo}, got {value!r}"
                )
        if self.overlap >= self.patch_size:
            raise ValueError(
                f"training option overlap must be < patch_size={self.patch_size}, got "
                f"{self.overlap}"
            )
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"training option lr must be a positive number, got {self.lr!r}")
        for name in ("test_fraction", "val_fraction", "min_valid_fraction"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < 1):
                raise ValueError(f"training option {name} must be in [0, 1), got {value!r}")
        choices = {
            "split": ("random", "blocked"),
            "scheduler": ("constant", "cosine", "onecycle"),
            "class_weighting": ("inverse", "sqrt_inverse", "median", "none"),
            "cache": ("auto", "memory", "zarr"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"training option {name} must be one of {list(allowed)}, got "
                    f"{getattr(self, name)!r}"
                )

    def split_config(self) -> SplitConfig:
        """Return the :class:`cryonet.data.SplitConfig` part of this config."""
        return SplitConfig(
            patch_size=self.patch_size,
            overlap=self.overlap,
            test_fraction=self.test_fraction,
            val_fraction=self.val_fraction,
            method=self.split,
            block_size=self.block_size,
            min_valid_fraction=self.min_valid_fraction,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON/checkpoint friendly)."""
        return json.loads(json.dumps(asdict(self)))


def load_config(source: str | os.PathLike[str] | None = None, **overrides: Any) -> TrainConfig:
    """Read a :class:`TrainConfig` from YAML (``yaml.safe_load``) and apply overrides.

    Parameters
    ----------
    source
        A YAML file, or the name of a bundled preset (``"paper"``, ``"cpu"``); ``None``: the
        dataclass defaults (= ``paper``).
    **overrides
        Field values replacing the file's (``None`` values are ignored).

    Raises
    ------
    ValueError
        For unknown keys, naming them and the file.
    """
    data: dict[str, Any] = {}
    where = "defaults"
    if source is not None:
        path = Path(source)
        if not path.exists() and not str(source).endswith((".yaml", ".yml")):
            text = resources.files("cryonet").joinpath("configs", f"{source}.yaml")
            if not text.is_file():
                raise FileNotFoundError(
                    f"config {source!r} is neither a file nor a bundled preset (paper, cpu)"
                )
            where = f"preset {source}"
            data = _read_yaml(text.read_text(), where)
        else:
            where = str(path)
            if not path.is_file():
                raise FileNotFoundError(f"config file {path} does not exist")
            data = _read_yaml(path.read_text(), where)
        if not isinstance(data, dict):
            raise ValueError(f"config {where} must be a mapping, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown} in {where}; known: {sorted(names)}")
    return TrainConfig(**data)


def _read_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:  # also refuses !!python tags (safe_load)
        detail = " ".join(str(err).split())
        raise ValueError(f"config {where} is not valid YAML: {detail}") from err


# ----------------------------------------------------------------------------- small helpers
@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(key, dtype=np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_model(config: TrainConfig, in_channels: int, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Create the configured model from the :mod:`cryonet.models` registry."""
    from cryonet.models import create_model

    return create_model(
        config.model, in_channels, num_classes, encoder=config.encoder, **config.model_options
    )


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- evaluation
def _autocast(device: torch.device, enabled: bool) -> Any:
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def evaluate_loader(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    *,
    num_classes: int = NUM_CLASSES,
    loss_fn: nn.Module | None = None,
    amp: bool = False,
    class_names: Sequence[str] = CLASS_NAMES,
    target_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[SegmentationMetrics, float]:
    """Accumulate the confusion matrix (and mean loss) of ``model`` over ``loader``.

    Under an initialised process group the matrix and loss are summed over all processes.
    ``target_hook(batch_index, labels)`` may rewrite the labels of a batch before counting
    (e.g. set already counted pixels to 255).

    Returns
    -------
    (SegmentationMetrics, float)
        Metrics and the mean loss per batch (NaN without ``loss_fn``).
    """
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for b, (x, y) in enumerate(loader):
        if target_hook is not None:
            y = target_hook(b, y)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        if loss_fn is not None and bool((y != NODATA_LABEL).any()):
            loss_sum[0] += float(loss_fn(logits.float(), y))
            loss_sum[1] += 1
        cm.update(logits, y)
    cm.all_reduce()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(loss_sum)
    model.train(was_training)
    mean_loss = float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else float("nan")
    return cm.compute(class_names), mean_loss


def _calibrate_best(
    model: nn.Module, best_path: Path, val_loader: torch.utils.data.DataLoader, device: torch.device
) -> None:
    """Fit temperature scaling of the best weights on the validation patches; store it."""
    import copy

    from cryonet.calibration import calibrate_model, store_calibration

    best = copy.deepcopy(model)
    best.load_state_dict(load_checkpoint(best_path, map_location=device)["state_dict"])
    store_calibration(best_path, calibrate_model(best, val_loader, device))


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]]
    best_val_miou: float


def _loader(
    dataset: PatchDataset,
    sampler: PatchSampler,
    batch_size: int,
    num_workers: int,
    *,
    drop_last: bool,
    seed: int,
    device: torch.device,
) -> torch.utils.data.DataLoader:
    return batch_loader(
        dataset,
        sampler,
        batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=device.type == "cuda",
        # own generator: creating the iterator must not consume the global torch RNG
        generator=torch.Generator().manual_seed(seed),
    )


def _check_resume_config(saved: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    mine = config.to_dict()
    allowed = {
        "epochs", "num_workers", "device", "checkpoint_every_steps", "cache", "threads",
        "calibrate",
    }  # fmt: skip
    diff = sorted(k for k in mine if k not in allowed and saved.get(k) != mine[k])
    if diff:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in diff)
        raise ValueError(
            f"cannot resume {path}: the config differs in {details}; "
            "use a new run directory or resume=False"
        )


def _plot_curves(history: Sequence[Mapping[str, Any]], path: Path) -> None:
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


def _write_logs(run: Path, history: list[dict[str, Any]], summary: Mapping[str, Any]) -> None:
    if not history:
        return
    keys = list(history[0])
    tmp = run / "metrics.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, run / "metrics.csv")
    tmp = run / "metrics.json.tmp"
    tmp.write_text(json.dumps({"summary": dict(summary), "epochs": history}, indent=1))
    os.replace(tmp, run / "metrics.json")


def _prepare_split(
    run: Path,
    source: CubeSource,
    config: TrainConfig,
    split: PatchSplit | str | os.PathLike[str] | None,
    main: bool,
) -> PatchSplit:
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
        Run directory (created; reused for resuming).
    config
        Training options; default :class:`TrainConfig` (the paper's recipe).
    split
        A :class:`~cryonet.data.PatchSplit` or ``split.json`` to use instead of making one
        (e.g. to train several models on the identical split). A ``split.json`` already in
        ``out`` always wins.
    resume
        Continue from ``out/checkpoints/last.pt`` when it exists.
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
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    run = Path(out)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = _resolve_device(config.device)
    dist = _init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    source = CubeSource(cube, cache=config.cache)
    sp = _prepare_split(run, source, config, split, main=False)
    in_ch, n_cls = source.n_bands, NUM_CLASSES
    counts = class_counts(source, sp.subset("train"), sp.patch_size, n_cls)
    weights = torch.as_tensor(class_weights(counts, config.class_weighting), device=device)

    seed_everything(config.seed)
    model = (model_factory or (lambda c, k: build_model(config, c, k)))(in_ch, n_cls).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    train_ds = PatchDataset(source, sp.subset("train"), sp.patch_size)
    sampler = PatchSampler(
        len(train_ds),
        shuffle=True,
        augment=config.augment,
        seed=config.seed,
        rank=dist.rank,
        world_size=dist.world_size,
    )
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
        if not (run / SPLIT_FILE).exists():
            sp.to_json(run / SPLIT_FILE)
    if dist.active:
        torch.distributed.barrier()
    steps_per_epoch = min(full_steps, config.steps_per_epoch or full_steps)
    total_steps = steps_per_epoch * config.epochs
    if config.scheduler == "constant":
        scheduler: Any = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    elif config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif config.scheduler == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps
        )
    else:
        raise ValueError(f"unknown scheduler {config.scheduler!r}; use constant, cosine, onecycle")
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    loss_fn = nn.CrossEntropyLoss(weight=weights, ignore_index=NODATA_LABEL)

    val_ds = PatchDataset(source, sp.subset("val"), sp.patch_size)
    val_sampler = PatchSampler(
        len(val_ds), shuffle=False, rank=dist.rank, world_size=dist.world_size, equal_shards=False
    )
    val_loader = _loader(
        val_ds, val_sampler, config.batch_size, config.num_workers,
        drop_last=False, seed=config.seed, device=device,
    )  # fmt: skip

    # ---- resume
    start_epoch, start_step, global_step = 0, 0, 0
    best_miou = -math.inf
    history: list[dict[str, Any]] = []
    running = [0.0, 0]
    last_path, best_path, resume_path = run / LAST, run / BEST, run / RESUME
    if resume and resume_path.exists():
        state = torch.load(resume_path, map_location="cpu", weights_only=True)
        ts = state["train_state"]
        _check_resume_config(ts["config"], config, resume_path)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        start_epoch, start_step = int(ts["epoch"]), int(ts["step"])
        global_step, best_miou = int(ts["global_step"]), float(ts["best_miou"])
        history = list(ts["history"])
        running = [float(ts["running"][0]), int(ts["running"][1])]
        _set_rng_state(ts["rng"][dist.rank] if isinstance(ts["rng"], list) else ts["rng"])
    if dist.active:
        ddp_model: nn.Module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        ddp_model = model

    # constant bands (std 0) are divided by 1 by PatchDataset; store what the model saw
    std_used = np.where(source.std > 0, source.std, 1.0)

    def checkpoint(path: Path, epoch: int, metrics: Mapping[str, Any]) -> None:
        save_checkpoint(
            path, model, bands=source.bands, mean=source.mean, std=std_used,
            epoch=epoch, metrics=metrics, extra={"config": config.to_dict(), "cube": str(cube)},
        )  # fmt: skip

    def save_last(epoch: int, step: int, metrics: Mapping[str, Any]) -> None:
        """Resume file (model + training state) and, at epoch ends, the last checkpoint."""
        rng: Any = _rng_state()
        if dist.active:  # collective: every rank calls save_last
            gathered: list[Any] = [None] * dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        if not dist.main:
            return
        state = {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "train_state": {
                "config": config.to_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng,
                "epoch": epoch,
                "step": step,
                "global_step": global_step,
                "best_miou": best_miou,
                "history": history,
                "running": list(running),
            },
        }
        _atomic_save(state, resume_path)
        if step == 0:
            checkpoint(last_path, epoch, metrics)

    bar = None
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        skip = start_step if epoch == start_epoch else 0
        sampler.set_start(skip * config.batch_size)
        if skip == 0:
            running = [0.0, 0]
        loader = _loader(
            train_ds, sampler, config.batch_size, config.num_workers,
            drop_last=True, seed=config.seed * 100003 + epoch, device=device,
        )  # fmt: skip
        t0 = time.perf_counter()
        ddp_model.train()
        if progress and dist.main:
            bar = tqdm(
                total=steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}",
                leave=False, dynamic_ncols=True,
            )  # fmt: skip
        step = skip
        for x, y in loader:
            if step >= steps_per_epoch:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, config.amp):
                logits = ddp_model(x)
            loss = loss_fn(logits.float(), y)
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            global_step += 1
            running[0] += float(loss.detach())
            running[1] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running[0] / running[1]:.4f}")
            if on_step is not None:
                on_step(global_step)
            if config.checkpoint_every_steps and global_step % config.checkpoint_every_steps == 0:
                if step < steps_per_epoch:
                    save_last(epoch, step, {})
        train_loss = running[0] / max(running[1], 1)
        if dist.active:
            t = torch.tensor([train_loss], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(t)
            train_loss = float(t) / dist.world_size
        if len(val_ds):
            val_metrics, val_loss = evaluate_loader(
                model, val_loader, device, loss_fn=loss_fn, amp=config.amp
            )
            miou, oa = val_metrics.miou, val_metrics.overall_accuracy
            ious = dict(zip(CLASS_NAMES, val_metrics.iou.tolist(), strict=True))
        else:
            val_loss, miou, oa = float("nan"), float("nan"), float("nan")
            ious = dict.fromkeys(CLASS_NAMES, float("nan"))
        row = {
            "epoch": epoch + 1,
            "step": global_step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_miou": miou,
            "val_overall_accuracy": oa,
            **{f"val_iou_{k}": v for k, v in ious.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if bar is not None:
            bar.close()
            tqdm.write(
                f"epoch {epoch + 1}/{config.epochs}: loss {train_loss:.4f}  "
                f"val loss {val_loss:.4f}  val mIoU {miou:.4f}  val OA {oa:.4f}"
            )
        score = miou if not math.isnan(miou) else float(epoch)
        improved = score > best_miou
        if improved:
            best_miou = score
        metrics = {k: v for k, v in row.items() if not isinstance(v, float) or math.isfinite(v)}
        if improved and dist.main:
            checkpoint(best_path, epoch + 1, {**metrics, "selected_by": "val_miou"})
        save_last(epoch + 1, 0, metrics)
        if dist.main:
            _write_logs(run, history, {"best_val_miou": best_miou, "cube": str(cube)})
    if dist.main and history:
        _plot_curves(history, run / "curves.png")
    if dist.main and config.calibrate and len(val_ds) and best_path.exists():
        _calibrate_best(model, best_path, val_loader, device)
    if dist.active:
        torch.distributed.barrier()
    return TrainResult(
        run_dir=run,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        history=history,
        best_val_miou=best_miou,
    )
