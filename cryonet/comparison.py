"""Mean ± standard deviation over seeds of a model comparison (the paper's Tables II-IV).

:func:`cryonet.evaluation.compare` trains every model once per seed on the identical split;
:func:`seed_table` summarises the test metrics per model as mean and sample standard deviation
over the seeds, per class and overall, and :func:`write_seed_table` writes it as Markdown/CSV.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryonet.metrics import SegmentationMetrics
from glacierstack import storage
from glacierstack.classes import CLASSES

__all__ = [
    "baseline_metrics",
    "baseline_row",
    "format_seed_table",
    "results_from_folder",
    "seed_table",
    "write_seed_table",
]

_ORDER: tuple[str, ...] = ("clean_ice", "debris", "water", "vegetation", "background")
_LABELS = {c.name: c.label for c in CLASSES}


def _row(m: SegmentationMetrics) -> list[float]:
    iou = dict(zip(m.class_names, m.iou, strict=True))
    return [100 * float(iou.get(c, np.nan)) for c in _ORDER] + [
        100 * m.miou,
        100 * m.overall_accuracy,
    ]


def baseline_metrics(
    cube: str | os.PathLike[str],
    split: Any,
    out: str | os.PathLike[str],
    *,
    subset: str = "test",
    seed: int = 0,
) -> SegmentationMetrics:
    """Train the random-forest baseline (:mod:`cryonet.baseline`) on a split's train windows.

    The forest's class map is written to ``out`` (GeoTIFF) and scored on the same ``subset``
    windows as the CNNs (each pixel once), so its row is comparable with theirs.
    """
    import rasterio

    from cryonet.baseline import BaselineConfig, train_baseline
    from cryonet.data import PatchSplit, split_json
    from cryonet.metrics import confusion_matrix
    from glacierstack.classes import CLASS_NAMES
    from glacierstack.store import open_cube

    if not isinstance(split, PatchSplit):
        split = PatchSplit.from_json(split_json(split))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    split_file = out.parent / f".{out.stem}.split.json"
    split.to_json(split_file)
    try:
        train_baseline(cube, out, split_file=split_file, config=BaselineConfig(seed=seed))
    finally:
        storage.discard(split_file)
    with rasterio.open(out) as src:
        pred = src.read(1)
    labels = np.asarray(open_cube(cube)["labels"].values)
    labels = np.where(np.isfinite(labels), labels, 255).astype(np.int64)
    mask = np.zeros(labels.shape, bool)
    size = split.patch_size
    for y0, x0 in split.subset(subset):
        mask[y0 : y0 + size, x0 : x0 + size] = True
    ref = np.where(mask & (pred != 255), labels, 255)
    cm = confusion_matrix(ref, np.where(pred == 255, 0, pred), len(CLASS_NAMES))
    return SegmentationMetrics.from_confusion(cm, CLASS_NAMES)


def baseline_row(m: SegmentationMetrics) -> dict[str, float]:
    """Return a :func:`format_seed_table` ``extra`` row (column label -> percent)."""
    cols = [_LABELS[c] for c in _ORDER] + ["Mean IoU", "Overall accuracy"]
    return dict(zip(cols, _row(m), strict=True))


def results_from_folder(out: str | os.PathLike[str]) -> dict[str, list[SegmentationMetrics]]:
    """Test metrics of every finished run of a ``compare`` folder (``<model>/seed<k>/``).

    Reads ``evaluation/metrics.json`` of each run, so the table of an interrupted or still
    running comparison can be made from the seeds that have finished.
    """
    import json

    found: dict[str, list[SegmentationMetrics]] = {}
    for path in sorted(Path(out).glob("*/seed*/evaluation/metrics.json")):
        for d in json.loads(path.read_text()).values():
            m = SegmentationMetrics.from_confusion(np.asarray(d["confusion"]), d["classes"])
            found.setdefault(path.parents[2].name, []).append(m)
    return found


def seed_table(results: Mapping[str, Sequence[SegmentationMetrics]]) -> Any:
    """Test IoU per class, mIoU and overall accuracy (%): mean and std over seeds per model.

    Parameters
    ----------
    results
        Model name -> metrics of each seed (at least one).

    Returns
    -------
    pandas.DataFrame
        Rows = models; for each column ``c`` of the paper's class order, ``Mean IoU`` and
        ``Overall accuracy`` two columns ``(c, "mean")`` and ``(c, "std")`` (sample standard
        deviation, ``ddof=1``; NaN with one seed), plus ``("Seeds", "n")``.
    """
    import pandas as pd

    cols = [_LABELS[c] for c in _ORDER] + ["Mean IoU", "Overall accuracy"]
    data: dict[str, list[float]] = {}
    for name, runs in results.items():
        if not runs:
            raise ValueError(f"no results for model {name!r}")
        a = np.array([_row(m) for m in runs], dtype=np.float64)
        std = a.std(axis=0, ddof=1) if len(a) > 1 else np.full(a.shape[1], np.nan)
        data[name] = [v for pair in zip(a.mean(axis=0), std, strict=True) for v in pair] + [len(a)]
    index = pd.MultiIndex.from_tuples(
        [(c, s) for c in cols for s in ("mean", "std")] + [("Seeds", "n")]
    )
    df = pd.DataFrame.from_dict(data, orient="index", columns=index)
    df.index.name = "Model"
    return df


def format_seed_table(df: Any, extra: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Format :func:`seed_table` as Markdown with ``mean ± std`` cells.

    ``extra`` rows (e.g. a random-forest baseline) are added with plain values keyed by column
    label.
    """
    cols = [c for c in dict.fromkeys(df.columns.get_level_values(0)) if c != "Seeds"]
    head = "| Model | " + " | ".join(cols) + " | seeds |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for name, row in df.iterrows():
        cells = []
        for c in cols:
            m, s = row[(c, "mean")], row[(c, "std")]
            cells.append(f"{m:.2f}" if np.isnan(s) else f"{m:.2f} ± {s:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(row[('Seeds', 'n')])} |")
    for name, vals in (extra or {}).items():
        cells = [f"{vals[c]:.2f}" if c in vals else "" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " | 1 |")
    return "\n".join(lines) + "\n"


def write_seed_table(
    results: Mapping[str, Sequence[SegmentationMetrics]],
    out: str | os.PathLike[str],
    extra: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Write ``comparison_seeds.md`` / ``.csv`` (mean ± std over seeds) into ``out``."""
    df = seed_table(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "comparison_seeds.csv", float_format="%.4f")
    md = out / "comparison_seeds.md"
    md.write_text(
        "**Test IoU per class, mean IoU and overall accuracy (%), mean ± std over seeds**\n\n"
        + format_seed_table(df, extra)
    )
    return md
