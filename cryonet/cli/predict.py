"""``cryonet predict`` and ``cryonet export``: map a cube with a checkpoint, export the map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cryonet.cli import app
from glacierstack.runner import (
    PROFILE_HELP,
    SCHEDULER_HELP,
    THREADS_HELP,
    TORCH_THREADS_HELP,
    runner_options,
)

TTA_HELP = "Test-time augmentation: 'all' (8 flips/rotations, ~8x the time) or codes, e.g. 0,4."
ENSEMBLE_HELP = "Another checkpoint (same bands/classes) to average with; repeat the option."


@app.command()
def predict(
    checkpoint: Annotated[
        str, typer.Option(help="Checkpoint file (.pt) from cryonet train: path or URL.")
    ],
    cube: Annotated[str, typer.Option(help="Zarr feature cube holding the model's bands.")],
    out: Annotated[str, typer.Option(help="Output Zarr mosaic, path or URL (resumed).")],
    tile_size: Annotated[
        int | None,
        typer.Option(help="Tile side in pixels (default: the checkpoint's training patch size)."),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(help="Overlap of consecutive tiles in pixels (default: a quarter tile)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 8,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            help="Output tile side in pixels: one Zarr chunk and one Dask task each "
            "(default: the smallest tile-stride multiple >= 1024)"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    amp: Annotated[bool, typer.Option(help="Mixed-precision forward pass.")] = False,
    scheduler: Annotated[str | None, typer.Option(help=SCHEDULER_HELP)] = None,
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    torch_threads: Annotated[int | None, typer.Option(help=TORCH_THREADS_HELP)] = None,
    profile: Annotated[Path | None, typer.Option(help=PROFILE_HELP)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing mosaic.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    tta: Annotated[str | None, typer.Option(help=TTA_HELP)] = None,
    ensemble: Annotated[list[str] | None, typer.Option(help=ENSEMBLE_HELP)] = None,
) -> None:
    """Predict a whole cube in overlapping, Hann-blended tiles into a Zarr mosaic.

    The mosaic holds the class map, the class probabilities and per-pixel confidence
    (maximum probability, normalised entropy), all calibrated by the checkpoint's temperature.
    """
    from cryonet.infer import predict as run
    from cryonet.infer.run import check_sizes

    # sizes first: before the checkpoint is read or anything is created
    check_sizes(tile_size=tile_size, batch_size=batch_size, chunk_size=chunk_size,
                threads=threads, torch_threads=torch_threads)  # fmt: skip
    runner_options(scheduler, threads, torch_threads, profile, progress)  # validate first
    if tile_size is None or overlap is None:
        from cryonet.areaeval import default_tiling

        tile, ov = default_tiling(checkpoint)  # prediction follows training
        tile_size = tile if tile_size is None else tile_size
        overlap = (tile_size // 4 if tile_size != tile else ov) if overlap is None else overlap
    path = run(
        checkpoint,
        cube,
        out,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        chunk_size=chunk_size,
        device=device,
        amp=amp,
        scheduler=scheduler,
        threads=threads,
        torch_threads=torch_threads,
        profile=profile,
        overwrite=overwrite,
        progress=progress,
        ensemble=list(ensemble or []),
        tta=tta,
    )
    typer.echo(str(path))


@app.command()
def export(
    mosaic: Annotated[str, typer.Argument(help="Zarr mosaic from cryonet predict.")],
    cog: Annotated[
        str | None, typer.Option(help="Write the class map as a Cloud-Optimized GeoTIFF.")
    ] = None,
    polygons: Annotated[
        str | None, typer.Option(help="Write glacier/debris/water outlines to a GeoPackage.")
    ] = None,
    min_area_km2: Annotated[float, typer.Option(help="Drop smaller polygons.")] = 0.0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Export a mosaic's class map (COG) and/or outline polygons (GeoPackage)."""
    from cryonet.export import export_cog, export_polygons

    if cog is None and polygons is None:
        raise typer.BadParameter("nothing to do: give --cog and/or --polygons")
    if cog is not None:
        typer.echo(str(export_cog(mosaic, cog, overwrite=overwrite)))
    if polygons is not None:
        path = export_polygons(mosaic, polygons, min_area_km2=min_area_km2, overwrite=overwrite)
        typer.echo(str(path))
