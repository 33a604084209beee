"""``cryonet calibrate``: fit temperature scaling of a checkpoint on validation patches."""

from __future__ import annotations

from typing import Annotated

import typer

from cryonet.cli import app
from cryonet.cli.predict import ENSEMBLE_HELP, TTA_HELP


@app.command()
def calibrate(
    checkpoint: Annotated[str, typer.Option(help="Checkpoint (.pt) to calibrate in place.")],
    cube: Annotated[str, typer.Option(help="Zarr cube the split refers to.")],
    split: Annotated[str, typer.Option(help="split.json or a run directory holding one.")],
    subset: Annotated[str, typer.Option(help="Patches to fit on (val; never test).")] = "val",
    batch_size: Annotated[int, typer.Option(help="Patches per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    tta: Annotated[str | None, typer.Option(help=TTA_HELP)] = None,
    ensemble: Annotated[list[str] | None, typer.Option(help=ENSEMBLE_HELP)] = None,
) -> None:
    """Fit the softmax temperature (NLL, L-BFGS) and store it in the checkpoint.

    Training does this for its best checkpoint already; use it for older checkpoints. With
    --tta and/or --ensemble it fits the temperature of the averaged output instead, stored in
    CHECKPOINT for exactly these members and transforms (predict and evaluate with the same
    options apply it).
    """
    from cryonet.calibration import calibrate_checkpoint

    cal = calibrate_checkpoint(
        checkpoint, cube, split, subset=subset, batch_size=batch_size, device=device,
        ensemble=list(ensemble or []), tta=tta,
    )  # fmt: skip
    typer.echo(
        f"T = {cal.temperature:.3f}; ECE {100 * cal.ece_before:.2f} % -> "
        f"{100 * cal.ece_after:.2f} %; NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f} "
        f"({cal.n_pixels} {subset} pixels)"
    )
