"""The demo's report: one section per demo step, built from the step records.

Reads what :func:`cryonet.demo.run_demo` wrote (step records, tables, figures) and assembles
typed :class:`~cryonet.report.Section` records for :func:`cryonet.report.write_report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cryonet.plots import FALSE_COLOUR_BANDS, false_colour_composite, plot_class_map
from cryonet.report import Figure, Section, write_report
from glacierstack.classes import NODATA_LABEL

__all__ = ["build_demo_report"]


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
    ctx = _Ctx(Path(out), records, config or {})
    ctx.files.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = [_overview(ctx)]
    for build in (_training, _evaluation, _region_map, _outlines):
        sections += build(ctx)
    from cryonet.report_confidence import area_change_section, confidence_section

    for extra in (
        confidence_section(
            ctx.output("evaluate", "folder"), ctx.output("predict", "mosaic"), ctx.files
        ),
        area_change_section(ctx.output("areas", "folder"), records.get("areas")),
    ):
        if extra is not None:
            sections.append(extra)
    sections += _importance(ctx) + _transfer(ctx)
    return write_report(
        ctx.out / "report.md", "glacierstack + cryonet demo report", sections, html=html
    )


@dataclass(frozen=True)
class _Ctx:
    """What every section builder reads: the output folder, step records and demo config."""

    out: Path
    records: dict[str, dict[str, Any]]
    config: dict[str, Any]

    @property
    def files(self) -> Path:
        return self.out / "report_files"

    def output(self, step: str, key: str) -> Path | None:
        rec = self.records.get(step)
        if not rec:
            return None
        rel = rec.get("outputs", {}).get(key)
        return self.out / str(rel) if rel else None


def _overview(ctx: _Ctx) -> Section:
    import pandas as pd

    nan = float("nan")
    rows = [
        (
            name,
            float(rec.get("seconds", nan)),
            float(rec.get("cpu_seconds", nan)),
            str(rec.get("finished", ""))[:19],
        )
        for name, rec in ctx.records.items()
    ]
    timing = pd.DataFrame(
        rows, columns=["step", "wall seconds", "CPU seconds (main process)", "finished (UTC)"]
    ).set_index("step")
    cfg_text = ""
    if ctx.config:
        cfg_text = "Configuration: " + ", ".join(
            f"`{k}={v}`" for k, v in ctx.config.items() if k != "train_overrides" or v
        )
    return Section(
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


def _training(ctx: _Ctx) -> list[Section]:
    import yaml

    tr = ctx.records.get("train")
    if not tr:
        return []
    curves = ctx.output("train", "curves")
    cfg_path = ctx.out / str(tr["outputs"]["run"]) / "config.yaml"
    tcfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
    recipe = ", ".join(
        f"{k} {tcfg[k]}"
        for k in ("model", "patch_size", "batch_size", "epochs", "lr", "scheduler")
        if k in tcfg
    )
    text = (
        f"Recipe: {recipe}. {tr.get('epochs')} epochs run; "
        + _best_val_text(tr.get("best_val_miou"))
        + f" Checkpoint: `{tr['outputs']['checkpoint']}`."
    )
    figures = (Figure(curves, "Training curves"),) if curves and curves.exists() else ()
    return [Section("Training (CPU preset)", text=text, figures=figures)]


def _evaluation(ctx: _Ctx) -> list[Section]:
    import pandas as pd

    ev = ctx.output("evaluate", "folder")
    if ev is None:
        return [Section("Evaluation", notes=("the evaluate step has not run",))]
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
    tables.append(("The paper's CryoNet IoU (%) on the real Poiqu Basin, for orientation", paper))
    cm = ev / "confusion_matrix.png"
    return [
        Section(
            "Evaluation on the Poiqu test patches",
            tables=tuple(tables),
            figures=(Figure(cm, "Confusion matrix (test patches)"),) if cm.exists() else (),
            floatfmt=".2f",
        )
    ]


def _region_map(ctx: _Ctx) -> list[Section]:
    mosaic, cube = ctx.output("predict", "mosaic"), ctx.output("cube_poiqu", "cube")
    if mosaic is None or cube is None:
        return []
    fig, stats = _class_map_figure(mosaic, cube, ctx.files / "class_map.png")
    text = (
        "Prediction of the entire region in overlapping, Hann-blended tiles, over a "
        "SWIR/NIR/red (B11/B08/B04) false-colour composite, next to the reference "
        f"labels. Pixel agreement with the reference over the whole region "
        f"(training patches included): {100 * stats['pixel_agreement']:.2f} % of "
        f"{stats['pixels']:,} labelled pixels."
    )
    figure = Figure(fig, "Class map over a false-colour composite")
    return [Section("Map of the whole Poiqu region", text=text, figures=(figure,))]


def _outlines(ctx: _Ctx) -> list[Section]:
    import pandas as pd

    ol = ctx.records.get("outlines")
    if not ol:
        return []
    layers = pd.DataFrame.from_dict(ol.get("layers", {}), orient="index")
    layers.index.name = "layer"
    text = (
        f"Class map as Cloud-Optimized GeoTIFF: `{ol['outputs']['cog']}`; polygons "
        f"(glacier = clean ice + debris, debris, water) with area and mean confidence: "
        f"`{ol['outputs']['gpkg']}`."
    )
    return [Section("Outlines", text=text, tables=(("Outline layers", layers),), floatfmt=".3f")]


def _importance(ctx: _Ctx) -> list[Section]:
    import pandas as pd

    imp_csv, imp_fig = ctx.output("importance", "csv"), ctx.output("importance", "figure")
    if imp_csv is None or not imp_csv.exists():
        return []
    df = pd.read_csv(imp_csv, index_col="band")
    cols = {
        "miou_drop_mean": "Δ mIoU",
        "miou_drop_std": "± (mIoU)",
        "accuracy_drop_mean": "Δ accuracy",
        "iou_clean_ice_drop_mean": "Δ IoU clean ice",
        "iou_debris_drop_mean": "Δ IoU debris",
    }
    top = df[[c for c in cols if c in df]].head(15).rename(columns=cols) * 100.0
    rec = ctx.records["importance"]
    text = (
        "Each band is shuffled across the test patches (distribution kept, spatial "
        f"meaning destroyed) and the model re-evaluated; {rec.get('n_samples')} test "
        f"patches, {ctx.config.get('importance_repeats', '?')} repeats, "
        "drops in percentage points (mean, and standard deviation over repeats). "
        "The paper (real data) found InSAR coherence, tasseled-cap wetness and PC1 "
        "most important overall, and TC wetness and coherence for debris."
    )
    figures = (
        (Figure(imp_fig, "Top-15 bands (layout of the paper's Fig. 10)"),)
        if imp_fig and imp_fig.exists()
        else ()
    )
    return [
        Section(
            "Permutation channel importance",
            text=text,
            tables=(("Top 15 bands by mIoU drop (percentage points)", top),),
            figures=figures,
            floatfmt=".2f",
        )
    ]


def _transfer(ctx: _Ctx) -> list[Section]:
    import pandas as pd

    tcsv = ctx.output("transfer", "csv")
    if tcsv is None or not tcsv.exists():
        return []
    df = pd.read_csv(tcsv, index_col="class") * 100.0
    rec = ctx.records["transfer"]
    paper = pd.DataFrame([PAPER_MONTBLANC_AFTER], index=pd.Index(["paper (real Mont Blanc)"]))
    text = (
        "The Poiqu checkpoint applied to the synthetic Mont Blanc cube, then "
        f"fine-tuned for {ctx.config.get('finetune_iterations', '?')} "
        "iterations on Mont Blanc training patches and evaluated again on the same "
        f"Mont Blanc test patches: mIoU {100 * float(rec['miou_before']):.2f} % -> "
        f"{100 * float(rec['miou_after']):.2f} %, overall accuracy "
        f"{100 * float(rec['oa_before']):.2f} % -> "
        f"{100 * float(rec['oa_after']):.2f} %."
    )
    tables = (
        ("Before / after fine-tuning (%)", df),
        ("The paper's Mont Blanc result after fine-tuning (%)", paper),
    )
    return [Section("Transfer to Mont Blanc", text=text, tables=tables, floatfmt=".2f")]


def _best_val_text(miou: float | None) -> str:
    """Sentence on the best validation mIoU (none measured without validation patches)."""
    if miou is None:
        return "no validation patches, so the last epoch is kept."
    return f"best validation mIoU {100 * float(miou):.2f} %."
