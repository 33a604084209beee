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
from typing import Any

import numpy as np

from cryonet._plot import subplots
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


# --------------------------------------------------------------------------- demo report
PAPER_POIQU_CRYONET: dict[str, float] = {
    "Clean-ice glacier": 94.01,
    "Debris-covered glacier": 90.46,
    "Water / glacial lake": 96.5,
    "Vegetation": 74.40,
    "Background": 97.22,
    "Mean IoU": 90.52,
}
"""The paper's CryoNet IoU (%) on the real Poiqu Basin (Table I), for orientation only."""

PAPER_MONTBLANC_AFTER: dict[str, float] = {"Mean IoU": 87.88, "Overall accuracy": 96.32}
"""The paper's Mont Blanc results after fine-tuning (%), for orientation only."""


def _read_csv(path: Path, **kw: object):  # -> pandas.DataFrame | None
    import pandas as pd

    return pd.read_csv(path, **kw) if path.exists() else None


def _class_map_figure(
    mosaic: Path, cube: Path, path: Path, *, max_pixels: int = 900
) -> tuple[Path, dict[str, float]]:
    """Class map (prediction + reference) over the cube's false-colour composite."""
    from cryonet.infer import open_mosaic
    from glacierstack.store import open_cube

    ds = open_cube(cube)
    mos = open_mosaic(mosaic)
    h, w = ds.sizes["y"], ds.sizes["x"]
    step = max(1, int(np.ceil(max(h, w) / max_pixels)))
    sl = {"y": slice(None, None, step), "x": slice(None, None, step)}
    rgb = ds["features"].sel(band=list(FALSE_COLOUR_BANDS)).isel(sl).values
    ref = ds["labels"].isel(sl).values
    pred = mos["classes"].isel(sl).values
    x, y = ds["x"].values, ds["y"].values
    r = float(abs(x[1] - x[0])) if len(x) > 1 else 1.0
    extent = (x[0] - r / 2, x[-1] + r / 2, y[-1] - r / 2, y[0] + r / 2)
    extent = tuple(v / 1000.0 for v in extent)  # km
    plot_class_map(
        pred,
        false_colour_composite(rgb),
        path,
        reference=ref,
        extent=extent,
        units=f"km, {ds.rio.crs.to_string() if ds.rio.crs else 'map units'}",
        title="CryoNet prediction (whole region)",
    )
    full_ref = ds["labels"].values
    full_pred = mos["classes"].values
    valid = (full_ref != NODATA_LABEL) & (full_pred != NODATA_LABEL)
    agree = float((full_ref[valid] == full_pred[valid]).mean()) if valid.any() else float("nan")
    return path, {"pixel_agreement": agree, "pixels": int(valid.sum())}


