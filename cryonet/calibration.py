"""Calibrated confidence: temperature scaling, expected calibration error, reliability diagrams.

A network trained with cross-entropy is usually over-confident: of the pixels it labels with
95 % probability, fewer than 95 % are right. *Temperature scaling* (Guo et al., 2017) divides
the logits by one scalar ``T > 0`` fitted on held-out (validation) pixels by minimising the
negative log-likelihood; ``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens
under-confident ones (class-weighted training often gives those). It never changes the
arg-max, so class maps and IoU stay the same; only the probabilities (and the confidence
layers written with a mosaic) change.

Calibration is measured by the *expected calibration error* (top-label ECE): pixels are put
into ``n_bins`` equal-width bins of their confidence ``p_max = max_k p_k``, and

``ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|``

where ``accuracy_b`` is the fraction of pixels in bin ``b`` whose arg-max class is the reference
class. The per-bin values are the *reliability diagram* (accuracy against confidence; a
perfectly calibrated model lies on the diagonal).

:func:`calibrate_checkpoint` is the hook training calls at its end: it fits ``T`` on the
validation patches of a split and stores it in the checkpoint (key ``calibration``), which
prediction then applies (see :func:`checkpoint_temperature`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cryonet.calibration_measure import (
    DEFAULT_BINS,
    Reliability,
    confidence_layers,
    expected_calibration_error,
    fit_temperature,
    nll,
    plot_reliability,
    reliability,
    softmax_probs,
)
from glacierstack import storage
from glacierstack.classes import NODATA_LABEL

__all__ = [
    "Calibration",
    "Reliability",
    "calibrate_checkpoint",
    "calibrate_model",
    "calibration_from_logits",
    "calibration_report",
    "checkpoint_temperature",
    "collect_logits",
    "confidence_layers",
    "expected_calibration_error",
    "fit_temperature",
    "plot_reliability",
    "reliability",
    "store_calibration",
]


MAX_PIXELS = 500_000
"""Validation pixels kept (a seeded random sample) for fitting the temperature."""


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did on the pixels it was fitted on."""

    temperature: float
    """Divide logits by this before the softmax."""
    ece_before: float
    """ECE (0..1) with ``T = 1``."""
    ece_after: float
    """ECE (0..1) with the fitted ``T``."""
    nll_before: float
    """Mean negative log-likelihood with ``T = 1``."""
    nll_after: float
    """Mean negative log-likelihood with the fitted ``T``."""
    n_pixels: int
    """Pixels used."""
    subset: str = "val"
    """Split subset the pixels came from."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (as stored in a checkpoint)."""
        return asdict(self)


