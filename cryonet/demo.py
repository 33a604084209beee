"""The end-to-end demo: two synthetic regions to one report, offline, re-runnable.

``run_demo(out)`` runs the whole pipeline of the toolkit on the embedded synthetic data:

==============  ===================================================================
step            what it does (output under ``out``)
==============  ===================================================================
synth_poiqu     synthetic Poiqu-like region: COGs + static STAC catalog (``regions/poiqu``)
synth_montblanc the same for the Mont Blanc-like region (``regions/montblanc``)
cube_poiqu      catalog -> lazy 30-layer stack -> Zarr cube with labels (``cubes/poiqu.zarr``)
cube_montblanc  the same for Mont Blanc (``cubes/montblanc.zarr``)
train           CryoNet, CPU preset, on Poiqu patches (``train/``: split, checkpoints, curves)
evaluate        paper-style tables + confusion matrix on the test patches (``evaluate/``)
predict         the whole Poiqu region in Hann-blended tiles (``predict/poiqu.zarr``)
outlines        class-map COG + glacier/debris/lake polygons (``outlines/``)
importance      permutation channel importance (``importance/``: CSV + Fig.-10-style chart)
transfer        Mont Blanc before / after a short fine-tuning (``transfer/``)
synth_poiqu_later, cube_poiqu_later, predict_later
                the Poiqu region again in ``later_year`` (retreated glaciers), mapped
areas           per-glacier area change between the years (``areas/``: CSV, GPKG, plot)
report          ``report.md`` (+ ``report.html``; figures in ``report_files/``)
==============  ===================================================================

Every step writes a record ``steps/<step>.json`` when it has finished. A step whose record
exists, whose own parameters are unchanged and whose inputs (the records of the steps it
depends on) are unchanged is skipped, so an interrupted demo continues where it stopped and a
finished one returns at once. ``redo=True`` reruns everything; ``redo=["train"]`` reruns that
step and, because their inputs change, every step after it that depends on it. Steps that were
interrupted half-way resume where their underlying function can (cube writes, training,
prediction) when their parameters are unchanged; a step being redone, or an interrupted step
whose parameters have changed since, starts from an empty folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["STEPS", "DemoConfig", "DemoResult", "Step", "run_demo"]

STEP_DIR = "steps"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and budgets of the demo (defaults: 4 min 42 s measured on 2 cores, docs/demo.md)."""

    size_km: float = 8.0
    """Edge of the square synthetic Poiqu region in km (10 m pixels)."""
    montblanc_size_km: float | None = None
    """Edge of the Mont Blanc region; ``None``: ``min(size_km, 10)`` (it is only used for the
    transfer experiment, which needs far fewer patches than training)."""
    seed: int = 0
    """Seed of the synthetic regions, the split, training and the permutations."""
    train_preset: str = "cpu"
    """Training config (bundled preset or YAML file) of :func:`cryonet.training.load_config`."""
    train_overrides: Mapping[str, Any] = field(default_factory=dict)
    """Options replacing the preset's (e.g. ``{"epochs": 2}``)."""
    tile_size: int = 128
    """Inference tile size (pixels)."""
    overlap: int = 32
    """Inference tile overlap (pixels)."""
    importance_repeats: int = 2
    """Shuffles per band in the permutation importance."""
    importance_max_samples: int | None = 24
    """Test patches used by the importance (``None``: all)."""
    finetune_iterations: int = 60
    """Fine-tuning steps on Mont Blanc."""
    finetune_batch_size: int = 8
    """Patches per fine-tuning step."""
    finetune_lr: float = 2e-4
    """Fine-tuning learning rate."""
    html: bool = True
    """Also write ``report.html``."""
    device: str = "cpu"
    """Torch device for training and inference."""
    later_year: int = 2028
    """Second observation year of the Poiqu region (retreated glaciers) for the area change."""
    area_buffer_m: float = 20.0
    """Buffer around the inventory outlines when attributing pixels to glaciers (m)."""
    torch_threads: int | None = None
    """torch intra-op threads while the demo runs; ``None``: 1 on machines with at most 2 CPU
    cores (measured: with 2 threads next to the data-loader worker, training steps were 3-10x
    slower on a busy 2-core machine), torch's default otherwise."""

    def resolved_montblanc_km(self) -> float:
        """Edge of the Mont Blanc region in km."""
        if self.montblanc_size_km is not None:
            return self.montblanc_size_km
        return min(self.size_km, 10.0)


@dataclass(frozen=True)
class Step:
    """One step of the demo."""

    name: str
    """Step id (record file name, ``redo`` entry)."""
    title: str
    """What is shown while it runs."""
    deps: tuple[str, ...]
    """Steps whose outputs it reads."""
    params: Callable[[DemoConfig], dict[str, Any]]
    """The config values the step depends on (a change reruns the step)."""
    run: Callable[[_Context], dict[str, Any]]
    """Does the work; returns the outputs (paths relative to ``out``) and summary values."""
    folder: str
    """Folder (relative to ``out``) the step writes into; emptied when the step is redone."""