def build_demo_report(
    out: str | Path,
    records: dict[str, dict[str, Any]],
    *,
    config: dict[str, Any] | None = None,
    html: bool = True,
) -> Path:
    """Assemble the demo's report from the outputs its steps recorded.

    Parameters
    ----------
    out
        The demo output folder; ``report.md`` is written there, figures made here go to
        ``report_files/``.
    records
        Step records of :func:`cryonet.demo.run_demo` (``outputs`` are paths relative to
        ``out``). Sections whose steps are missing are replaced by a note.
    config
        The demo configuration (shown in the overview).
    html
        Also write ``report.html``.

    Returns
    -------
    pathlib.Path
        ``out/report.md``.
    """
    import pandas as pd

    out = Path(out)
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)

    def output(step: str, key: str) -> Path | None:
        rec = records.get(step)
        if not rec:
            return None
        rel = rec.get("outputs", {}).get(key)
        return out / str(rel) if rel else None

    sections: list[Section] = []

    # ---- overview
    nan = float("nan")
    rows = [
        (
            name,
            float(rec.get("seconds", nan)),
            float(rec.get("cpu_seconds", nan)),
            str(rec.get("finished", ""))[:19],
        )
        for name, rec in records.items()
    ]
    timing = pd.DataFrame(
        rows, columns=["step", "wall seconds", "CPU seconds (main process)", "finished (UTC)"]
    ).set_index("step")
    cfg_text = ""
    if config:
        cfg_text = "Configuration: " + ", ".join(
            f"`{k}={v}`" for k, v in config.items() if k != "train_overrides" or v
        )
    sections.append(
        Section(
            "Overview",
            text=(
                "End-to-end run of glacierstack + cryonet on the embedded **synthetic** regions "
                "(Poiqu-like for training, Mont Blanc-like for transfer). Numbers below describe "
                "the synthetic data; the paper's figures on real data are quoted for orientation "
                "only.\n\n" + cfg_text
            ),
            tables=(("Step times on this machine", timing),),
            notes=(f"total wall time of the steps: {timing['wall seconds'].sum() / 60:.1f} min",),
            floatfmt=".1f",
        )
    )

    # ---- training + evaluation
    tr = records.get("train")
    if tr:
        import yaml

        curves = output("train", "curves")
        cfg_path = out / str(tr["outputs"]["run"]) / "config.yaml"
        tcfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
        recipe = ", ".join(
            f"{k} {tcfg[k]}"
            for k in ("model", "patch_size", "batch_size", "epochs", "lr", "scheduler")
            if k in tcfg
        )
        sections.append(
            Section(
                "Training (CPU preset)",
                text=(
                    f"Recipe: {recipe}. {tr.get('epochs')} epochs run; "
                    + _best_val_text(tr.get("best_val_miou"))
                    + f" Checkpoint: `{tr['outputs']['checkpoint']}`."
                ),
                figures=(Figure(curves, "Training curves"),) if curves and curves.exists() else (),
            )
        )
    ev = output("evaluate", "folder")
    if ev is not None:
        tables = []
        for stem, caption in (
            ("table_I_iou", "IoU per class (%), test patches"),
            ("table_II_recall", "Recall per class (%)"),
            ("table_III_precision", "Precision per class (%)"),
            ("summary", "Summary (%)"),
        ):
            df = _read_csv(ev / f"{stem}.csv", index_col=0)
            if df is not None:
                tables.append((caption, df))
        paper = pd.DataFrame([PAPER_POIQU_CRYONET], index=pd.Index(["paper (real Poiqu)"]))
        tables.append(
            ("The paper's CryoNet IoU (%) on the real Poiqu Basin, for orientation", paper)
        )
        cm = ev / "confusion_matrix.png"
        sections.append(
            Section(
                "Evaluation on the Poiqu test patches",
                tables=tuple(tables),
                figures=(Figure(cm, "Confusion matrix (test patches)"),) if cm.exists() else (),
                floatfmt=".2f",
            )
        )
    else:
        sections.append(Section("Evaluation", notes=("the evaluate step has not run",)))

    # ---- region map + outlines
    mosaic, cube = output("predict", "mosaic"), output("cube_poiqu", "cube")
    if mosaic is not None and cube is not None:
        fig, stats = _class_map_figure(mosaic, cube, files / "class_map.png")
        sections.append(
            Section(
                "Map of the whole Poiqu region",
                text=(
                    "Prediction of the entire region in overlapping, Hann-blended tiles, over a "
                    "SWIR/NIR/red (B11/B08/B04) false-colour composite, next to the reference "
                    f"labels. Pixel agreement with the reference over the whole region "
                    f"(training patches included): {100 * stats['pixel_agreement']:.2f} % of "
                    f"{stats['pixels']:,} labelled pixels."
                ),
                figures=(Figure(fig, "Class map over a false-colour composite"),),
            )
        )
    ol = records.get("outlines")
    if ol:
        layers = pd.DataFrame.from_dict(ol.get("layers", {}), orient="index")
        layers.index.name = "layer"
        sections.append(
            Section(
                "Outlines",
                text=(
                    f"Class map as Cloud-Optimized GeoTIFF: `{ol['outputs']['cog']}`; polygons "
                    f"(glacier = clean ice + debris, debris, water) with area and mean confidence: "
                    f"`{ol['outputs']['gpkg']}`."
                ),
                tables=(("Outline layers", layers),),
                floatfmt=".3f",
            )
        )

    # ---- calibrated confidence and area change
    from cryonet.report_confidence import area_change_section, confidence_section

    for extra in (
        confidence_section(output("evaluate", "folder"), output("predict", "mosaic"), files),
        area_change_section(output("areas", "folder"), records.get("areas")),
    ):
        if extra is not None:
            sections.append(extra)

    # ---- importance
    imp_csv, imp_fig = output("importance", "csv"), output("importance", "figure")
    if imp_csv is not None and imp_csv.exists():
        df = pd.read_csv(imp_csv, index_col="band")
        cols = {
            "miou_drop_mean": "Δ mIoU",
            "miou_drop_std": "± (mIoU)",
            "accuracy_drop_mean": "Δ accuracy",
            "iou_clean_ice_drop_mean": "Δ IoU clean ice",
            "iou_debris_drop_mean": "Δ IoU debris",
        }
        top = df[[c for c in cols if c in df]].head(15).rename(columns=cols) * 100.0
        rec = records["importance"]
        sections.append(
            Section(
                "Permutation channel importance",
                text=(
                    "Each band is shuffled across the test patches (distribution kept, spatial "
                    f"meaning destroyed) and the model re-evaluated; {rec.get('n_samples')} test "
                    f"patches, {config.get('importance_repeats') if config else '?'} repeats, "
                    "drops in percentage points (mean, and standard deviation over repeats). "
                    "The paper (real data) found InSAR coherence, tasseled-cap wetness and PC1 "
                    "most important overall, and TC wetness and coherence for debris."
                ),
                tables=(("Top 15 bands by mIoU drop (percentage points)", top),),
                figures=(Figure(imp_fig, "Top-15 bands (layout of the paper's Fig. 10)"),)
                if imp_fig and imp_fig.exists()
                else (),
                floatfmt=".2f",
            )
        )

    # ---- transfer
    tcsv = output("transfer", "csv")
    if tcsv is not None and tcsv.exists():
        df = pd.read_csv(tcsv, index_col="class") * 100.0
        rec = records["transfer"]
        paper = pd.DataFrame([PAPER_MONTBLANC_AFTER], index=pd.Index(["paper (real Mont Blanc)"]))
        sections.append(
            Section(
                "Transfer to Mont Blanc",
                text=(
                    "The Poiqu checkpoint applied to the synthetic Mont Blanc cube, then "
                    f"fine-tuned for {config.get('finetune_iterations') if config else '?'} "
                    "iterations on Mont Blanc training patches and evaluated again on the same "
                    f"Mont Blanc test patches: mIoU {100 * float(rec['miou_before']):.2f} % -> "
                    f"{100 * float(rec['miou_after']):.2f} %, overall accuracy "
                    f"{100 * float(rec['oa_before']):.2f} % -> "
                    f"{100 * float(rec['oa_after']):.2f} %."
                ),
                tables=(
                    ("Before / after fine-tuning (%)", df),
                    ("The paper's Mont Blanc result after fine-tuning (%)", paper),
                ),
                floatfmt=".2f",
            )
        )
    if html:
        import importlib.util

        if importlib.util.find_spec("markdown") is None:
            import warnings

            warnings.warn(
                "the 'markdown' package is not installed: writing report.md only", stacklevel=2
            )
            html = False
    path = write_report(
        out / "report.md", "glacierstack + cryonet demo report", sections, html=html
    )
    return path


def _best_val_text(miou: float | None) -> str:
    """Sentence on the best validation mIoU (none measured without validation patches)."""
    if miou is None:
        return "no validation patches, so the last epoch is kept."
    return f"best validation mIoU {100 * float(miou):.2f} %."
