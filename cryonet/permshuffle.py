"""Permutation importance, the shuffles and metrics.

:func:`shuffle_band`, :func:`shuffle_rng` and :func:`metrics_from_confusion`.

Definitions (fractions in ``[0, 1]``): see :mod:`cryonet.permutation`.

Split out of :mod:`cryonet.permutation`, which re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

ShuffleMode = Literal["samples", "pixels"]

__all__ = [
    "ShuffleMode",
    "mean_std",
    "metrics_from_confusion",
    "shuffle_band",
    "shuffle_rng",
]


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


def mean_std(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (``ddof=1``, 0 for one repeat) over axis 0, NaN-aware and quiet."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(d, axis=0)
        std = np.nanstd(d, axis=0, ddof=1) if d.shape[0] > 1 else np.zeros(d.shape[1])
    return mean, np.nan_to_num(std, nan=0.0) if d.shape[0] > 1 else std
