"""``glacierstack verify``: check every chunk of a finished cube or mosaic against its manifest."""

from __future__ import annotations

from typing import Annotated

import typer

from glacierstack.cli import app


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="Cube or mosaic store (path or fsspec URL).")],
) -> None:
    """Recompute the checksum of every chunk of a complete store and compare with its manifest.

    Exit status 0 when every chunk is present and intact, 1 otherwise (each problem is listed).
    """
    from glacierstack.storage import verify as run

    report = run(path)
    for problem in report.problems:
        typer.echo(f"{report.store}: {problem}", err=True)
    if not report.ok:
        raise typer.Exit(1)
    typer.echo(f"{report.store}: {report.checked} chunks verified, all intact")
