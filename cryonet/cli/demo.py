"""``cryonet demo``, ``cryonet importance`` and ``cryonet finetune``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryonet.cli import app


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (finished steps in it are reused).")],
    redo: Annotated[
        bool, typer.Option(help="Rerun every step instead of reusing finished ones.")
    ] = False,
    redo_step: Annotated[
        list[str] | None,
        typer.Option("--redo-step", help="Rerun this step (and what depends on it); repeatable."),
    ] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this step.")] = None,
    size_km: Annotated[
        float | None, typer.Option(help="Edge of the square synthetic regions in km (default 8).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (CPU preset: 12).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of data, split, training.")] = None,
    device: Annotated[str | None, typer.Option(help="Torch device (default cpu).")] = None,
    html: Annotated[bool, typer.Option(help="Also write report.html.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Run the end-to-end demo on the synthetic Poiqu and Mont Blanc regions.

    Steps: synthetic regions -> STAC catalogs -> cubes -> train (CPU preset) -> evaluate ->
    predict -> outlines -> importance -> transfer -> report. Re-running reuses finished steps.
    """
    from cryonet.demo import STEPS, run_demo

    names = [s.name for s in STEPS]
    for s in (redo_step or []) + ([until] if until else []):
        if s not in names:
            raise typer.BadParameter(f"unknown step {s!r}; steps are {names}")
    from dataclasses import replace

    from cryonet.demo import DemoConfig

    config = DemoConfig(html=html)
    if size_km is not None:
        config = replace(config, size_km=size_km)
    if seed is not None:
        config = replace(config, seed=seed)
    if device is not None:
        config = replace(config, device=device)
    if epochs is not None:
        config = replace(config, train_overrides={"epochs": epochs})
    res = run_demo(
        out, config, redo=True if redo else (redo_step or False), until=until, progress=progress
    )
    typer.echo(str(res.report))


@app.command()
def importance(
    checkpoint: Annotated[str, typer.Option(help="Trained checkpoint (.pt).")],
    cube: Annotated[str, typer.Option(help="Zarr cube with the checkpoint's bands.")],
    out: Annotated[str, typer.Option(help="Folder for importance.csv/.json/.png (path or URL).")],
    split: Annotated[
        str | None,
        typer.Option(help="split.json of the training run (or its run folder): test patches."),
    ] = None,
    patch_size: Annotated[int, typer.Option(help="Patch size when no --split is given.")] = 128,
    repeats: Annotated[int, typer.Option(help="Shuffles per band.")] = 3,
    max_samples: Annotated[
        int | None, typer.Option(help="Use at most this many test patches.")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="'samples' (paper: across patches) or 'pixels'.")
    ] = "samples",
    top: Annotated[int, typer.Option(help="Bands per chart panel.")] = 15,
    seed: Annotated[int, typer.Option(help="Seed of the permutations.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Inference batch size.")] = 8,
    device: Annotated[str, typer.Option(help="Torch device.")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Permutation channel importance (drop in mIoU/accuracy per shuffled band)."""
    from cryonet.permutation import importance_from_checkpoint

    if mode not in ("samples", "pixels"):
        raise typer.BadParameter(f"--mode must be 'samples' or 'pixels', got {mode!r}")
    res = importance_from_checkpoint(
        checkpoint,
        cube,
        out,
        split=split,
        patch_size=patch_size,
        max_samples=max_samples,
        repeats=repeats,
        seed=seed,
        mode=mode,  # type: ignore[arg-type]
        batch_size=batch_size,
        device=device,
        top=top,
        progress=progress,
    )
    typer.echo(f"baseline mIoU {res.baseline['miou']:.4f}, accuracy {res.baseline['accuracy']:.4f}")
    typer.echo("most important (mIoU drop): " + ", ".join(res.ranking("miou", top=5)))
    typer.echo(f"{out.rstrip('/')}/importance.csv")


@app.command()
def finetune(
    checkpoint: Annotated[str, typer.Option(help="Checkpoint trained on the source region.")],
    cube: Annotated[str, typer.Option(help="Zarr cube of the target region.")],
    out: Annotated[str, typer.Option(help="Output folder (tables, fine-tuned checkpoint).")],
    iterations: Annotated[int, typer.Option(help="Fine-tuning optimizer steps.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Patches per step.")] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
    patch_size: Annotated[int, typer.Option(help="Patch size on the target cube.")] = 128,
    freeze_encoder: Annotated[bool, typer.Option(help="Fine-tune only decoder and head.")] = False,
    normalization: Annotated[
        str, typer.Option(help="Band statistics: 'checkpoint' or 'target'.")
    ] = "checkpoint",
    seed: Annotated[int, typer.Option(help="Seed of split, sampling, augmentation.")] = 0,
    device: Annotated[str, typer.Option(help="Torch device.")] = "cpu",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Evaluate a checkpoint on another region, fine-tune briefly, evaluate again."""
    from cryonet.transfer import FinetuneConfig
    from cryonet.transfer import finetune as run

    if normalization not in ("checkpoint", "target"):
        raise typer.BadParameter(
            f"--normalization must be 'checkpoint' or 'target', got {normalization!r}"
        )
    config = FinetuneConfig(
        iterations=iterations,
        batch_size=batch_size,
        lr=lr,
        patch_size=patch_size,
        freeze_encoder=freeze_encoder,
        normalization=normalization,  # type: ignore[arg-type]
        seed=seed,
        device=device,
    )
    res = run(checkpoint, cube, out, config, progress=progress)
    typer.echo(
        f"mIoU {res.before.miou:.4f} -> {res.after.miou:.4f}, overall accuracy "
        f"{res.before.overall_accuracy:.4f} -> {res.after.overall_accuracy:.4f}"
    )
    typer.echo(str(res.files["markdown"]))