@torch.no_grad()
def collect_logits(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    *,
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of the valid pixels of ``loader`` (a seeded sample of ``max_pixels``).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(N, K)`` float32 logits and ``(N,)`` int64 labels.
    """
    was_training = model.training
    model.eval()
    xs, ys = [], []
    for x, y in loader:
        logits = model(x.to(device)).float()
        k = logits.shape[1]
        flat = logits.permute(0, 2, 3, 1).reshape(-1, k).cpu()
        lab = y.reshape(-1).long()
        keep = lab != NODATA_LABEL
        xs.append(flat[keep].numpy())
        ys.append(lab[keep].numpy())
    model.train(was_training)
    if not xs:
        raise ValueError("the loader yielded no batches")
    logits_all = np.concatenate(xs)
    labels_all = np.concatenate(ys)
    if len(labels_all) > max_pixels:
        pick = np.random.default_rng(seed).choice(len(labels_all), max_pixels, replace=False)
        logits_all, labels_all = logits_all[pick], labels_all[pick]
    return logits_all, labels_all


def calibration_from_logits(
    logits: np.ndarray, labels: np.ndarray, *, subset: str = "val", n_bins: int = DEFAULT_BINS
) -> Calibration:
    """Fit the temperature on ``logits``/``labels`` and report ECE and NLL before and after."""
    t = fit_temperature(logits, labels)
    x = torch.as_tensor(logits).double()
    y = torch.as_tensor(labels).long()
    return Calibration(
        temperature=t,
        ece_before=expected_calibration_error(softmax_probs(logits), labels, n_bins),
        ece_after=expected_calibration_error(softmax_probs(logits, t), labels, n_bins),
        nll_before=nll(x, y, 1.0),
        nll_after=nll(x, y, t),
        n_pixels=len(labels),
        subset=subset,
    )


def calibrate_model(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    *,
    subset: str = "val",
) -> Calibration:
    """Fit temperature scaling of ``model`` on the pixels of ``loader`` (validation patches)."""
    logits, labels = collect_logits(model, loader, device)
    return calibration_from_logits(logits, labels, subset=subset)


def store_calibration(checkpoint: str | os.PathLike[str], calibration: Calibration) -> Path | str:
    """Rewrite a checkpoint (path or URL) atomically with a ``calibration`` entry."""
    from cryonet.checkpoint import load_checkpoint, rewrite_checkpoint

    ckpt = load_checkpoint(checkpoint)
    ckpt["calibration"] = calibration.to_dict()
    return rewrite_checkpoint(checkpoint, ckpt)


def calibrate_checkpoint(
    checkpoint: str | os.PathLike[str],
    cube: str | os.PathLike[str],
    split: Any,
    *,
    subset: str = "val",
    batch_size: int = 8,
    device: str = "cpu",
    ensemble: Sequence[str | os.PathLike[str]] = (),
    tta: str | Sequence[int] | None = None,
) -> Calibration:
    """Fit temperature scaling on a split's ``subset`` patches and store it in the checkpoint.

    Parameters
    ----------
    checkpoint
        A checkpoint from training (rewritten with a ``calibration`` entry, or with an
        ``ensemble_calibrations`` entry when ``ensemble`` or ``tta`` are given).
    cube
        The Zarr cube the split refers to.
    split
        A :class:`~cryonet.data.PatchSplit`, a ``split.json`` or a run directory holding one.
    subset
        Patches to fit on (``val``; never the test patches).
    batch_size, device
        Inference settings.
    ensemble, tta
        Fit the temperature of the *averaged* output of ``checkpoint`` and these members over
        these dihedral transforms, as :func:`cryonet.infer.predict` computes it (each member
        with its own temperature inside; :mod:`cryonet.calibration_ensemble`). Predict and
        evaluate with the same members (same order) and transforms apply it.
    """
    from cryonet.calibration_ensemble import store_averaged_calibration
    from cryonet.data import (
        CubeSource,
        PatchDataset,
        PatchSampler,
        PatchSplit,
        batch_loader,
        split_json,
    )
    from cryonet.infer.ensemble import EnsembleModel, model_source

    dev = torch.device(device)
    src = model_source(checkpoint, list(ensemble), tta)
    loaded = src.load(dev)  # a single model: its logits; an average: log p (members calibrated)
    # the one band rule (cryonet.bands) and the checkpoint's statistics, as predict uses
    source = CubeSource(cube, bands=loaded.bands, stats=(loaded.mean.tolist(), loaded.std.tolist()))
    if not isinstance(split, PatchSplit):
        split = PatchSplit.from_json(split_json(split))
    windows = split.subset(subset)
    if len(windows) == 0:
        raise ValueError(f"the split has no {subset!r} patches to fit the temperature on")
    ds = PatchDataset(source, windows, split.patch_size)
    loader = batch_loader(ds, PatchSampler(len(ds), shuffle=False, equal_shards=False), batch_size)
    cal = calibrate_model(loaded.module, loader, dev, subset=subset)  # type: ignore[arg-type]
    # a URL: rewrite a local copy, uploaded over the original when the rewrite succeeded
    with storage.staged_output(checkpoint) as local:
        if storage.is_url(checkpoint):
            storage.copy_file(storage.local_file(checkpoint), local)
        if isinstance(src, EnsembleModel):
            store_averaged_calibration(local, cal, src.member_ids()[1:], src.tta)
        else:
            store_calibration(local, cal)
    return cal


def calibration_report(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    temperature: float,
    out: str | os.PathLike[str],
    *,
    title: str = "",
    n_bins: int = DEFAULT_BINS,
) -> dict[str, float]:
    """ECE before (``T = 1``) and after temperature scaling on a loader's pixels, plus figure.

    Writes ``calibration.json`` (``temperature``, ``ece_uncalibrated``, ``ece_calibrated``,
    ``nll_uncalibrated``, ``nll_calibrated``, ``pixels``; ECE in 0..1) and ``reliability.png``
    into ``out``. For a model whose output is already calibrated (an ensemble / TTA average)
    pass ``temperature=1``: both columns are then equal.
    """
    logits, labels = collect_logits(model, loader, device)
    x, y = torch.as_tensor(logits).double(), torch.as_tensor(labels).long()
    before = reliability(softmax_probs(logits), labels, n_bins)
    after = reliability(softmax_probs(logits, temperature), labels, n_bins)
    result = {
        "temperature": float(temperature),
        "ece_uncalibrated": before.ece,
        "ece_calibrated": after.ece,
        "nll_uncalibrated": nll(x, y, 1.0),
        "nll_calibrated": nll(x, y, temperature),
        "pixels": int(len(labels)),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=1))
    diagrams = {"T = 1": before}
    if temperature != 1.0:
        diagrams[f"T = {temperature:.2f}"] = after
    plot_reliability(diagrams, out / "reliability.png", title=title or None)
    return result


def checkpoint_temperature(meta: Mapping[str, Any]) -> float:
    """Return the temperature stored in a checkpoint dict (1.0 if never calibrated)."""
    cal = meta.get("calibration") or {}
    t = float(cal.get("temperature", 1.0))
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"checkpoint calibration has an invalid temperature {t}")
    return t
