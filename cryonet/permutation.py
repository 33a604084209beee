"""Permutation channel importance, as in the CryoNet paper (Section II-F, Fig. 10).

The trained model is first evaluated on the unmodified test set (baseline mIoU and overall
accuracy). Then, for every input band, that band's values are shuffled **across test samples**
— each patch receives the band from another patch, so the band keeps its distribution but
loses its spatial relation to the other bands and to the labels — and the model is evaluated
again. The importance of a band is the drop of each metric from the baseline. The paper does
this for the overall metrics and separately for clean ice and debris-covered ice; here every
class IoU and class accuracy is recorded, and the per-class panels show ``clean_ice`` and
``debris`` by default.

Every shuffle is repeated ``repeats`` times with independent random permutations; tables give
the mean and standard deviation of the drop over the repeats.

Definitions (fractions in ``[0, 1]``, plotted in percentage points):

* **mIoU** — mean over classes of ``TP / (TP + FP + FN)``, skipping classes absent from both
  the reference and the prediction;
* **accuracy** — overall accuracy, ``sum(TP) / number of labelled pixels``;
* **class accuracy** — per-class accuracy ``TP / (TP + FN)`` (recall, the usual "accuracy of
  class c" of a confusion matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from glacierstack.classes import CLASS_NAMES, NODATA_LABEL, check_same_classes
from glacierstack.provenance import location_ref

ShuffleMode = Literal["samples", "pixels"]

__all__ = [
    "ImportanceResult",
    "importance_from_checkpoint",
    "load_test_patches",
    "metrics_from_confusion",
    "permutation_importance",
    "plot_importance",
    "shuffle_band",
]

DEFAULT_FOCUS_CLASSES: tuple[str, ...] = ("clean_ice", "debris")
"""Classes shown in their own panels, as in the paper's Fig. 10 (clean ice, debris)."""


