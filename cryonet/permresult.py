"""Permutation importance, its output: the result, its tables and figure.

:class:`ImportanceResult` (tables, CSV) and :func:`plot_importance` (the paper's Fig. 10).

Split out of :mod:`cryonet.permutation`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryonet.permshuffle import ShuffleMode, mean_std
from glacierstack import storage

__all__ = ["DEFAULT_FOCUS_CLASSES", "ImportanceResult", "plot_importance"]

DEFAULT_FOCUS_CLASSES: tuple[str, ...] = ("clean_ice", "debris")
"""Classes shown in their own panels, as in the paper's Fig. 10 (clean ice, debris)."""


@dataclass(frozen=True)
class ImportanceResult:
    """Outcome of :func:`permutation_importance`.

    Drops are ``baseline - permuted`` (positive = the band matters), as fractions.
    """

    bands: tuple[str, ...]
    """Band names, in input-channel order."""
    classes: tuple[str, ...]
    """Class names, in class-id order."""
    baseline: dict[str, float]
    """Metrics on the unmodified test set (see :func:`metrics_from_confusion`)."""
    drops: dict[str, np.ndarray]
    """Per metric, an array ``(repeats, n_bands)`` of drops."""
    mode: ShuffleMode = "samples"
    """How bands were shuffled."""
    n_samples: int = 0
    """Number of test samples (patches)."""
    seed: int = 0
    """Seed of the permutations."""
    meta: dict[str, object] = field(default_factory=dict)
    """Free-form provenance (checkpoint, cube, split) recorded in the CSV's sidecar JSON."""

    @property
    def repeats(self) -> int:
        """Number of repeats per band."""
        return int(next(iter(self.drops.values())).shape[0])

    def table(self):  # -> pandas.DataFrame
        """Per-band table: ``<metric>_drop_mean`` and ``<metric>_drop_std`` columns.

        Rows are sorted by the mean mIoU drop (most important first). The standard deviation is
        the sample standard deviation over repeats (``ddof=1``; 0 with a single repeat).
        """
        import pandas as pd

        cols: dict[str, np.ndarray] = {}
        for metric, d in self.drops.items():
            cols[f"{metric}_drop_mean"], cols[f"{metric}_drop_std"] = mean_std(d)
        df = pd.DataFrame(cols, index=pd.Index(self.bands, name="band"))
        return df.sort_values("miou_drop_mean", ascending=False, kind="stable")

    def ranking(self, metric: str = "miou", top: int | None = None) -> list[str]:
        """Band names sorted by mean drop of ``metric`` (most important first)."""
        mean, _ = mean_std(self.drops[metric])
        order = np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")
        names = [self.bands[i] for i in order]
        return names if top is None else names[:top]

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`table` to ``path`` (and the baseline/provenance to ``path.json``)."""
        import json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        self.table().to_csv(tmp, float_format="%.6g")
        storage.publish(tmp, path)
        sidecar = {
            "baseline": self.baseline,
            "repeats": self.repeats,
            "mode": self.mode,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "meta": self.meta,
        }
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str))
        return path


# --------------------------------------------------------------------------- plotting
def plot_importance(
    result: ImportanceResult,
    path: str | Path,
    *,
    top: int = 15,
    focus: Sequence[str] = DEFAULT_FOCUS_CLASSES,
    title: str | None = None,
) -> Path:
    """Top-``top`` horizontal bar charts laid out like the paper's Fig. 10.

    One row for the overall metrics, then one row per class in ``focus``; the left column shows
    the accuracy drop, the right column the IoU drop (mIoU for the overall row), in percentage
    points, with the standard deviation over repeats as error bars. Each panel is sorted by its
    own metric.

    Parameters
    ----------
    result
        Output of :func:`permutation_importance`.
    path
        PNG (or any Matplotlib format) to write.
    top
        Bands per panel.
    focus
        Class names for the per-class rows.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from cryonet._plot import subplots

    missing = [c for c in focus if f"iou_{c}" not in result.drops]
    if missing:
        raise ValueError(f"classes {missing} not in the importance result ({list(result.classes)})")
    rows = [("Overall", "accuracy", "miou")] + [
        (c.replace("_", " ").capitalize(), f"acc_{c}", f"iou_{c}") for c in focus
    ]
    n_show = min(top, len(result.bands))
    fig, axes = subplots(len(rows), 2, figsize=(10, 0.28 * n_show * len(rows) + 1.5), squeeze=False)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i, (label, acc_key, iou_key) in enumerate(rows):
        for j, (key, what) in enumerate(((acc_key, "Accuracy"), (iou_key, "IoU"))):
            ax = axes[i, j]
            d = result.drops[key] * 100.0
            mean, std = mean_std(d)
            order = np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")[:n_show]
            names = [result.bands[k] for k in order]
            pos = np.arange(len(order))[::-1]
            ax.barh(pos, mean[order], xerr=std[order], color="#4575b4", ecolor="0.3", capsize=2)
            ax.set_yticks(pos, names, fontsize=8)
            ax.axvline(0.0, color="0.2", lw=0.6)
            delta = "mIoU" if (i == 0 and j == 1) else what
            ax.set_xlabel(f"Δ {delta} (percentage points)", fontsize=8)
            ax.set_title(f"({letters[2 * i + j]}) {label}: Δ {delta}", fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(
        title or f"Permutation channel importance (top {n_show}, {result.repeats} repeats)",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
