"""Transfer a trained model to another region: evaluate, fine-tune briefly, evaluate again.

This is the paper's transferability experiment (Section II-G, Table V): a CryoNet trained on the
Poiqu Basin is applied to the Mont Blanc massif, then fine-tuned "for a limited number of
iterations" on the new region and evaluated again. :func:`finetune` does exactly that on any
target cube:

1. cut the target cube into patches and split them (random 80/20 by default, seeded; the split
   is written to ``<out>/split.json``);
2. evaluate the checkpoint on the target test patches (**before**);
3. fine-tune all weights (or only the decoder) for ``iterations`` optimizer steps on the target
   training patches — Adam, class-frequency weighted cross-entropy as in training;
4. evaluate the fine-tuned model on the same test patches (**after**), save it as a checkpoint
   and write before/after tables (Markdown + CSV) and a JSON summary.

Inputs are normalised with the **checkpoint's** statistics by default (what prediction with the
checkpoint does); ``normalization="target"`` uses the target cube's own statistics instead,
and the fine-tuned checkpoint then records those.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
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
    from cryonet.report import markdown_table

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
    *,
    iterations: int | None = None,
    config: FinetuneConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> TransferResult:
    """Evaluate a checkpoint on another region, fine-tune it briefly, evaluate again.

    Parameters
    ----------
    checkpoint
        Checkpoint trained on the source region (:mod:`cryonet.checkpoint` format).
    target_cube
        Zarr cube of the target region with the same band list.
    out
        Output folder: ``split.json``, ``finetuned.pt``, ``transfer_metrics.{csv,md}``,
        ``transfer.json`` and ``finetune_log.csv`` (loss per step).
    iterations
        Fine-tuning steps (overrides ``config.iterations``).
    config
        All options (defaults: :class:`FinetuneConfig`).
    progress
        Show a progress bar.
    **overrides
        Individual :class:`FinetuneConfig` fields, e.g. ``lr=5e-5``.

    Returns
    -------
    TransferResult

    Raises
    ------
    ValueError
        If the cube's band list differs from the checkpoint's, or the cube is too small for
        at least one training and one test patch.
    """
    import torch
    from tqdm.auto import tqdm

    from cryonet.checkpoint import check_bands, load_model, save_checkpoint
    from cryonet.data import (
        CubeSource,
        PatchDataset,
        PatchSampler,
        SplitConfig,
        class_counts,
        class_weights,
        make_split,
    )
    from cryonet.train import evaluate_loader

    cfg = config or FinetuneConfig()
    if iterations is not None:
        overrides["iterations"] = iterations
    cfg = replace(cfg, **overrides) if overrides else cfg
    out = Path(out)
    checkpoint, target_cube = Path(checkpoint), Path(target_cube)

    model, meta = load_model(checkpoint, map_location=cfg.device)
    model.to(cfg.device)
    source = CubeSource(target_cube)
    check_bands(meta["bands"], source.bands, source=f"checkpoint {checkpoint.name}")
    check_same_classes(
        meta["classes"], source.classes, f"checkpoint {checkpoint}", f"cube {target_cube}"
    )
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to fit
    if cfg.normalization == "checkpoint":
        source.mean = np.asarray(meta["mean"], dtype=np.float32)
        source.std = np.asarray(meta["std"], dtype=np.float32)
    class_names = [str(c["name"]) for c in meta["classes"]]

    split = make_split(
        source,
        SplitConfig(
            patch_size=cfg.patch_size,
            test_fraction=cfg.test_fraction,
            val_fraction=0.0,
            method=cfg.split_method,
            seed=cfg.seed,
        ),
    )
    split.to_json(out / "split.json")
    train_ds = PatchDataset(source, split.subset("train"), cfg.patch_size)
    test_ds = PatchDataset(source, split.subset("test"), cfg.patch_size)

    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=cfg.eval_batch_size)
    device = torch.device(cfg.device)

    def evaluate() -> Any:
        metrics, _ = evaluate_loader(
            model, test_loader, device, num_classes=len(class_names), class_names=class_names
        )
        return metrics

    before = evaluate()
    losses: list[float] = []
    ckpt_out: Path | None = None
    t0 = time.perf_counter()
    if cfg.iterations > 0:
        torch.manual_seed(cfg.seed)
        counts = class_counts(source, split.subset("train"), cfg.patch_size, len(class_names))
        weights = torch.as_tensor(class_weights(counts, cfg.class_weighting), device=cfg.device)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=NODATA_LABEL)
        params = (
            _decoder_parameters(model)
            if cfg.freeze_encoder
            else [p for p in model.parameters() if p.requires_grad]
        )
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sampler = PatchSampler(len(train_ds), shuffle=True, augment=cfg.augment, seed=cfg.seed)
        model.train()
        if cfg.freeze_encoder:  # keep the source region's batch-norm statistics too
            model.encoder.eval()
        step, epoch = 0, 0
        with tqdm(
            total=cfg.iterations, desc="fine-tuning", unit="step", disable=not progress
        ) as bar:
            while step < cfg.iterations:
                sampler.set_epoch(epoch)
                loader = torch.utils.data.DataLoader(
                    train_ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=False
                )
                for x, y in loader:
                    x, y = x.to(cfg.device), y.to(cfg.device)
                    opt.zero_grad(set_to_none=True)
                    logits = model(x)
                    if isinstance(logits, list | tuple):  # deep supervision: main output first
                        logits = logits[0]
                    loss = loss_fn(logits, y)
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
                    step += 1
                    bar.update()
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
                    if step >= cfg.iterations:
                        break
                epoch += 1
        seconds = time.perf_counter() - t0
        after = evaluate()
        ckpt_out = out / "finetuned.pt"
        save_checkpoint(
            ckpt_out,
            model,
            bands=list(meta["bands"]),
            mean=np.asarray(source.mean, dtype=np.float64),
            std=np.asarray(source.std, dtype=np.float64),
            classes=meta["classes"],
            epoch=meta.get("epoch"),
            metrics={"transfer_before": before.to_dict(), "transfer_after": after.to_dict()},
            extra={
                "finetuned_from": str(checkpoint),
                "target_cube": str(target_cube),
                "finetune": asdict(cfg),
            },
        )
    else:
        seconds = 0.0
        after = before

    files = _write_tables(transfer_table(before, after), out)
    log = out / "finetune_log.csv"
    log.write_text("step,loss\n" + "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(losses)))
    files["log"] = log
    summary = {
        "checkpoint": str(checkpoint),
        "target_cube": str(target_cube),
        "config": asdict(cfg),
        "n_train": len(train_ds),
        "n_test": len(test_ds),
        "seconds": seconds,
        "before": before.to_dict(),
        "after": after.to_dict(),
        "finetuned_checkpoint": str(ckpt_out) if ckpt_out else None,
    }
    files["summary"] = out / "transfer.json"
    tmp = out / "transfer.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(files["summary"])
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
