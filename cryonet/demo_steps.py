"""The demo's steps and :data:`STEPS`, their order, dependencies and parameters.

One function per step (synthetic regions, cubes, training, evaluation, prediction, areas,
outlines, importance, transfer, report); :func:`cryonet.demo.run_demo` runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryonet.demo_config import DemoConfig, DemoContext, Step
from glacierstack import storage

__all__ = ["STEPS"]


# --------------------------------------------------------------------------- step functions
def _rel(ctx: DemoContext, path: Path | str) -> str:
    return Path(path).resolve().relative_to(ctx.out.resolve()).as_posix()


def _synth(preset: str, later: bool = False) -> Callable[[DemoContext], dict[str, Any]]:
    def run(ctx: DemoContext) -> dict[str, Any]:
        from glacierstack.synthetic import generate_region

        cfg = ctx.config
        size = cfg.size_km if preset == "poiqu" else cfg.resolved_montblanc_km()
        # no finished record: whatever is in the folder is stale or partial, so replace it
        region = generate_region(
            preset,
            ctx.out / "regions" / (f"{preset}_later" if later else preset),
            size_km=size,
            seed=cfg.seed,
            overwrite=True,
            progress=ctx.progress,
            year=cfg.later_year if later else None,
        )
        return {
            "outputs": {"catalog": _rel(ctx, region.catalog_path)},
            "grid": region.grid.to_attrs(),
            "datetime": str(region.datetime),
        }

    return run


def _cube(preset: str) -> Callable[[DemoContext], dict[str, Any]]:  # preset or "poiqu_later"
    def run(ctx: DemoContext) -> dict[str, Any]:
        from glacierstack.grid import Grid
        from glacierstack.pipeline import build_cube
        from glacierstack.store import cube_status

        rec = ctx.records[f"synth_{preset}"]
        path = ctx.out / "cubes" / f"{preset}.zarr"
        # an unfinished store of the same build is resumed by build_cube; a finished one
        # (interrupted just before the step record was written) is reused
        if cube_status(path) != "complete":
            build_cube(
                ctx.output(f"synth_{preset}", "catalog"),
                path,
                grid=Grid.from_attrs(rec["grid"]),
                datetime=rec["datetime"],
                progress=ctx.progress,
            )
        return {"outputs": {"cube": _rel(ctx, path)}}

    return run


def _train_config(cfg: DemoConfig) -> Any:
    from cryonet.training import load_config

    return load_config(
        cfg.train_preset, seed=cfg.seed, device=cfg.device, **dict(cfg.train_overrides)
    )


def _run_train(ctx: DemoContext) -> dict[str, Any]:
    from cryonet.training import train

    config = _train_config(ctx.config)
    run_dir = ctx.out / "train"
    res = train(ctx.output("cube_poiqu", "cube"), run_dir, config, progress=ctx.progress)
    last = res.history[-1] if res.history else {}
    return {
        "outputs": {
            "run": _rel(ctx, run_dir),
            "checkpoint": _rel(ctx, res.best_checkpoint),
            "split": _rel(ctx, run_dir / "split.json"),
            "curves": _rel(ctx, run_dir / "curves.png"),
        },
        "best_val_miou": res.best_val_miou,
        "epochs": len(res.history),
        "final_train_loss": last.get("train_loss"),
    }


def _run_evaluate(ctx: DemoContext) -> dict[str, Any]:
    from cryonet.evaluation import evaluate

    out = ctx.out / "evaluate"
    m = evaluate(
        ctx.output("train", "checkpoint"),
        ctx.output("cube_poiqu", "cube"),
        ctx.output("train", "split"),
        out=out,
        name="CryoNet (CPU preset)",
        device=ctx.config.device,
    )
    return {
        "outputs": {"folder": _rel(ctx, out)},
        "miou": m.miou,
        "overall_accuracy": m.overall_accuracy,
        "iou": dict(zip(m.class_names, [float(v) for v in m.iou], strict=True)),
    }


def _predict(key: str) -> Callable[[DemoContext], dict[str, Any]]:
    def run(ctx: DemoContext) -> dict[str, Any]:
        from cryonet.infer import predict

        cfg = ctx.config
        path = ctx.out / ("predict" if key == "poiqu" else "predict_later") / f"{key}.zarr"
        predict(
            ctx.output("train", "checkpoint"),
            ctx.output(f"cube_{key}", "cube"),
            path,
            tile_size=cfg.tile_size,
            overlap=cfg.overlap,
            device=cfg.device,
            progress=ctx.progress,
        )
        return {"outputs": {"mosaic": _rel(ctx, path)}}

    return run


def _run_areas(ctx: DemoContext) -> dict[str, Any]:
    from cryonet.areas import AreaOptions, area_change, labels_as_mosaic

    cfg = ctx.config
    folder = ctx.out / "areas"
    catalog = ctx.output("synth_poiqu", "catalog")
    inventory = next(catalog.parent.glob("synthetic-truth/*/glacier_outlines.gpkg"))
    year0 = int(str(ctx.records["synth_poiqu"]["datetime"])[:4])  # "2018-09-20/..."
    labels = [str(year0), str(cfg.later_year)]
    opts = AreaOptions(buffer_m=cfg.area_buffer_m)
    mosaics = [ctx.output("predict", "mosaic"), ctx.output("predict_later", "mosaic")]
    df = area_change(mosaics, inventory, labels, folder, opts, overwrite=True)
    truth = [labels_as_mosaic(ctx.output(k, "cube")) for k in ("cube_poiqu", "cube_poiqu_later")]
    ref = area_change(truth, inventory, labels, None, opts)
    ref.to_csv(folder / "reference_areas.csv", float_format="%.6f")
    return {
        "outputs": {"folder": _rel(ctx, folder), "csv": _rel(ctx, folder / "areas.csv")},
        "labels": labels,
        "buffer_m": cfg.area_buffer_m,
        "glaciers": len(df),
        "change_km2": float(df["change_km2"].sum()),
        "reference_change_km2": float(ref["change_km2"].sum()),
    }


def _run_outlines(ctx: DemoContext) -> dict[str, Any]:
    import geopandas as gpd
    import pyogrio

    from cryonet.export import export_cog, export_polygons

    folder = ctx.out / "outlines"
    mosaic = ctx.output("predict", "mosaic")
    cog = export_cog(mosaic, folder / "poiqu_classes.tif", overwrite=True)
    gpkg = export_polygons(mosaic, folder / "poiqu_outlines.gpkg", overwrite=True)
    summary = {}
    for layer in pyogrio.list_layers(gpkg)[:, 0]:
        df = gpd.read_file(gpkg, layer=str(layer))
        summary[str(layer)] = {
            "polygons": len(df),
            "area_km2": float(df["area_km2"].sum()) if len(df) else 0.0,
            "mean_confidence": (
                float((df["mean_confidence"] * df["area_km2"]).sum() / df["area_km2"].sum())
                if len(df) and df["area_km2"].sum() > 0
                else float("nan")
            ),
        }
    return {"outputs": {"cog": _rel(ctx, cog), "gpkg": _rel(ctx, gpkg)}, "layers": summary}


def _run_importance(ctx: DemoContext) -> dict[str, Any]:
    from cryonet.permutation import importance_from_checkpoint

    cfg = ctx.config
    folder = ctx.out / "importance"
    res = importance_from_checkpoint(
        ctx.output("train", "checkpoint"),
        ctx.output("cube_poiqu", "cube"),
        folder,
        split=ctx.output("train", "split"),
        max_samples=cfg.importance_max_samples,
        repeats=cfg.importance_repeats,
        seed=cfg.seed,
        device=cfg.device,
        progress=ctx.progress,
    )
    return {
        "outputs": {
            "csv": _rel(ctx, folder / "importance.csv"),
            "figure": _rel(ctx, folder / "importance.png"),
        },
        "top_miou": res.ranking("miou", top=5),
        "top_debris": res.ranking("iou_debris", top=5),
        "n_samples": res.n_samples,
    }


def _run_transfer(ctx: DemoContext) -> dict[str, Any]:
    from cryonet.transfer import FinetuneConfig, finetune

    cfg = ctx.config
    folder = ctx.out / "transfer"
    config = FinetuneConfig(
        iterations=cfg.finetune_iterations,
        patch_size=int(_train_config(cfg).patch_size),
        batch_size=cfg.finetune_batch_size,
        lr=cfg.finetune_lr,
        seed=cfg.seed,
        device=cfg.device,
    )
    res = finetune(
        ctx.output("train", "checkpoint"),
        ctx.output("cube_montblanc", "cube"),
        folder,
        config,
        progress=ctx.progress,
    )
    return {
        "outputs": {
            "csv": _rel(ctx, res.files["csv"]),
            "markdown": _rel(ctx, res.files["markdown"]),
            "summary": _rel(ctx, res.files["summary"]),
        },
        "miou_before": res.before.miou,
        "miou_after": res.after.miou,
        "oa_before": res.before.overall_accuracy,
        "oa_after": res.after.overall_accuracy,
    }


def _run_report(ctx: DemoContext) -> dict[str, Any]:
    from cryonet.demo_report import build_demo_report

    for stale in ("report.md", "report.html"):
        storage.discard(ctx.out / stale)
    path = build_demo_report(ctx.out, ctx.records, config=asdict(ctx.config), html=ctx.config.html)
    outputs = {"markdown": _rel(ctx, path)}
    if path.with_suffix(".html").exists():
        outputs["html"] = _rel(ctx, path.with_suffix(".html"))
    return {"outputs": outputs}


def _p(*names: str) -> Callable[[DemoConfig], dict[str, Any]]:
    def params(cfg: DemoConfig) -> dict[str, Any]:
        d = asdict(cfg)
        d["montblanc_size_km"] = cfg.resolved_montblanc_km()
        return {n: d[n] for n in names}

    return params


def _train_params(cfg: DemoConfig) -> dict[str, Any]:
    return {"train_config": _train_config(cfg).to_dict()}


STEPS: tuple[Step, ...] = (
    Step("synth_poiqu", "synthetic Poiqu region -> COGs + STAC catalog", (),
         _p("size_km", "seed"), _synth("poiqu"), "regions/poiqu"),
    Step("synth_montblanc", "synthetic Mont Blanc region -> COGs + STAC catalog", (),
         _p("montblanc_size_km", "seed"), _synth("montblanc"), "regions/montblanc"),
    Step("cube_poiqu", "Poiqu catalog -> 30-layer Zarr cube with labels", ("synth_poiqu",),
         _p(), _cube("poiqu"), "cubes/poiqu.zarr"),
    Step("cube_montblanc", "Mont Blanc catalog -> 30-layer Zarr cube with labels",
         ("synth_montblanc",), _p(), _cube("montblanc"), "cubes/montblanc.zarr"),
    Step("synth_poiqu_later", "the Poiqu region in a later year (retreated glaciers)", (),
         _p("size_km", "seed", "later_year"), _synth("poiqu", later=True),
         "regions/poiqu_later"),
    Step("cube_poiqu_later", "later Poiqu catalog -> Zarr cube", ("synth_poiqu_later",),
         _p(), _cube("poiqu_later"), "cubes/poiqu_later.zarr"),
    Step("train", "train CryoNet (CPU preset) on Poiqu", ("cube_poiqu",),
         _train_params, _run_train, "train"),
    Step("evaluate", "evaluate on the Poiqu test patches", ("train",),
         _p("device"), _run_evaluate, "evaluate"),
    Step("predict", "predict the whole Poiqu region (tiled, Hann-blended)", ("train",),
         _p("tile_size", "overlap", "device"), _predict("poiqu"), "predict"),
    Step("predict_later", "predict the later Poiqu region", ("train", "cube_poiqu_later"),
         _p("tile_size", "overlap", "device"), _predict("poiqu_later"), "predict_later"),
    Step("areas", "per-glacier area change between the two years",
         ("predict", "predict_later", "synth_poiqu", "cube_poiqu", "cube_poiqu_later"),
         _p("area_buffer_m"), _run_areas, "areas"),
    Step("outlines", "class-map COG + outline polygons", ("predict",),
         _p(), _run_outlines, "outlines"),
    Step("importance", "permutation channel importance", ("train",),
         _p("importance_repeats", "importance_max_samples", "seed", "device"),
         _run_importance, "importance"),
    Step("transfer", "transfer to Mont Blanc: evaluate, fine-tune, evaluate",
         ("train", "cube_montblanc"),
         _p("finetune_iterations", "finetune_batch_size", "finetune_lr", "seed", "device"),
         _run_transfer, "transfer"),
    Step("report", "write the report",
         ("evaluate", "outlines", "importance", "transfer", "areas"),
         _p("html"), _run_report, "report_files"),
)  # fmt: skip
"""The demo's steps, in execution order (dependencies come first)."""
