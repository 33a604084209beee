"""Figures of a mapping run: false-colour composite, class map, confusion matrix.

Each function draws on a standalone matplotlib ``Figure`` (:mod:`cryonet._plot`) and writes a
PNG; none of them knows about reports or the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cryonet._plot import subplots
from glacierstack.classes import CLASSES, ClassInfo

__all__ = [
    "FALSE_COLOUR_BANDS",
    "false_colour_composite",
    "plot_class_map",
    "plot_confusion_matrix",
]

FALSE_COLOUR_BANDS: tuple[str, str, str] = ("B11", "B08", "B04")
"""SWIR-NIR-red composite: snow and ice appear cyan/blue, vegetation green, rock brown."""


# --------------------------------------------------------------------------- figures


def false_colour_composite(
    rgb: np.ndarray,
    *,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """Stretch three bands into an RGB image in ``[0, 1]``.

    Parameters
    ----------
    rgb
        ``(3, H, W)`` band values (e.g. reflectance of B11, B08, B04); NaN = no data.
    percentiles
        Per-band lower/upper percentiles of the valid values mapped to 0 and 1.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float array in ``[0, 1]``; no-data pixels are black.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected three bands of shape (3, H, W), got {rgb.shape}")
    out = np.zeros(rgb.shape[1:] + (3,))
    for i in range(3):
        band = rgb[i]
        ok = np.isfinite(band)
        if not ok.any():
            continue
        lo, hi = np.percentile(band[ok], percentiles)
        scale = hi - lo if hi > lo else 1.0
        out[..., i] = np.where(ok, np.clip((band - lo) / scale, 0.0, 1.0), 0.0)
    return out


def _class_rgba(class_map: np.ndarray, classes: Sequence[ClassInfo], alpha: float) -> np.ndarray:
    from matplotlib.colors import to_rgba

    rgba = np.zeros(class_map.shape + (4,))
    for c in classes:
        rgba[class_map == c.id] = to_rgba(c.color, alpha)
    return rgba


def plot_class_map(
    class_map: np.ndarray,
    composite: np.ndarray,
    path: str | Path,
    *,
    classes: Sequence[ClassInfo] = CLASSES,
    reference: np.ndarray | None = None,
    alpha: float = 0.6,
    extent: tuple[float, float, float, float] | None = None,
    units: str | None = None,
    title: str = "CryoNet class map",
) -> Path:
    """Plot a class map over a false-colour composite (and optionally the reference labels).

    Parameters
    ----------
    class_map
        ``(H, W)`` integer class ids; ``255`` (nodata) is left transparent.
    composite
        ``(H, W, 3)`` RGB image in ``[0, 1]`` (see :func:`false_colour_composite`).
    path
        Output image file.
    classes
        Class table (ids, labels, colours).
    reference
        Optional ``(H, W)`` reference labels, drawn in an extra panel.
    alpha
        Opacity of the class colours over the composite.
    extent
        ``(xmin, xmax, ymin, ymax)`` map coordinates for the axes (e.g. UTM metres).
    units
        Axis label suffix for ``extent`` (e.g. ``"km, EPSG:32645"``).
    title
        Title of the prediction panel.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from matplotlib.patches import Patch

    class_map = np.asarray(class_map)
    if composite.shape[:2] != class_map.shape:
        raise ValueError(
            f"composite {composite.shape[:2]} and class map {class_map.shape} differ in shape"
        )
    if reference is not None and np.shape(reference) != class_map.shape:
        raise ValueError(f"reference {np.shape(reference)} and class map {class_map.shape} differ")
    panels = [("False-colour composite (B11/B08/B04)", None), (title, class_map)]
    if reference is not None:
        panels.append(("Reference labels", np.asarray(reference)))
    h, w = class_map.shape
    fig_w = 4.6 * len(panels)
    fig, axes = subplots(1, len(panels), figsize=(fig_w, fig_w / len(panels) * h / w + 1.2))
    for ax, (name, layer) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(composite, extent=extent, interpolation="nearest")
        if layer is not None:
            ax.imshow(_class_rgba(layer, classes, alpha), extent=extent, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if units:
            ax.set_xlabel(f"easting ({units})", fontsize=7)
            ax.set_ylabel(f"northing ({units})", fontsize=7)
    handles = [Patch(facecolor=c.color, label=c.label) for c in classes]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_confusion_matrix(
    cm: np.ndarray,
    path: str | Path,
    *,
    classes: Sequence[ClassInfo] = CLASSES,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Path:
    """Plot a confusion matrix (rows = reference, columns = prediction).

    Parameters
    ----------
    cm
        ``(K, K)`` pixel counts.
    path
        Output image file.
    classes
        Class table for the axis labels.
    normalize
        Colour by row-normalised fractions (recall per reference class); cells show the
        fraction and the count.
    title
        Figure title.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} classes")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    shown = frac if normalize else cm
    fig, ax = subplots(figsize=(1.1 * k + 2.4, 1.0 * k + 1.6))
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    labels = [c.label for c in classes]
    ax.set_xticks(range(k), labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("Predicted", fontsize=9)
    ax.set_ylabel("Reference", fontsize=9)
    for i in range(k):
        for j in range(k):
            dark = shown[i, j] > (0.5 if normalize else 0.5 * shown.max())
            ax.text(
                j,
                i,
                f"{frac[i, j]:.2f}\n{int(cm[i, j]):,}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
