"""Measuring calibration: reliability bins, the expected calibration error, the temperature fit.

Also the per-pixel confidence layers of a mosaic and the reliability-diagram figure.
:mod:`cryonet.calibration` (temperature scaling of checkpoints) re-exports the public names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from glacierstack.classes import NODATA_LABEL

__all__ = [
    "DEFAULT_BINS",
    "Reliability",
    "confidence_layers",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "plot_reliability",
    "reliability",
    "softmax_probs",
]


DEFAULT_BINS = 15
"""Confidence bins of the ECE and the reliability diagram (the usual choice)."""


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data of one set of predictions."""

    edges: np.ndarray
    """``n_bins + 1`` confidence bin edges in ``[0, 1]``."""
    count: np.ndarray
    """Pixels per bin (int64)."""
    confidence: np.ndarray
    """Mean confidence per bin (NaN where empty)."""
    accuracy: np.ndarray
    """Fraction of correct arg-max predictions per bin (NaN where empty)."""

    @property
    def ece(self) -> float:
        """Expected calibration error (0..1)."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        ok = self.count > 0
        gap = np.abs(self.accuracy[ok] - self.confidence[ok])
        return float((self.count[ok] * gap).sum() / n)


def softmax_probs(logits: torch.Tensor | np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities ``softmax(logits / temperature)`` over the last axis."""
    t = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    return torch.softmax(t / float(temperature), dim=-1).numpy()


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> Reliability:
    """Reliability-diagram data from class probabilities.

    Parameters
    ----------
    probs
        ``(N, K)`` probabilities (rows sum to 1).
    labels
        ``(N,)`` reference class ids; :data:`~glacierstack.classes.NODATA_LABEL` is ignored.
    n_bins
        Equal-width confidence bins; a confidence of exactly 1 falls in the last bin.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probabilities {probs.shape} and labels {labels.shape} do not match")
    keep = labels != NODATA_LABEL
    probs, labels = probs[keep], labels[keep]
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct.astype(np.float64), minlength=n_bins) / count
    return Reliability(edges=edges, count=count, confidence=mean_conf, accuracy=acc)


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS
) -> float:
    """Top-label expected calibration error (0..1) of ``(N, K)`` probabilities."""
    return reliability(probs, labels, n_bins).ece


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``logits / temperature``."""
    return float(nn.functional.cross_entropy(logits / temperature, labels))


def fit_temperature(
    logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, max_iter: int = 100
) -> float:
    """Fit the temperature ``T`` minimising the mean NLL of ``softmax(logits / T)`` (L-BFGS).

    ``log T`` is optimised (so ``T`` stays positive), starting from ``T = 1``.

    Parameters
    ----------
    logits
        ``(N, K)`` logits.
    labels
        ``(N,)`` reference class ids (nodata pixels must already be removed).
    max_iter
        L-BFGS iterations.
    """
    x = torch.as_tensor(np.asarray(logits, dtype=np.float32)).double()
    y = torch.as_tensor(np.asarray(labels)).long()
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need (N, K) logits and (N,) labels with N > 0; got {x.shape}, {y.shape}")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(x / torch.exp(log_t), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(torch.exp(log_t).detach())
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature fit diverged (T = {t})")
    return t


def confidence_layers(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel confidence of ``(K, ...)`` class probabilities.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The maximum probability and the normalised entropy
        ``-sum_k p_k log p_k / log K`` (0 = certain, 1 = uniform), both float32 in ``[0, 1]``.
    """
    p = np.asarray(probs, dtype=np.float64)
    k = p.shape[0]
    pmax = p.max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=0)
    ent = ent / math.log(k) if k > 1 else np.zeros_like(ent)
    return pmax.astype(np.float32), np.clip(ent, 0.0, 1.0).astype(np.float32)


def plot_reliability(
    diagrams: Mapping[str, Reliability], path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Draw reliability diagrams (accuracy against confidence, with the ECE in the legend).

    Parameters
    ----------
    diagrams
        Label (e.g. ``"before (T=1)"``, ``"after (T=1.8)"``) -> :class:`Reliability`.
    path
        Output PNG.
    title
        Figure title.
    """
    from cryonet._plot import subplots

    fig, (ax, axh) = subplots(
        2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect calibration")
    for label, rel in diagrams.items():
        centres = 0.5 * (rel.edges[:-1] + rel.edges[1:])
        ok = rel.count > 0
        ax.plot(
            rel.confidence[ok], rel.accuracy[ok], marker="o", ms=3,
            label=f"{label}: ECE {100 * rel.ece:.2f} %",
        )  # fmt: skip
        axh.step(centres, rel.count / max(rel.count.sum(), 1), where="mid", label=label)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title or "Reliability diagram")
    axh.set_xlabel("confidence (max probability)")
    axh.set_ylabel("share")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
