"""``cryonet train``, ``cryonet evaluate`` and ``cryonet compare``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from cryonet.cli import app
from cryonet.cli.predict import ENSEMBLE_HELP, TTA_HELP

_CONFIG_HELP = "Training config: a YAML file or a bundled preset ('paper', 'cpu')."


@app.command()
def train(
    cube: Annotated[str, typer.Option(help="Zarr feature cube (glacierstack build).")],
    out: Annotated[str, typer.Option(help="Run directory, path or URL (resumed).")],
    model: Annotated[
        str | None, typer.Option(help="Model or preset name (overrides the config).")
    ] = None,
    config: Annotated[str, typer.Option(help=_CONFIG_HELP)] = "paper",
    encoder: Annotated[
        str | None, typer.Option(help="Encoder name (overrides the config).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Patches per step (per process).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    patch_size: Annotated[int | None, typer.Option(help="Patch edge in pixels.")] = None,
    split: Annotated[
        str | None, typer.Option(help="'random' or 'blocked' split (overrides the config).")
    ] = None,
    split_file: Annotated[
        str | None,
        typer.Option(help="Reuse this split.json, path or URL (e.g. from another run)."),
    ] = None,
    split_areas: Annotated[
        str | None,
        typer.Option(
            help="Spatial split from areas: a vector file with a 'split' column "
            "(train/val/test), or TRAIN/TEST halves such as west/east (see cryonet split)."
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    num_workers: Annotated[int | None, typer.Option(help="DataLoader worker processes.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    resume: Annotated[bool, typer.Option(help="Resume from OUT if it holds a run.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a model on a cube with the paper's recipe (or another config).

    Run under ``torchrun --nproc_per_node N`` for DistributedDataParallel training.
    """
    from cryonet.training import load_config
    from cryonet.training import train as run

    cfg = load_config(
        config,
        model=model,
        encoder=encoder,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patch_size=patch_size,
        split=split,
        device=device,
        num_workers=num_workers,
        seed=seed,
        threads=threads,
    )
    if model is not None and encoder is None:
        cfg = replace(cfg, encoder=None)  # the model's/preset's default encoder
    if split_areas is not None:
        if split_file is not None:
            raise typer.BadParameter("give either --split-file or --split-areas, not both")
        split_file = _area_split(cube, out, split_areas, cfg.patch_size)
    result = run(cube, out, cfg, split=split_file, resume=resume, progress=progress)
    miou = result.best_val_miou
    score = "no validation patches" if miou is None else f"val mIoU {miou:.4f}"
    typer.echo(f"best checkpoint: {result.best_checkpoint} ({score})")


@app.command()
def evaluate(
    checkpoint: Annotated[
        str, typer.Option(help="Checkpoint (.pt), path or URL, e.g. RUN/checkpoints/best.pt")
    ],
    cube: Annotated[str, typer.Option(help="The Zarr cube the split refers to.")],
    split: Annotated[
        str, typer.Option(help="split.json or the run directory holding it (path or URL).")
    ],
    out: Annotated[
        str, typer.Option(help="Folder for tables (Markdown + CSV) and figures, path or URL.")
    ],
    subset: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    name: Annotated[str | None, typer.Option(help="Row name in the tables.")] = None,
    batch_size: Annotated[int, typer.Option(help="Patches per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    tta: Annotated[str | None, typer.Option(help=TTA_HELP)] = None,
    ensemble: Annotated[list[str] | None, typer.Option(help=ENSEMBLE_HELP)] = None,
) -> None:
    """Evaluate a checkpoint on the test patches: paper Tables I-III and a confusion matrix.

    Also writes the expected calibration error before/after temperature scaling
    (calibration.json) and a reliability diagram (reliability.png).
    """
    from cryonet.evaluation import evaluate as run

    m = run(
        checkpoint,
        cube,
        split,
        subset=subset,
        out=out,
        name=name,
        batch_size=batch_size,
        device=device,
        ensemble=list(ensemble or []),
        tta=tta,
    )
    typer.echo(
        f"{subset}: mIoU {100 * m.miou:.2f} %, overall accuracy {100 * m.overall_accuracy:.2f} %"
        f" ({m.total_pixels:,} pixels); tables in {out}"
    )


@app.command()
def compare(
    cube: Annotated[str, typer.Option(help="Zarr feature cube.")],
    out: Annotated[
        str, typer.Option(help="Output folder (one run per model + tables), path or URL.")
    ],
    models: Annotated[
        list[str],
        typer.Option("--model", help="Model/preset to compare; repeat the option."),
    ],
    config: Annotated[str, typer.Option(help=_CONFIG_HELP)] = "paper",
    epochs: Annotated[int | None, typer.Option(help="Number of epochs.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="Comma-separated training seeds, e.g. 0,1,2 (mean ± std table)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    baseline: Annotated[
        bool, typer.Option(help="Add the per-pixel random-forest baseline on the same split.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train and evaluate several models on the identical split; write the comparison table."""
    from cryonet.evaluation import compare as run
    from cryonet.training import load_config

    cfg = load_config(config, epochs=epochs, device=device, threads=threads)
    try:
        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    except ValueError as err:
        msg = f"not a list of integers: {seeds!r}"
        raise typer.BadParameter(msg, param_hint="--seeds") from err
    results = run(cube, models, out, cfg, progress=progress, seeds=seed_list, baseline=baseline)
    for name, m in results.items():
        typer.echo(
            f"{name}: mIoU {100 * m.miou:.2f} %, overall accuracy {100 * m.overall_accuracy:.2f} %"
        )
    typer.echo(f"comparison table: {out.rstrip('/')}/comparison.md")


def _area_split(cube: str, out: str, areas: str, patch_size: int) -> str:
    """Write the split of ``--split-areas`` next to the run (``OUT/split-areas.json``).

    ``out`` (the run folder) and an areas file may be local paths or URLs.
    """
    from cryonet.splitareas import split_from_areas
    from glacierstack import storage

    if storage.is_url(areas) or Path(areas).exists():
        spec = {"all": areas}
    else:
        train_area, _, test_area = areas.partition("/")
        spec = {"train": train_area} | ({"test": test_area} if test_area else {})
    sp = split_from_areas(cube, spec, patch_size)
    path = f"{str(out).rstrip('/')}/split-areas.json"
    with storage.staged_output(path) as local:
        local.parent.mkdir(parents=True, exist_ok=True)
        sp.to_json(local)
    return path
