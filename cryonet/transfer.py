"""Transfer a trained model to another region: evaluate, fine-tune briefly, evaluate again.

This is the paper's transferability experiment (Section II-G, Table V): a CryoNet trained on the
Poiqu Basin is applied to the Mont Blanc massif, then fine-tuned "for a limited number of
iterations" on the new region and evaluated again. :func:`finetune` does exactly that on any
target cube:

1. cut the target cube into patches and split them (random 80/20 by default, seeded; the split
   is written to ``<out>/split.json``);
2. evaluate the checkpoint on the target test patches (**before**);
3. fine-tune all weights (or only the decoder) for ``iterations`` optimizer steps on the target
   training patches — Adam, class-frequency weighted cross-entropy, AMP and gradient clipping
   as in training: the steps are :class:`cryonet.engine.Trainer`'s;
4. evaluate the fine-tuned model on the same test patches (**after**), save it as a checkpoint
   and write before/after tables (Markdown + CSV) and a JSON summary.

Inputs are normalised with the **checkpoint's** statistics by default (what prediction with the
checkpoint does); ``normalization="target"`` uses the target cube's own statistics instead,
and the fine-tuned checkpoint then records those.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from glacierstack.classes import NODATA_LABEL, check_same_classes

__all__ = [
    "FinetuneConfig",
    "TransferResult",
    "finetune",
    "transfer_table",
]


@dataclass(frozen=True)
class FinetuneConfig:
    """Options of :func:`finetune`."""

    iterations: int = 100
    """Optimizer steps of fine-tuning (0 = evaluate only)."""
    batch_size: int = 8
    """Patches per step."""
    lr: float = 1e-4
    """Adam learning rate (lower than training's 3e-4: the weights are already trained)."""
    weight_decay: float = 1e-4
    """Adam weight decay (paper value)."""
    patch_size: int = 128
    """Patch edge in pixels for the target cube."""
    test_fraction: float = 0.2
    """Fraction of target patches held out for the before/after evaluation."""
    split_method: Literal["random", "blocked"] = "random"
    """``random`` patch split (paper) or spatially ``blocked`` (see :mod:`cryonet.data`)."""
    class_weighting: Literal["inverse", "sqrt_inverse", "median", "none"] = "sqrt_inverse"
    """Class weights of the cross-entropy, from the target training patches."""
    augment: bool = True
    """Random flips/rot90 of the training patches."""
    freeze_encoder: bool = False
    """Fine-tune only the decoder and head (the encoder keeps the source-region weights)."""
    normalization: Literal["checkpoint", "target"] = "checkpoint"
    """Normalise inputs with the checkpoint's or the target cube's band statistics."""
    seed: int = 0
    """Seed of the split, the sampling order and the augmentation."""
    device: str = "cpu"
    """Torch device."""
    eval_batch_size: int = 8
    """Batch size of the evaluations."""
    amp: bool = True
    """Mixed precision on CUDA (as in training); ignored on CPU."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value (``None``: no clipping)."""

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(
                f"batch sizes must be >= 1, got batch_size={self.batch_size}, "
                f"eval_batch_size={self.eval_batch_size}"
            )
        if self.patch_size < 8:
            raise ValueError(f"patch_size must be >= 8 pixels, got {self.patch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.normalization not in ("checkpoint", "target"):
            raise ValueError(
                f"normalization must be 'checkpoint' or 'target', got {self.normalization!r}"
            )


@dataclass(frozen=True)
class TransferResult:
    """Outcome of :func:`finetune`."""

    before: Any
    """:class:`cryonet.metrics.SegmentationMetrics` of the checkpoint on the target test set."""
    after: Any
    """The same after fine-tuning."""
    checkpoint: Path | None
    """The fine-tuned checkpoint (``None`` when ``iterations == 0``)."""
    out: Path
    """Output folder."""
    losses: tuple[float, ...] = ()
    """Training loss of every fine-tuning step."""
    n_train: int = 0
    """Target training patches."""
    n_test: int = 0
    """Target test patches."""
    seconds: float = 0.0
    """Wall time of the fine-tuning steps."""
    files: dict[str, Path] = field(default_factory=dict)
    """Written tables and summaries by name."""

    def table(self):  # -> pandas.DataFrame
        """Before/after table (see :func:`transfer_table`)."""
        return transfer_table(self.before, self.after)


# --------------------------------------------------------------------------- tables
def transfer_table(before: Any, after: Any):  # -> pandas.DataFrame
    """Before/after metrics in one table.

    Parameters
    ----------
    before, after
        :class:`cryonet.metrics.SegmentationMetrics` objects.

    Returns
    -------
    pandas.DataFrame
        Rows: one per class (IoU, precision, recall), then ``mean`` (mIoU, mean precision,
        mean recall) and ``overall accuracy``; columns ``<metric> before``, ``<metric> after``
        and ``Δ IoU`` (after - before). Values are fractions.
    """
    import pandas as pd

    names = list(before.class_names)
    rows: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        rows[name] = {
            "IoU before": before.iou[i],
            "IoU after": after.iou[i],
            "precision before": before.precision[i],
            "precision after": after.precision[i],
            "recall before": before.recall[i],
            "recall after": after.recall[i],
        }
    rows["mean"] = {
        "IoU before": before.miou,
        "IoU after": after.miou,
        "precision before": before.mean_precision,
        "precision after": after.mean_precision,
        "recall before": before.mean_recall,
        "recall after": after.mean_recall,
    }
    nan = float("nan")
    rows["overall accuracy"] = {
        "IoU before": before.overall_accuracy,
        "IoU after": after.overall_accuracy,
        "precision before": nan,
        "precision after": nan,
        "recall before": nan,
        "recall after": nan,
    }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "class"
    df["Δ IoU"] = df["IoU after"] - df["IoU before"]
    return df


# --------------------------------------------------------------------------- fine-tuning
def _decoder_parameters(model: Any) -> list[Any]:
    enc = getattr(model, "encoder", None)
    if enc is None:
        raise ValueError(
            "freeze_encoder=True needs a model with an 'encoder' attribute, "
            f"{type(model).__name__} has none"
        )
    frozen = {id(p) for p in enc.parameters()}
    for p in enc.parameters():
        p.requires_grad_(False)
    return [p for p in model.parameters() if id(p) not in frozen]


def _write_tables(result_df: Any, out: Path) -> dict[str, Path]:
    from cryonet.tables import markdown_table

    csv = out / "transfer_metrics.csv"
    md = out / "transfer_metrics.md"
    tmp = csv.with_suffix(".csv.tmp")
    result_df.to_csv(tmp, float_format="%.6f")
    tmp.replace(csv)
    pct = result_df * 100.0
    text = (
        "Transfer to the target region: metrics in % before and after fine-tuning\n\n"
        + markdown_table(pct, floatfmt=".2f")
        + "\n"
    )
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(md)
    return {"csv": csv, "markdown": md}


def finetune(
    checkpoint: str | Path,
    target_cube: str | Path,
    out: str | Path,
    config: FinetuneConfig | None = None,
    *,
    progress: bool = True,
) -> TransferResult:
    """Evaluate a checkpoint on another region, fine-tune it briefly, evaluate again.

    Parameters
    ----------
    checkpoint
        Checkpoint trained on the source region (:mod:`cryonet.checkpoint` format).
    target_cube
        Zarr cube of the target region holding the checkpoint's bands (any order).
    out
        Output folder: ``split.json``, ``finetuned.pt``, ``transfer_metrics.{csv,md}``,
        ``transfer.json`` and ``finetune_log.csv`` (loss per step).
    config
        All options (defaults: :class:`FinetuneConfig`), e.g.
        ``FinetuneConfig(iterations=60, lr=5e-5)``.
    progress
        Show a progress bar.

    Returns
    -------
    TransferResult

    Raises
    ------
    ValueError
        If the cube lacks some of the checkpoint's bands, or is too small for at least one
        training and one test patch.
    """
    import torch

    from cryonet.checkpoint import load_model
    from cryonet.data import CubeSource, PatchDataset, SplitConfig, make_split

    cfg = config or FinetuneConfig()
    out = Path(out)
    checkpoint, target_cube = Path(checkpoint), Path(target_cube)
    device = torch.device(cfg.device)
    model, meta = load_model(checkpoint, map_location=device)
    # the one band rule: the checkpoint's bands by name, in its order
    stats = (meta["mean"], meta["std"]) if cfg.normalization == "checkpoint" else None
    source = CubeSource(target_cube, bands=meta["bands"], stats=stats)
    check_same_classes(
        meta["classes"], source.classes, f"checkpoint {checkpoint}", f"cube {target_cube}"
    )
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to fit
    class_names = [str(c["name"]) for c in meta["classes"]]
    split = make_split(
        source,
        SplitConfig(
            patch_size=cfg.patch_size, test_fraction=cfg.test_fraction, val_fraction=0.0,
            method=cfg.split_method, seed=cfg.seed,
        ),
    )  # fmt: skip
    split.to_json(out / "split.json")
    train_ds = PatchDataset(source, split.subset("train"), cfg.patch_size)
    test_ds = PatchDataset(source, split.subset("test"), cfg.patch_size)

    before = _evaluate(model, test_ds, cfg, class_names)
    losses: list[float] = []
    ckpt_out: Path | None = None
    t0 = time.perf_counter()
    if cfg.iterations > 0:
        losses = _finetune_steps(model, source, split, train_ds, cfg, len(class_names), progress)
        seconds = time.perf_counter() - t0
        after = _evaluate(model, test_ds, cfg, class_names)
        ckpt_out = _save_finetuned(out, model, meta, source, before, after, checkpoint, cfg)
    else:
        seconds = 0.0
        after = before
    files = _write_outputs(out, before, after, losses, checkpoint, target_cube, cfg, ckpt_out,
                           len(train_ds), len(test_ds), seconds)  # fmt: skip
    return TransferResult(
        before=before,
        after=after,
        checkpoint=ckpt_out,
        out=out,
        losses=tuple(losses),
        n_train=len(train_ds),
        n_test=len(test_ds),
        seconds=seconds,
        files=files,
    )


def _evaluate(model: Any, ds: Any, cfg: FinetuneConfig, class_names: list[str]) -> Any:
    """Metrics of ``model`` on the patches of ``ds`` (the one evaluation loop)."""
    import torch

    from cryonet.data import PatchSampler, batch_loader
    from cryonet.engine import evaluate_loader

    sampler = PatchSampler(len(ds), shuffle=False, equal_shards=False)
    loader = batch_loader(ds, sampler, cfg.eval_batch_size)
    metrics, _ = evaluate_loader(
        model, loader, torch.device(cfg.device), num_classes=len(class_names),
        class_names=class_names, amp=cfg.amp,
    )  # fmt: skip
    return metrics


def _finetune_steps(
    model: Any,
    source: Any,
    split: Any,
    train_ds: Any,
    cfg: FinetuneConfig,
    num_classes: int,
    progress: bool,
) -> list[float]:
    """Run ``cfg.iterations`` steps of :class:`cryonet.engine.Trainer`; return their losses."""
    import torch
    from tqdm.auto import tqdm

    from cryonet.data import PatchSampler, batch_loader, class_counts, class_weights
    from cryonet.engine import Trainer

    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    counts = class_counts(source, split.subset("train"), cfg.patch_size, num_classes)
    weights = torch.as_tensor(class_weights(counts, cfg.class_weighting), device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=NODATA_LABEL)
    params = _decoder_parameters(model) if cfg.freeze_encoder else None
    trainer = Trainer(
        model, loss_fn, device, params=params, lr=cfg.lr, weight_decay=cfg.weight_decay,
        total_steps=cfg.iterations, amp=cfg.amp, grad_clip=cfg.grad_clip,
    )  # fmt: skip
    sampler = PatchSampler(len(train_ds), shuffle=True, augment=cfg.augment, seed=cfg.seed)
    model.train()
    if cfg.freeze_encoder:  # keep the source region's batch-norm statistics too
        model.encoder.eval()
    losses: list[float] = []
    epoch = 0
    with tqdm(total=cfg.iterations, desc="fine-tuning", unit="step", disable=not progress) as bar:
        while len(losses) < cfg.iterations:
            sampler.set_epoch(epoch)
            generator = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            for x, y in batch_loader(train_ds, sampler, cfg.batch_size, generator=generator):
                losses.append(trainer.step(x, y))
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if len(losses) >= cfg.iterations:
                    break
            epoch += 1
    return losses


def _save_finetuned(
    out: Path,
    model: Any,
    meta: dict[str, Any],
    source: Any,
    before: Any,
    after: Any,
    checkpoint: Path,
    cfg: FinetuneConfig,
) -> Path:
    from cryonet.checkpoint import save_checkpoint

    path = out / "finetuned.pt"
    save_checkpoint(
        path,
        model,
        bands=list(meta["bands"]),
        mean=np.asarray(source.mean, dtype=np.float64),
        std=np.asarray(source.std, dtype=np.float64),
        classes=meta["classes"],
        epoch=meta.get("epoch"),
        metrics={"transfer_before": before.to_dict(), "transfer_after": after.to_dict()},
        extra={
            "finetuned_from": str(checkpoint),
            "target_cube": str(source.path),
            "finetune": asdict(cfg),
        },
    )
    return path


def _write_outputs(
    out: Path,
    before: Any,
    after: Any,
    losses: list[float],
    checkpoint: Path,
    target_cube: Path,
    cfg: FinetuneConfig,
    ckpt_out: Path | None,
    n_train: int,
    n_test: int,
    seconds: float,
) -> dict[str, Path]:
    files = _write_tables(transfer_table(before, after), out)
    log = out / "finetune_log.csv"
    log.write_text("step,loss\n" + "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(losses)))
    files["log"] = log
    summary = {
        "checkpoint": str(checkpoint),
        "target_cube": str(target_cube),
        "config": asdict(cfg),
        "n_train": n_train,
        "n_test": n_test,
        "seconds": seconds,
        "before": before.to_dict(),
        "after": after.to_dict(),
        "finetuned_checkpoint": str(ckpt_out) if ckpt_out else None,
    }
    files["summary"] = out / "transfer.json"
    tmp = out / "transfer.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(files["summary"])
    return files