# --------------------------------------------------------------------------- metrics
def metrics_from_confusion(cm: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Scalar metrics used by the importance analysis, from one confusion matrix.

    Parameters
    ----------
    cm
        ``(K, K)`` confusion matrix, rows = reference class, columns = predicted class.
    classes
        The ``K`` class names (keys of the per-class entries).

    Returns
    -------
    dict
        ``miou``, ``accuracy``, and ``iou_<class>`` / ``acc_<class>`` for every class
        (NaN where a class is absent from both reference and prediction, or from the reference
        for the class accuracy).
    """
    from cryonet.metrics import SegmentationMetrics

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(classes):
        raise ValueError(
            f"confusion matrix of shape {cm.shape} does not match "
            f"{len(classes)} classes {list(classes)}"
        )
    m = SegmentationMetrics.from_confusion(cm, classes)
    # class accuracy (recall) is undefined, not 0, for a class absent from the reference
    acc_c = np.where(m.confusion.sum(axis=1) > 0, m.recall, np.nan)
    out: dict[str, float] = {"miou": m.miou, "accuracy": m.overall_accuracy}
    for name, v, a in zip(classes, m.iou, acc_c, strict=True):
        out[f"iou_{name}"] = float(v)
        out[f"acc_{name}"] = float(a)
    return out


# --------------------------------------------------------------------------- shuffling
def _derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw a random permutation of ``range(n)`` without fixed points (one random cycle)."""
    order = rng.permutation(n)
    perm = np.empty(n, dtype=np.intp)
    perm[order] = np.roll(order, -1)
    return perm


def shuffle_band(
    x: np.ndarray,
    band: int,
    rng: np.random.Generator,
    *,
    mode: ShuffleMode = "samples",
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Return a copy of ``x`` with one band shuffled across the test samples.

    Parameters
    ----------
    x
        ``(N, C, H, W)`` model inputs.
    band
        Index of the band (channel) to shuffle.
    rng
        Random generator (the permutation is drawn from it).
    mode
        ``"samples"`` (the paper): the band of sample ``i`` is replaced by the same band of
        sample ``perm[i]``, where ``perm`` is a random permutation **without fixed points**, so
        no sample keeps its own band; needs ``N >= 2``. ``"pixels"``: the band's values are
        permuted over all (valid) pixels of all samples, which also destroys the spatial
        structure within the band.
    valid
        Optional ``(N, H, W)`` boolean mask of labelled pixels; in ``"pixels"`` mode only these
        values are permuted (among themselves), so fill values of nodata pixels are not spread.

    Returns
    -------
    numpy.ndarray
        Shuffled copy; all other bands are unchanged, and the multiset of the band's values is
        preserved.
    """
    if x.ndim != 4:
        raise ValueError(f"expected inputs of shape (N, C, H, W), got {x.shape}")
    n, c = x.shape[:2]
    if not 0 <= band < c:
        raise ValueError(f"band index {band} out of range for {c} input channels")
    out = x.copy()
    if mode == "samples":
        if n < 2:
            raise ValueError("shuffling a band across samples needs at least 2 test samples")
        out[:, band] = x[_derangement(rng, n), band]
    elif mode == "pixels":
        plane = out[:, band]
        if valid is None:
            flat = plane.reshape(-1)
            out[:, band] = rng.permutation(flat).reshape(plane.shape)
        else:
            if valid.shape != plane.shape:
                raise ValueError(f"valid mask shape {valid.shape} != band shape {plane.shape}")
            plane[valid] = rng.permutation(plane[valid])
    else:
        raise ValueError(f"unknown shuffle mode {mode!r}; expected 'samples' or 'pixels'")
    return out


def shuffle_rng(seed: int, repeat: int, band: int) -> np.random.Generator:
    """Random generator for one (repeat, band) shuffle; independent of evaluation order."""
    return np.random.default_rng([seed, repeat, band])


def _mean_std(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (``ddof=1``, 0 for one repeat) over axis 0, NaN-aware and quiet."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(d, axis=0)
        std = np.nanstd(d, axis=0, ddof=1) if d.shape[0] > 1 else np.zeros(d.shape[1])
    return mean, np.nan_to_num(std, nan=0.0) if d.shape[0] > 1 else std


# --------------------------------------------------------------------------- evaluation
def _predict_confusion(
    model: Callable[..., object],
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    batch_size: int,
    device: str,
) -> np.ndarray:
    """Confusion matrix of ``model`` on in-memory patches (the one evaluation loop)."""
    import torch

    from cryonet.engine import evaluate_loader

    batches = (
        (
            torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])),
            torch.from_numpy(np.ascontiguousarray(y[i : i + batch_size])).long(),
        )
        for i in range(0, len(x), batch_size)
    )
    names = [str(k) for k in range(num_classes)]
    metrics, _ = evaluate_loader(
        model,  # type: ignore[arg-type]
        batches,
        torch.device(device),
        num_classes=num_classes,
        class_names=names,
    )
    return np.asarray(metrics.confusion, dtype=np.int64)


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
            cols[f"{metric}_drop_mean"], cols[f"{metric}_drop_std"] = _mean_std(d)
        df = pd.DataFrame(cols, index=pd.Index(self.bands, name="band"))
        return df.sort_values("miou_drop_mean", ascending=False, kind="stable")

    def ranking(self, metric: str = "miou", top: int | None = None) -> list[str]:
        """Band names sorted by mean drop of ``metric`` (most important first)."""
        mean, _ = _mean_std(self.drops[metric])
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
        tmp.replace(path)
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


def permutation_importance(
    model: Callable[..., object],
    x: np.ndarray,
    y: np.ndarray,
    *,
    bands: Sequence[str],
    classes: Sequence[str] = CLASS_NAMES,
    repeats: int = 3,
    seed: int = 0,
    mode: ShuffleMode = "samples",
    batch_size: int = 8,
    device: str = "cpu",
    progress: bool = True,
) -> ImportanceResult:
    """Permutation channel importance of a segmentation model on a test set.

    Parameters
    ----------
    model
        A ``torch.nn.Module`` (or callable) mapping ``(B, C, H, W)`` float tensors to logits
        ``(B, K, H, W)``; it is put in ``eval()`` mode if it has one.
    x
        ``(N, C, H, W)`` float32 test inputs, already normalised as the model expects
        (e.g. from :mod:`cryonet.data`).
    y
        ``(N, H, W)`` integer labels, ``255`` = nodata (ignored).
    bands
        The ``C`` band names (used in tables and plots).
    classes
        The ``K`` class names.
    repeats
        Independent shuffles per band (``>= 1``); the tables report mean and spread.
    seed
        Seed; the permutation of ``(repeat r, band b)`` comes from
        :func:`shuffle_rng` ``(seed, r, b)``, so results do not depend on evaluation order.
    mode
        See :func:`shuffle_band` (``"samples"`` is the paper's procedure).
    batch_size, device
        Inference batch size and torch device.
    progress
        Show a progress bar (one step per band and repeat).

    Returns
    -------
    ImportanceResult
        Baseline metrics and per-band drops of every metric.
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or y.shape != (x.shape[0], x.shape[2], x.shape[3]):
        raise ValueError(
            f"expected x (N, C, H, W) and y (N, H, W); got x {x.shape} and y {y.shape}"
        )
    if len(bands) != x.shape[1]:
        raise ValueError(f"{len(bands)} band names given for {x.shape[1]} input channels")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if mode == "samples" and x.shape[0] < 2:
        raise ValueError(
            f"the test set has {x.shape[0]} sample(s); shuffling across samples needs >= 2 "
            "(use smaller patches or mode='pixels')"
        )
    if hasattr(model, "eval"):
        model.eval()  # type: ignore[union-attr]
    classes = tuple(classes)
    valid = y != NODATA_LABEL

    def evaluate(inputs: np.ndarray) -> dict[str, float]:
        cm = _predict_confusion(
            model, inputs, y, num_classes=len(classes), batch_size=batch_size, device=device
        )
        return metrics_from_confusion(cm, classes)

    baseline = evaluate(x)
    drops = {k: np.full((repeats, len(bands)), np.nan) for k in baseline}
    from tqdm.auto import tqdm

    with tqdm(
        total=repeats * len(bands), desc="permutation importance", unit="band", disable=not progress
    ) as bar:
        for r in range(repeats):
            for b, name in enumerate(bands):
                bar.set_postfix_str(name)
                xs = shuffle_band(x, b, shuffle_rng(seed, r, b), mode=mode, valid=valid)
                m = evaluate(xs)
                for k in baseline:
                    drops[k][r, b] = baseline[k] - m[k]
                bar.update()
    return ImportanceResult(
        bands=tuple(bands),
        classes=classes,
        baseline=baseline,
        drops=drops,
        mode=mode,
        n_samples=int(x.shape[0]),
        seed=seed,
    )


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
            mean, std = _mean_std(d)
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


# --------------------------------------------------------------------------- cube + checkpoint
def load_test_patches(
    cube: str | Path,
    windows: np.ndarray,
    patch_size: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    bands: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read patches of a cube, normalised with given statistics (e.g. a checkpoint's).

    Parameters
    ----------
    cube
        Zarr cube (``glacierstack.store`` layout).
    windows
        ``(n, 2)`` patch origins ``[y0, x0]`` (e.g. ``PatchSplit.subset("test")``).
    patch_size
        Patch edge in pixels.
    mean, std
        Per-band normalisation statistics, in the order of ``bands``.
    bands
        The bands to read by name, in this order (a checkpoint's); default: the cube's.

    Returns
    -------
    x, y
        ``(n, C, P, P)`` float32 normalised inputs (missing values -> 0, the band mean) and
        ``(n, P, P)`` uint8 labels (255 = nodata), as :class:`cryonet.data.PatchDataset` gives.
    """
    from cryonet.data import CubeSource, PatchDataset

    source = CubeSource(cube, bands=bands, stats=(mean, std))
    ds = PatchDataset(source, windows, patch_size)
    n = len(ds)
    x = np.empty((n, source.n_bands, patch_size, patch_size), np.float32)
    y = np.empty((n, patch_size, patch_size), np.uint8)
    for i in range(n):
        xi, yi = ds[i]
        x[i], y[i] = xi.numpy(), yi.numpy()
    return x, y


def importance_from_checkpoint(
    checkpoint: str | Path,
    cube: str | Path,
    out: str | Path | None = None,
    *,
    split: str | Path | None = None,
    patch_size: int = 128,
    max_samples: int | None = None,
    repeats: int = 3,
    seed: int = 0,
    mode: ShuffleMode = "samples",
    batch_size: int = 8,
    device: str = "cpu",
    top: int = 15,
    progress: bool = True,
) -> ImportanceResult:
    """Permutation importance of a checkpoint on the test patches of a cube.

    Parameters
    ----------
    checkpoint
        Trained model (:mod:`cryonet.checkpoint`); its normalisation statistics are used.
    cube
        Zarr cube with the checkpoint's bands.
    out
        If given, writes ``importance.csv`` (+ ``importance.json``) and the Fig.-10-style
        chart ``importance.png`` there.
    split
        ``split.json`` of the training run (or the run directory holding it), so the test
        patches are the ones the model never saw. Default: a new random split of the cube
        (:func:`cryonet.data.make_split` with ``patch_size`` and ``seed``) — only meaningful
        for a cube the model was not trained on.
    patch_size
        Patch edge when no ``split`` is given.
    max_samples
        Use at most this many test patches (a seeded random subset), to bound the run time.
    repeats, seed, mode, batch_size, device, progress
        See :func:`permutation_importance`.
    top
        Bands per panel of the chart.

    Returns
    -------
    ImportanceResult
    """
    from cryonet.checkpoint import load_model
    from cryonet.data import SPLIT_FILE, CubeSource, PatchSplit, SplitConfig, make_split

    for name, value in (("patch_size", patch_size), ("repeats", repeats),
                        ("batch_size", batch_size), ("top", top)):  # fmt: skip
        if value < (8 if name == "patch_size" else 1):
            raise ValueError(f"{name} must be >= {8 if name == 'patch_size' else 1}, got {value}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 (or unset), got {max_samples}")
    checkpoint, cube = Path(checkpoint), Path(cube)
    model, meta = load_model(checkpoint, map_location=device)
    source = CubeSource(cube, bands=meta["bands"])  # the one band rule: by name
    check_same_classes(meta["classes"], source.classes, f"checkpoint {checkpoint}", f"cube {cube}")
    if split is not None:
        sp_path = Path(split)
        sp_path = sp_path / SPLIT_FILE if sp_path.is_dir() else sp_path
        sp = PatchSplit.from_json(sp_path)
        sp.check_cube(source)
    else:
        sp_path = None
        sp = make_split(source, SplitConfig(patch_size=patch_size, val_fraction=0.0, seed=seed))
    windows = sp.subset("test")
    if max_samples is not None and len(windows) > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(len(windows), max_samples, replace=False))
        windows = windows[pick]
    del source
    x, y = load_test_patches(
        cube, windows, sp.patch_size, mean=meta["mean"], std=meta["std"], bands=meta["bands"]
    )
    res = permutation_importance(
        model,
        x,
        y,
        bands=meta["bands"],
        classes=[str(c["name"]) for c in meta["classes"]],
        repeats=repeats,
        seed=seed,
        mode=mode,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    res = replace(
        res,
        meta={
            "checkpoint": location_ref(checkpoint),
            "cube": location_ref(cube),
            "split": str(sp_path) if sp_path else "new random split",
            "patch_size": sp.patch_size,
            "windows": windows.tolist(),
        },
    )
    if out is not None:
        out = Path(out)
        res.to_csv(out / "importance.csv")
        plot_importance(res, out / "importance.png", top=top)
    return res
