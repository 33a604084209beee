"""Transfer to another region, its outputs: the before/after table, its files, the checkpoint.

:func:`transfer_table` (before/after metrics), ``transfer_metrics.{csv,md}``,
``finetune_log.csv``, ``transfer.json`` and the fine-tuned checkpoint ``finetuned.pt``.

Split out of :mod:`cryonet.transfer`, which runs it (and re-exports its public names).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cryonet.transferconfig import FinetuneConfig
from glacierstack import storage

__all__ = [
    "save_finetuned",
    "transfer_table",
    "write_outputs",
]


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


def _write_tables(result_df: Any, out: Path) -> dict[str, Path]:
    from cryonet.tables import markdown_table

    csv = out / "transfer_metrics.csv"
    md = out / "transfer_metrics.md"
    tmp = csv.with_suffix(".csv.tmp")
    result_df.to_csv(tmp, float_format="%.6f")
    storage.publish(tmp, csv)
    pct = result_df * 100.0
    text = (
        "Transfer to the target region: metrics in % before and after fine-tuning\n\n"
        + markdown_table(pct, floatfmt=".2f")
        + "\n"
    )
    tmp = md.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    storage.publish(tmp, md)
    return {"csv": csv, "markdown": md}


def save_finetuned(
    out: Path,
    model: Any,
    meta: dict[str, Any],
    source: Any,
    before: Any,
    after: Any,
    checkpoint: str | Path,
    cfg: FinetuneConfig,
) -> Path:
    """Save the fine-tuned model as ``out/finetuned.pt`` (metadata of the source checkpoint)."""
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


def write_outputs(
    out: Path,
    before: Any,
    after: Any,
    losses: list[float],
    checkpoint: str | Path,
    target_cube: str | Path,
    cfg: FinetuneConfig,
    ckpt_out: Path | None,
    n_train: int,
    n_test: int,
    seconds: float,
) -> dict[str, Path]:
    """Write the before/after tables, ``finetune_log.csv`` and ``transfer.json``; return them."""
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
    storage.publish(tmp, files["summary"])
    return files
