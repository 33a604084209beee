"""Segmentation metrics: confusion matrix, per-class IoU / precision / recall, overall accuracy.

Definitions follow ``shared/CRYONET.md`` (and the CryoNet paper). With ``C`` the confusion
matrix (rows = reference class, columns = predicted class) and for class ``k``
``TP = C[k, k]``, ``FP = sum(C[:, k]) - TP``, ``FN = sum(C[k, :]) - TP``:

- ``IoU_k = TP / (TP + FP + FN)``
- ``precision_k = TP / (TP + FP)``, ``recall_k = TP / (TP + FN)``
- the means (mIoU, mean precision, mean recall) are unweighted means over classes,
- ``overall accuracy = sum_k TP_k / total pixels`` (= ``trace(C) / C.sum()``).

Pixels whose reference label is ``255`` (:data:`glacierstack.classes.NODATA_LABEL`) are ignored.
A class that occurs neither in the reference nor in the prediction has every metric ``NaN``
and is left out of the means; any other ``0 / 0`` (e.g. a class present in the reference but
never predicted has ``TP + FP = 0``) counts as ``0``, so a model is never rewarded for not
predicting a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from glacierstack.classes import CLASS_NAMES, NODATA_LABEL

__all__ = [
    "ConfusionMatrix",
    "SegmentationMetrics",
    "confusion_matrix",
]


def confusion_matrix(
    target: np.ndarray | torch.Tensor,
    pred: np.ndarray | torch.Tensor,
    num_classes: int,
    ignore_index: int = NODATA_LABEL,
) -> np.ndarray:
    """Count (reference, prediction) pairs into a ``(num_classes, num_classes)`` matrix.

    Parameters
    ----------
    target
        Reference labels (any shape, integer); ``ignore_index`` pixels are skipped.
    pred
        Predicted class ids, same shape as ``target``.
    num_classes
        Number of classes ``K``.
    ignore_index
        Reference value to ignore (nodata).

    Returns
    -------
    numpy.ndarray
        ``int64`` matrix, rows = reference class, columns = predicted class.
    """
    t = torch.as_tensor(target)
    p = torch.as_tensor(pred)
    return _confusion_torch(t, p, num_classes, ignore_index).cpu().numpy()


def _confusion_torch(
    target: torch.Tensor, pred: torch.Tensor, num_classes: int, ignore_index: int
) -> torch.Tensor:
    if target.shape != pred.shape:
        raise ValueError(
            f"reference labels {tuple(target.shape)} and predictions {tuple(pred.shape)} "
            "must have the same shape"
        )
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.numel():
        bad_t = (t < 0) | (t >= num_classes)
        bad_p = (p < 0) | (p >= num_classes)
        if bool(bad_t.any()) or bool(bad_p.any()):
            vals = torch.unique(torch.cat([t[bad_t], p[bad_p]])).tolist()
            raise ValueError(
                f"label/prediction values {vals[:10]} are outside 0..{num_classes - 1} "
                f"(and are not the ignore value {ignore_index})"
            )
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray, undefined: np.ndarray) -> np.ndarray:
    out = np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)
    out[undefined] = np.nan
    return out


@dataclass(frozen=True)
class SegmentationMetrics:
    """Metrics derived from one confusion matrix (see the module docstring for definitions)."""

    confusion: np.ndarray
    """``int64 (K, K)``, rows = reference, columns = prediction."""
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)
    """Class names in matrix order."""

    @classmethod
    def from_confusion(
        cls, confusion: np.ndarray, class_names: Sequence[str] | None = None
    ) -> SegmentationMetrics:
        """Wrap a confusion matrix, checking its shape against the class names."""
        cm = np.asarray(confusion, dtype=np.int64)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
        names = tuple(class_names) if class_names is not None else CLASS_NAMES
        if len(names) != cm.shape[0]:
            raise ValueError(f"{len(names)} class names {names} for a {cm.shape} confusion matrix")
        return cls(confusion=cm, class_names=names)

    # ---------------------------------------------------------------- per-class parts
    @property
    def tp(self) -> np.ndarray:
        """True positives per class."""
        return np.diag(self.confusion).astype(np.float64)

    @property
    def _absent(self) -> np.ndarray:
        return (self.confusion.sum(0) + self.confusion.sum(1)) == 0

    @property
    def iou(self) -> np.ndarray:
        """Per-class intersection over union ``TP / (TP + FP + FN)``."""
        cm = self.confusion
        den = cm.sum(0) + cm.sum(1) - np.diag(cm)
        return _ratio(self.tp, den.astype(np.float64), self._absent)

    @property
    def precision(self) -> np.ndarray:
        """Per-class precision ``TP / (TP + FP)``."""
        return _ratio(self.tp, self.confusion.sum(0).astype(np.float64), self._absent)

    @property
    def recall(self) -> np.ndarray:
        """Per-class recall ``TP / (TP + FN)``."""
        return _ratio(self.tp, self.confusion.sum(1).astype(np.float64), self._absent)

    # ---------------------------------------------------------------- summaries
    @property
    def miou(self) -> float:
        """Mean IoU over classes present in reference or prediction."""
        return _nanmean(self.iou)

    @property
    def mean_precision(self) -> float:
        """Mean precision over classes present in reference or prediction."""
        return _nanmean(self.precision)

    @property
    def mean_recall(self) -> float:
        """Mean recall over classes present in reference or prediction."""
        return _nanmean(self.recall)

    @property
    def overall_accuracy(self) -> float:
        """Total true positives over total (non-ignored) pixels."""
        total = int(self.confusion.sum())
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def total_pixels(self) -> int:
        """Number of evaluated (non-ignored) pixels."""
        return int(self.confusion.sum())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (NaN becomes ``None``)."""

        def clean(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        return {
            "classes": list(self.class_names),
            "iou": {n: clean(v) for n, v in zip(self.class_names, self.iou, strict=True)},
            "precision": {
                n: clean(v) for n, v in zip(self.class_names, self.precision, strict=True)
            },
            "recall": {n: clean(v) for n, v in zip(self.class_names, self.recall, strict=True)},
            "miou": clean(self.miou),
            "mean_precision": clean(self.mean_precision),
            "mean_recall": clean(self.mean_recall),
            "overall_accuracy": clean(self.overall_accuracy),
            "total_pixels": self.total_pixels,
            "confusion": self.confusion.tolist(),
        }


def _nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


class ConfusionMatrix:
    """Accumulate a confusion matrix over batches (on the batches' device).

    Parameters
    ----------
    num_classes
        Number of classes ``K``.
    ignore_index
        Reference label value that is skipped.
    device
        Device of the running matrix (put it where the predictions are).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = NODATA_LABEL,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch.

        Parameters
        ----------
        output
            Logits ``(N, K, H, W)`` (arg-maxed over dim 1) or class ids ``(N, H, W)``.
        target
            Reference labels ``(N, H, W)``.
        """
        pred = output.argmax(1) if output.ndim == target.ndim + 1 else output
        self.matrix += _confusion_torch(
            target.to(self.matrix.device),
            pred.to(self.matrix.device),
            self.num_classes,
            self.ignore_index,
        )

    def all_reduce(self) -> None:
        """Sum the matrix over all processes of an initialised ``torch.distributed`` group."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.matrix)

    def reset(self) -> None:
        """Zero the running matrix."""
        self.matrix.zero_()

    def compute(self, class_names: Sequence[str] | None = None) -> SegmentationMetrics:
        """Return the metrics of the matrix accumulated so far."""
        return SegmentationMetrics.from_confusion(self.matrix.cpu().numpy(), class_names)
