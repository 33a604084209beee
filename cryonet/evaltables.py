"""The paper-style metric tables (Tables I-III) and the overall-accuracy bar chart.

Tables are in percent with two decimals, columns in the paper's order: clean-ice glaciers,
debris-covered glaciers, water bodies, vegetation, background, then the mean.
:mod:`cryonet.evaluation` re-exports the public names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cryonet.metrics import SegmentationMetrics
from glacierstack.classes import CLASSES

__all__ = [
    "CLASS_LABELS",
    "PAPER_CLASS_ORDER",
    "metric_tables",
    "plot_accuracy_bars",
    "write_tables",
]

PAPER_CLASS_ORDER: tuple[str, ...] = ("clean_ice", "debris", "water", "vegetation", "background")
"""Column order of the paper's tables."""

_TABLES = {
    "iou": ("table_I_iou", "IoU", "Mean IoU"),
    "recall": ("table_II_recall", "Recall", "Mean Recall"),
    "precision": ("table_III_precision", "Precision", "Mean Precision"),
}
CLASS_LABELS = {c.name: c.label for c in CLASSES}
"""Table column label of each class name."""


# ----------------------------------------------------------------------------- tables
def metric_tables(results: Mapping[str, SegmentationMetrics]) -> dict[str, Any]:
    """Paper-shaped tables (pandas DataFrames, percent) from metrics per model.

    Returns
    -------
    dict
        ``"iou"``, ``"recall"``, ``"precision"`` (rows = models, columns = classes in the
        paper's order + mean) and ``"summary"`` (mIoU, mean recall, mean precision, overall
        accuracy, evaluated pixels).
    """
    import pandas as pd

    tables: dict[str, Any] = {}
    # the paper's column order for its five classes; any other class scheme in its own order
    names = list(next(iter(results.values())).class_names) if results else []
    order = list(PAPER_CLASS_ORDER) if set(names) == set(PAPER_CLASS_ORDER) else names
    for key, (_, _, mean_name) in _TABLES.items():
        rows = {}
        for name, m in results.items():
            values = dict(zip(m.class_names, getattr(m, key), strict=True))
            mean = {"iou": m.miou, "recall": m.mean_recall, "precision": m.mean_precision}[key]
            rows[name] = [100 * values[c] for c in order] + [100 * mean]
        df = pd.DataFrame.from_dict(
            rows, orient="index", columns=[CLASS_LABELS.get(c, c) for c in order] + [mean_name]
        )
        df.index.name = "Model"
        tables[key] = df
    summary = pd.DataFrame.from_dict(
        {
            name: [
                100 * m.miou,
                100 * m.mean_recall,
                100 * m.mean_precision,
                100 * m.overall_accuracy,
                m.total_pixels,
            ]
            for name, m in results.items()
        },
        orient="index",
        columns=["Mean IoU", "Mean Recall", "Mean Precision", "Overall accuracy", "Pixels"],
    )
    summary.index.name = "Model"
    tables["summary"] = summary
    return tables


def write_tables(
    results: Mapping[str, SegmentationMetrics], out: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write the tables of :func:`metric_tables` as Markdown and CSV into ``out``.

    Returns
    -------
    dict
        Table key -> Markdown path (the CSV sits next to it).
    """
    from cryonet.tables import markdown_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = metric_tables(results)
    written: dict[str, Path] = {}
    for key, df in tables.items():
        stem, title = (_TABLES[key][0], _TABLES[key][1]) if key in _TABLES else ("summary", "")
        md = out / f"{stem}.md"
        fmt = ".2f"
        head = f"**{title} (%)**\n\n" if title else "**Summary (%)**\n\n"
        md.write_text(head + markdown_table(df.round(2), floatfmt=fmt) + "\n")
        df.to_csv(out / f"{stem}.csv", float_format="%.4f")
        written[key] = md
    (out / "metrics.json").write_text(
        json.dumps({name: m.to_dict() for name, m in results.items()}, indent=1)
    )
    return written


def plot_accuracy_bars(results: Mapping[str, SegmentationMetrics], path: Path) -> Path:
    """Bar chart of the overall accuracy of each model (``overall_accuracy.png``)."""
    from cryonet._plot import subplots

    names = list(results)
    oa = [100 * results[n].overall_accuracy for n in names]
    miou = [100 * results[n].miou for n in names]
    x = np.arange(len(names))
    fig, ax = subplots(figsize=(1.6 * len(names) + 2, 3.6))
    b1 = ax.bar(x - 0.2, oa, 0.4, label="Overall accuracy", color="#3182bd")
    b2 = ax.bar(x + 0.2, miou, 0.4, label="Mean IoU", color="#9ecae1")
    ax.bar_label(b1, fmt="%.2f", fontsize=7)
    ax.bar_label(b2, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel("%")
    ax.set_ylim(max(0.0, min(oa + miou) - 10), 100)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)
    ax.set_title("Test-set accuracy by model")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
