"""Report sections on calibrated confidence and per-glacier area change (used by the demo).

:func:`plot_confidence_map` draws a mosaic's confidence layers; :func:`confidence_section`
combines them with the evaluation's calibration report (ECE before / after temperature
scaling, reliability diagram); :func:`area_change_section` shows ``cryonet areas`` output next
to the same measurement on the reference labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cryonet._plot import subplots
from cryonet.report import Figure, Section

__all__ = ["area_change_section", "confidence_section", "plot_confidence_map"]


def plot_confidence_map(mosaic: str | Path, path: str | Path, *, max_pixels: int = 900) -> Path:
    """Two panels: maximum class probability and normalised entropy of a mosaic."""
    from cryonet.infer import open_mosaic

    ds = open_mosaic(mosaic)
    h, w = ds.sizes["y"], ds.sizes["x"]
    step = max(1, int(np.ceil(max(h, w) / max_pixels)))
    sl = {"y": slice(None, None, step), "x": slice(None, None, step)}
    nodata = ds["classes"].isel(sl).values == int(ds.attrs.get("nodata", 255))
    fig, axes = subplots(1, 2, figsize=(10, 4.6))
    for ax, name, cmap, title in (
        (axes[0], "confidence", "viridis", "confidence (max probability)"),
        (axes[1], "entropy", "magma", "normalised entropy"),
    ):
        v = np.where(nodata, np.nan, ds[name].isel(sl).values / 255.0)
        im = ax.imshow(v, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _has_confidence(mosaic: Path) -> bool:
    """Whether the mosaic has the confidence layers (stores written before them do not)."""
    from cryonet.infer import open_mosaic

    return "confidence" in open_mosaic(mosaic).data_vars


def confidence_section(
    evaluate_folder: Path | None, mosaic: Path | None, files: Path
) -> Section | None:
    """Calibration (ECE before/after, reliability diagram) and the confidence map."""
    import pandas as pd

    figures, tables, text = [], [], []
    cal_path = evaluate_folder / "calibration.json" if evaluate_folder else None
    if evaluate_folder is not None and cal_path is not None and cal_path.exists():
        cal = json.loads(cal_path.read_text())
        df = pd.DataFrame(
            {
                "ECE (%)": [100 * cal["ece_uncalibrated"], 100 * cal["ece_calibrated"]],
                "NLL": [cal["nll_uncalibrated"], cal["nll_calibrated"]],
            },
            index=pd.Index(["T = 1", f"T = {cal['temperature']:.3f}"], name="probabilities"),
        )
        tables.append((f"Test patches ({cal['pixels']:,} pixels)", df))
        text.append(
            "Temperature scaling was fitted on the validation patches at the end of training; "
            "the table measures it on the test patches (expected calibration error, 15 bins)."
        )
        rel = evaluate_folder / "reliability.png"
        if rel.exists():
            figures.append(Figure(rel, "Reliability diagram (test patches)"))
    if mosaic is not None and mosaic.exists() and _has_confidence(mosaic):
        fig = plot_confidence_map(mosaic, files / "confidence_map.png")
        figures.append(Figure(fig, "Per-pixel confidence of the whole-region map"))
        text.append(
            "Every mosaic carries the calibrated maximum probability and the normalised entropy "
            "of each pixel (uint8 layers `confidence` and `entropy`)."
        )
    if not figures and not tables:
        return None
    return Section(
        "Calibrated confidence",
        text=" ".join(text),
        tables=tuple(tables),
        figures=tuple(figures),
        floatfmt=".3f",
    )


def area_change_section(areas_folder: Path | None, record: dict[str, Any] | None) -> Section | None:
    """Per-glacier area change table (largest glaciers) with the reference change."""
    import pandas as pd

    if areas_folder is None or not (areas_folder / "areas.csv").exists() or not record:
        return None
    a, b = record["labels"]
    df = pd.read_csv(areas_folder / "areas.csv", index_col=0)
    ref = pd.read_csv(areas_folder / "reference_areas.csv", index_col=0)
    top = df.sort_values(f"area_km2_{a}", ascending=False).head(10)
    table = pd.DataFrame(
        {
            f"area {a} (km²)": top[f"area_km2_{a}"],
            f"area {b} (km²)": top[f"area_km2_{b}"],
            "change (km²)": top["change_km2"],
            "interval low": top["change_low_km2"],
            "interval high": top["change_high_km2"],
            "reference change (km²)": ref.loc[top.index, "change_km2"],
        }
    )
    totals = pd.DataFrame(
        {
            f"area {a} (km²)": [df[f"area_km2_{a}"].sum(), ref[f"area_km2_{a}"].sum()],
            f"area {b} (km²)": [df[f"area_km2_{b}"].sum(), ref[f"area_km2_{b}"].sum()],
            "change (km²)": [df["change_km2"].sum(), ref["change_km2"].sum()],
            "debris change (km²)": [df["debris_change_km2"].sum(), ref["debris_change_km2"].sum()],
        },
        index=pd.Index(["mapped (CryoNet)", "reference labels"], name="all glaciers"),
    )
    fig = areas_folder / "area_change.png"
    return Section(
        f"Glacier area change {a} -> {b}",
        text=(
            f"The synthetic Poiqu region generated again for {b} (same terrain, ELA raised, "
            "termini retreated), mapped with the same checkpoint, and attributed to the "
            f"{a} inventory outlines (RGI-like ids, {record.get('buffer_m', 0):g} m buffer) by "
            "`cryonet areas`. Interval: expected commission/omission from the calibrated "
            "probabilities (docs/inference.md). The reference is the same measurement on the "
            "synthetic truth labels of both years."
        ),
        tables=(("All glaciers", totals), ("The 10 largest glaciers", table)),
        figures=(Figure(fig, "Mapped area per glacier, both years"),) if fig.exists() else (),
        floatfmt=".3f",
    )
