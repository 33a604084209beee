"""Training, one epoch: the optimizer steps, validation, logs and checkpoints.

:func:`train_epoch` runs the (rest of the) epoch's steps, resuming mid-epoch;
:func:`end_epoch` validates, keeps the best checkpoint and writes the resume state and logs.

Split out of :mod:`cryonet.training`, which runs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from cryonet.engine import evaluate_loader
from cryonet.rundir import best_val_miou, write_logs
from cryonet.trainsetup import BEST, Progress, Run, cube_class_names, make_loader
from glacierstack.provenance import location_ref

__all__ = [
    "end_epoch",
    "train_epoch",
]


def train_epoch(
    r: Run,
    prog: Progress,
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
    loader = make_loader(
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


def _validate(r: Run) -> dict[str, float]:
    """Compute validation loss, mIoU, overall accuracy and per-class IoU (NaN without patches)."""
    names = cube_class_names(r.source)
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


def end_epoch(
    r: Run, prog: Progress, epoch: int, train_loss: float, seconds: float, progress: bool
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
