"""``glacierstack synth``: write a synthetic multi-modal glacier region as a STAC catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glacierstack.cli import app


@app.command()
def synth(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (catalog.json and COGs).")
    ],
    preset: Annotated[
        str,
        typer.Option("--preset", "-p", help="Region preset: 'poiqu' (Himalaya) or 'montblanc'."),
    ] = "poiqu",
    size_km: Annotated[
        float,
        typer.Option(
            "--size-km", min=0.12, help="Side of the square region in km (snapped to 120 m)."
        ),
    ] = 20.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same bytes.")] = 0,
    year: Annotated[
        int | None,
        typer.Option(
            "--year",
            help="Observation year (default: the preset's); later years: same terrain, "
            "retreated glaciers (ELA +6 m/yr).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output folder.")
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
    ] = True,
) -> None:
    """Generate a synthetic glaciated region (S2, DEM, Landsat ST, ITS_LIVE, S1 pair, truth).

    Writes Cloud-Optimized GeoTIFFs and a self-contained static STAC catalog whose collection
    ids and asset keys mirror Earth Search, plus the exact class raster and RGI-like outlines.
    """
    from glacierstack.synthetic import PRESETS, generate_region

    if preset not in PRESETS:
        raise typer.BadParameter(
            f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}", param_hint="--preset"
        )
    try:
        region = generate_region(
            preset,
            out,
            size_km=size_km,
            seed=seed,
            overwrite=overwrite,
            progress=progress,
            year=year,
        )
    except FileExistsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    h, w = region.grid.shape
    typer.echo(f"catalog:  {region.catalog_path}")
    typer.echo(f"grid:     {region.grid.crs} {w}x{h} px @ {region.grid.resolution:g} m")
    typer.echo(f"datetime: {region.datetime}")
    typer.echo(f"labels:   {region.truth_labels}")