@dataclass(frozen=True)
class _Context:
    out: Path
    config: DemoConfig
    records: dict[str, dict[str, Any]]
    progress: bool

    def output(self, step: str, key: str) -> Path:
        return self.out / self.records[step]["outputs"][key]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` returns."""

    out: Path
    """The output folder."""
    report: Path
    """``report.md``."""
    records: dict[str, dict[str, Any]]
    """The record of every step (outputs, seconds, finished time, key)."""
    ran: tuple[str, ...]
    """Steps that ran in this call (the others were reused)."""
    seconds: float
    """Wall time of this call."""


# --------------------------------------------------------------------------- step functions
def _rel(ctx: _Context, path: Path | str) -> str:
    return Path(path).resolve().relative_to(ctx.out.resolve()).as_posix()


def _synth(preset: str, later: bool = False) -> Callable[[_Context], dict[str, Any]]:
    def run(ctx: _Context) -> dict[str, Any]:
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


def _cube(preset: str) -> Callable[[_Context], dict[str, Any]]:  # preset or "poiqu_later"
    def run(ctx: _Context) -> dict[str, Any]:
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


def _run_train(ctx: _Context) -> dict[str, Any]:
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


def _run_evaluate(ctx: _Context) -> dict[str, Any]:
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


def _predict(key: str) -> Callable[[_Context], dict[str, Any]]:
    def run(ctx: _Context) -> dict[str, Any]:
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


def _run_areas(ctx: _Context) -> dict[str, Any]:
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


def _run_outlines(ctx: _Context) -> dict[str, Any]:
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


def _run_importance(ctx: _Context) -> dict[str, Any]:
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


def _run_transfer(ctx: _Context) -> dict[str, Any]:
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


def _run_report(ctx: _Context) -> dict[str, Any]:
    from cryonet.demo_report import build_demo_report

    for stale in ("report.md", "report.html"):
        (ctx.out / stale).unlink(missing_ok=True)
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


# --------------------------------------------------------------------------- driver
def _key(step: Step, cfg: DemoConfig, records: Mapping[str, Mapping[str, Any]]) -> str:
    doc = {
        "step": step.name,
        "params": step.params(cfg),
        "deps": {d: records[d]["key"] + "@" + records[d]["finished"] for d in step.deps},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    redo: bool | Sequence[str] = False,
    until: str | None = None,
    progress: bool = True,
) -> DemoResult:
    """Run the end-to-end demo (see the module docstring), reusing finished steps.

    Parameters
    ----------
    out
        Output folder (created).
    config
        All options (default :class:`DemoConfig`: the README's demo), e.g.
        ``DemoConfig(size_km=4, train_overrides={"epochs": 2})``.
    redo
        ``True`` reruns every step; a list of step names reruns those (and the steps that
        depend on them); ``False`` reuses every finished, up-to-date step.
    until
        Stop after this step (its dependencies run as needed; later steps do not).
    progress
        Print each step as it starts/finishes and show the steps' progress bars.

    Returns
    -------
    DemoResult

    Raises
    ------
    ValueError
        For unknown step names in ``redo`` or ``until``.
    """
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress, highlight=False)
    t_start = time.perf_counter()
    cfg = config or DemoConfig()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in STEPS]
    redo_set = set(names) if redo is True else set(redo or ())
    bad = sorted(redo_set - set(names)) + ([until] if until and until not in names else [])
    if bad:
        raise ValueError(f"unknown demo step(s) {bad}; steps are {names}")
    wanted = set(names)
    if until is not None:
        wanted, todo = set(), [until]
        by_name = {s.name: s for s in STEPS}
        while todo:
            n = todo.pop()
            if n not in wanted:
                wanted.add(n)
                todo.extend(by_name[n].deps)
    _write_record(out / STEP_DIR / "config.json", asdict(cfg))
    import torch

    threads_before = torch.get_num_threads()
    threads = cfg.torch_threads or (1 if (os.cpu_count() or 1) <= 2 else threads_before)
    torch.set_num_threads(threads)
    try:
        return _run_steps(out, cfg, redo_set, wanted, console, t_start, progress)
    finally:
        torch.set_num_threads(threads_before)


def _run_steps(
    out: Path,
    cfg: DemoConfig,
    redo_set: set[str],
    wanted: set[str],
    console: Any,
    t_start: float,
    progress: bool,
) -> DemoResult:
    records: dict[str, dict[str, Any]] = {}
    ran: list[str] = []
    steps = [s for s in STEPS if s.name in wanted]
    for i, step in enumerate(steps, 1):
        rec_path = out / STEP_DIR / f"{step.name}.json"
        key = _key(step, cfg, records)
        old = _read_record(rec_path)
        head = f"[bold][{i}/{len(steps)}] {step.title}[/bold]"
        if old and old.get("key") == key and step.name not in redo_set:
            records[step.name] = old
            console.print(f"{head} [green]done already[/green] ({old['seconds']:.0f} s, skipped)")
            continue
        started = rec_path.with_suffix(".started")
        unfinished_other = started.exists() and started.read_text().strip() != key
        if old is not None or step.name in redo_set or unfinished_other:
            # stale, redone, or an interrupted run with other parameters: start afresh
            rec_path.unlink(missing_ok=True)
            _clear(out / step.folder)
        elif started.exists():
            console.print(f"{head} resuming an interrupted run")
        started.parent.mkdir(parents=True, exist_ok=True)
        started.write_text(key)
        console.print(f"{head} ...")
        t0, c0 = time.perf_counter(), time.process_time()
        ctx = _Context(out, cfg, records, progress)
        result = step.run(ctx)
        seconds = time.perf_counter() - t0
        record = {
            "step": step.name,
            "key": key,
            "finished": datetime.now(UTC).isoformat(timespec="microseconds"),
            "seconds": seconds,
            "cpu_seconds": time.process_time() - c0,
            **result,
        }
        _write_record(rec_path, record)
        started.unlink(missing_ok=True)
        records[step.name] = record
        ran.append(step.name)
        console.print(f"{head} [green]finished in {seconds:.1f} s[/green]")
    total = time.perf_counter() - t_start
    report = out / records["report"]["outputs"]["markdown"] if "report" in records else out
    console.print(f"[bold]demo finished in {total:.0f} s[/bold] -> {report}")
    return DemoResult(out=out, report=report, records=records, ran=tuple(ran), seconds=total)
