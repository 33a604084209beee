"""Figures and a one-file Markdown (optionally HTML) report of a mapping run.

The report collects what the demo (or a user's own run) produced: metric tables, the class map
over a false-colour composite, the confusion matrix, the permutation-importance chart and the
transfer before/after tables. Figures are written next to the report and linked with relative
paths, so the output folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glacierstack.classes import CLASSES, NODATA_LABEL, ClassInfo

__all__ = [
    "FALSE_COLOUR_BANDS",
    "Figure",
    "Section",
    "false_colour_composite",
    "markdown_table",
    "plot_class_map",
    "plot_confusion_matrix",
    "render_markdown",
    "write_report",
]

FALSE_COLOUR_BANDS: tuple[str, str, str] = ("B11", "B08", "B04")
"""SWIR-NIR-red composite: snow and ice appear cyan/blue, vegetation green, rock brown."""


# --------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


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
    title
        Title of the prediction panel.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    plt = _pyplot()
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
    fig, axes = plt.subplots(1, len(panels), figsize=(fig_w, fig_w / len(panels) * h / w + 1.2))
    for ax, (name, layer) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(composite, extent=extent, interpolation="nearest")
        if layer is not None:
            ax.imshow(_class_rgba(layer, classes, alpha), extent=extent, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    handles = [Patch(facecolor=c.color, label=c.label) for c in classes]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {k} classes")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    shown = frac if normalize else cm
    fig, ax = plt.subplots(figsize=(1.1 * k + 2.4, 1.0 * k + 1.6))
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
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- tables
def _fmt(v: object, floatfmt: str) -> str:
    if isinstance(v, float | np.floating):
        return "–" if math.isnan(float(v)) else format(float(v), floatfmt)
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v).replace("|", "\\|")


def markdown_table(df, *, floatfmt: str = ".4f", index: bool = True) -> str:
    """Format a ``pandas.DataFrame`` as a GitHub-flavoured Markdown table.

    Parameters
    ----------
    df
        The table; the index becomes the first column when ``index`` is true.
    floatfmt
        Format spec for floats (NaN is shown as ``–``).
    index
        Include the index.

    Returns
    -------
    str
        The Markdown table (no trailing newline).
    """
    header = ([str(df.index.name or "")] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in zip(df.index, df.itertuples(index=False), strict=True):
        cells = ([_fmt(idx, floatfmt)] if index else []) + [_fmt(v, floatfmt) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- report
@dataclass(frozen=True)
class Figure:
    """An image in the report."""

    path: Path
    """Image file (linked relative to the report)."""
    caption: str = ""
    """Caption shown under the image."""


@dataclass(frozen=True)
class Section:
    """One section of the report: text, then tables, then figures."""

    title: str
    """Section heading."""
    text: str = ""
    """Markdown paragraph(s)."""
    tables: tuple[tuple[str, object], ...] = ()
    """``(caption, DataFrame)`` pairs."""
    figures: tuple[Figure, ...] = ()
    """Figures, in order."""
    floatfmt: str = ".4f"
    """Float format of the tables."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Bullet points after the text (e.g. what was skipped)."""


def _rel(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def render_markdown(title: str, sections: Sequence[Section], *, base: str | Path) -> str:
    """Render sections as one Markdown document.

    Parameters
    ----------
    title
        Document title (level-1 heading).
    sections
        Sections in order.
    base
        Folder the document will be written to (figure links are made relative to it).

    Returns
    -------
    str
        The Markdown text.
    """
    base = Path(base)
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if s.text:
            parts += [s.text.strip(), ""]
        if s.notes:
            parts += [f"- {n}" for n in s.notes] + [""]
        for caption, df in s.tables:
            if caption:
                parts += [f"**{caption}**", ""]
            parts += [markdown_table(df, floatfmt=s.floatfmt), ""]
        for fig in s.figures:
            parts += [f"![{fig.caption}]({_rel(fig.path, base)})", ""]
            if fig.caption:
                parts += [f"*{fig.caption}*", ""]
    return "\n".join(parts).rstrip() + "\n"


def _render_html(title: str, markdown_text: str) -> str:
    try:
        import markdown
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "HTML output needs the 'markdown' package (installed with the [docs] extra); "
            "the Markdown report was written"
        ) from err
    body = markdown.markdown(markdown_text, extensions=["tables"])
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{_html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 8px;text-align:right}img{max-width:100%}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def write_report(
    path: str | Path,
    title: str,
    sections: Sequence[Section],
    *,
    html: bool = False,
) -> Path:
    """Write the report as Markdown (and HTML next to it when ``html`` is true).

    The file is written to a temporary name and renamed, so a failed run never leaves a
    report that looks complete.

    Parameters
    ----------
    path
        Markdown file to write (``.md``); the HTML version gets the suffix ``.html``.
    title
        Document title.
    sections
        The content.
    html
        Also write a standalone HTML file (needs the ``markdown`` package).

    Returns
    -------
    pathlib.Path
        The Markdown file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for s in sections:
        for fig in s.figures:
            if not Path(fig.path).exists():
                raise FileNotFoundError(f"figure {fig.path} of section {s.title!r} does not exist")
    text = render_markdown(title, sections, base=path.parent)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    if html:
        hpath = path.with_suffix(".html")
        htmp = hpath.with_suffix(".html.tmp")
        htmp.write_text(_render_html(title, text), encoding="utf-8")
        htmp.replace(hpath)
    return path


def mask_nodata(class_map: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Return ``class_map`` with pixels outside ``valid`` set to the nodata label (255)."""
    out = np.asarray(class_map).astype(np.uint8, copy=True)
    if valid is not None:
        out[~np.asarray(valid, dtype=bool)] = NODATA_LABEL
    return out
