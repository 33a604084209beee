"""The one training step and the one evaluation loop, shared by train, finetune and evaluation.

:class:`Trainer` owns a model's optimisation: the optimizer, the learning-rate schedule, AMP
(autocast + loss scaling), gradient clipping, deep supervision and the
``DistributedDataParallel`` wrapper. :func:`cryonet.training.train` (and so
:func:`cryonet.evaluation.compare`) and :func:`cryonet.transfer.finetune` drive it;
:func:`evaluate_loader` is the evaluation loop used by training,
:func:`cryonet.evaluation.evaluate`, :func:`cryonet.transfer.finetune` and
:mod:`cryonet.permutation`.

Nothing here knows about cubes, splits or run directories.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from cryonet.metrics import ConfusionMatrix, SegmentationMetrics
from glacierstack.classes import CLASS_NAMES, NODATA_LABEL, NUM_CLASSES

__all__ = [
    "SCHEDULES",
    "DeepSupervision",
    "Dist",
    "Trainer",
    "autocast",
    "evaluate_loader",
    "get_rng_state",
    "init_distributed",
    "resolve_device",
    "seed_everything",
    "set_rng_state",
]

ScheduleName = Literal["constant", "cosine", "onecycle"]


# ----------------------------------------------------------------------------- devices, ranks
@dataclass(frozen=True)
class Dist:
    """Place of the current process in a ``torchrun`` job (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the process writing files)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the ``torchrun`` process group (NCCL on GPU, Gloo on CPU) when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str) -> torch.device:
    """Return the torch device named ``name``.

    ``"auto"``: CUDA when available; ``"cuda"`` under torchrun: the process's ``LOCAL_RANK`` GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None and "LOCAL_RANK" in os.environ:
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return dev


def autocast(device: torch.device, enabled: bool) -> Any:
    """Mixed-precision context: bfloat16 (or float16) on CUDA when ``enabled``, else a no-op."""
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


# ----------------------------------------------------------------------------- RNG state
def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states, in a ``weights_only``-loadable form."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(key, dtype=np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states of :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_loader(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    num_classes: int = NUM_CLASSES,
    loss_fn: nn.Module | None = None,
    amp: bool = False,
    class_names: Sequence[str] = CLASS_NAMES,
    target_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[SegmentationMetrics, float]:
    """Accumulate the confusion matrix (and mean loss) of ``model`` over ``loader``.

    The one evaluation loop: training's validation, :func:`cryonet.evaluation.evaluate`,
    fine-tuning's before/after and permutation importance all call it. Under an initialised
    process group the matrix and loss are summed over all processes. ``target_hook(batch_index,
    labels)`` may rewrite the labels of a batch before counting (e.g. set already counted pixels
    to 255).

    Returns
    -------
    (SegmentationMetrics, float)
        Metrics and the mean loss per batch (NaN without ``loss_fn``).
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for b, (x, y) in enumerate(loader):
        if target_hook is not None:
            y = target_hook(b, y)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(x)
        if loss_fn is not None and bool((y != NODATA_LABEL).any()):
            loss_sum[0] += float(loss_fn(logits.float(), y))
            loss_sum[1] += 1
        cm.update(logits, y)
    cm.all_reduce()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(loss_sum)
    if isinstance(model, nn.Module):
        model.train(was_training)
    mean_loss = float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else float("nan")
    return cm.compute(class_names), mean_loss


# ----------------------------------------------------------------------------- training step
def _constant(opt: torch.optim.Optimizer, total: int, lr: float) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _cosine(opt: torch.optim.Optimizer, total: int, lr: float) -> Any:
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)


def _onecycle(opt: torch.optim.Optimizer, total: int, lr: float) -> Any:
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total)


SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int, float], Any]] = {
    "constant": _constant,
    "cosine": _cosine,
    "onecycle": _onecycle,
}
"""Learning-rate schedules by name: ``f(optimizer, total_steps, lr)``, stepped per step."""


class DeepSupervision(nn.Module):
    """Training view of a model with auxiliary heads: ``forward`` returns ``forward_aux(x)``.

    Wrapping (rather than calling ``forward_aux`` on the side) keeps every head inside the
    module that ``DistributedDataParallel`` sees, so all gradients are reduced.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Auxiliary outputs then the main output, each ``(N, K, H, W)``."""
        return self.model.forward_aux(x)  # type: ignore[operator,no-any-return]


def uses_deep_supervision(model: nn.Module) -> bool:
    """Whether ``model`` was built with auxiliary heads (``deep_supervision=True``)."""
    return bool(getattr(model, "deep_supervision", False)) and hasattr(model, "forward_aux")


class Trainer:
    """One optimisation step of a model: AMP, clipping, deep supervision, schedule, DDP.

    Parameters
    ----------
    model
        The bare model (what checkpoints store).
    loss_fn
        Loss of ``(logits, labels)``; with deep supervision it is averaged over every output
        of ``model.forward_aux`` (the auxiliary heads and the main head).
    device
        Where the model and batches live.
    params
        Parameters to optimise (default: all of ``model``'s that require gradients).
    lr, weight_decay
        Adam settings.
    schedule, total_steps
        A :data:`SCHEDULES` name and the number of steps it spans.
    amp
        Mixed precision on CUDA (loss scaling when bfloat16 is not supported).
    grad_clip
        Clip the global gradient norm to this value (``None``: no clipping).
    distributed
        Wrap the model in ``DistributedDataParallel`` (under ``torchrun``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        device: torch.device,
        *,
        params: Iterable[nn.Parameter] | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        total_steps: int = 1,
        amp: bool = False,
        grad_clip: float | None = None,
        distributed: bool = False,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown scheduler {schedule!r}; use one of {sorted(SCHEDULES)}")
        self.model, self.loss_fn, self.device = model, loss_fn, device
        self.amp, self.grad_clip = amp, grad_clip
        trainable = [p for p in model.parameters() if p.requires_grad] if params is None else params
        self.optimizer = torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
        self.scheduler = SCHEDULES[schedule](self.optimizer, total_steps, lr)
        use_scaler = device.type == "cuda" and amp and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.deep_supervision = uses_deep_supervision(model)
        net: nn.Module = DeepSupervision(model) if self.deep_supervision else model
        if distributed:
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
        self.net = net

    def loss(self, outputs: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor) -> Any:
        """Loss of one or (deep supervision) several outputs, averaged over the outputs."""
        if isinstance(outputs, torch.Tensor):
            return self.loss_fn(outputs.float(), y)
        return sum(self.loss_fn(o.float(), y) for o in outputs) / len(outputs)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer (and schedule) step on a batch; returns the loss."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            outputs = self.net(x)
        loss = self.loss(outputs, y)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach())

    def train_mode(self) -> None:
        """Put the model in training mode."""
        self.net.train()

    @property
    def lr(self) -> float:
        """Current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, schedule and loss-scaler state (the model is saved separately)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
