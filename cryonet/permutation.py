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

This module runs it (:func:`permutation_importance`, :func:`importance_from_checkpoint`); the
shuffles and metrics are in :mod:`cryonet.permshuffle`, the result, its tables and figure in
:mod:`cryonet.permresult` (their names are re-exported here).

Definitions (fractions in ``[0, 1]``, plotted in percentage points):

* **mIoU** — mean over classes of ``TP / (TP + FP + FN)``, skipping classes absent from both
  the reference and the prediction;
* **accuracy** — overall accuracy, ``sum(TP) / number of labelled pixels``;
* **class accuracy** — per-class accuracy ``TP / (TP + FN)`` (recall, the usual "accuracy of
  class c" of a confusion matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from cryonet.permresult import DEFAULT_FOCUS_CLASSES as DEFAULT_FOCUS_CLASSES
from cryonet.permresult import ImportanceResult, plot_importance
from cryonet.permshuffle import ShuffleMode, metrics_from_confusion, shuffle_band, shuffle_rng
from glacierstack import storage
from glacierstack.classes import CLASS_NAMES, NODATA_LABEL, check_same_classes
from glacierstack.provenance import location_ref

__all__ = [
    "ImportanceResult",
    "importance_from_checkpoint",
    "load_test_patches",
    "metrics_from_confusion",
    "permutation_importance",
    "plot_importance",
    "shuffle_band",
]


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
    # checkpoint and cube may be URLs (s3://...): load_model and CubeSource read them
    model, meta = load_model(checkpoint, map_location=device)
    source = CubeSource(cube, bands=meta["bands"])  # the one band rule: by name
    check_same_classes(meta["classes"], source.classes, f"checkpoint {checkpoint}", f"cube {cube}")
    if split is not None:
        sp_file: str | Path = str(split) if storage.is_url(split) else Path(split)
        if isinstance(sp_file, Path) and sp_file.is_dir():
            sp_file = sp_file / SPLIT_FILE
        sp_path: str | Path | None = sp_file
        sp = PatchSplit.from_json(sp_file)
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
        with storage.local_folder(out) as local:  # a URL: written locally, uploaded on exit
            res.to_csv(local / "importance.csv")
            plot_importance(res, local / "importance.png", top=top)
    return res
