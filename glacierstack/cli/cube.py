"""CLI command ``glacierstack cube``: build the feature + label cube of a region into Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glacierstack.cli import app
from glacierstack.cli._common import parse_bbox
from glacierstack.runner import PROFILE_HELP, SCHEDULER_HELP, THREADS_HELP, runner_options


@app.command()
def cube(
    catalog: Annotated[
        str, typer.Option(help="Provider name, STAC API URL or path to a static catalog")
    ],
    out: Annotated[Path, typer.Option(help="Zarr store to write, e.g. cube.zarr")],
    bbox: Annotated[str, typer.Option(help="Region 'xmin,ymin,xmax,ymax' in --bbox-crs")],
    datetime: Annotated[
        str | None, typer.Option(help="Acquisition window, e.g. 2018-10-01/2018-10-31")
    ] = None,
    bbox_crs: Annotated[str, typer.Option(help="CRS of --bbox")] = "EPSG:4326",
    layers: Annotated[
        str | None,
        typer.Option(help="Comma-separated layers and/or groups (default: all 30 layers)"),
    ] = None,
    resolution: Annotated[float, typer.Option(help="Pixel size in metres")] = 10.0,
    glacier_outlines: Annotated[
        Path | None, typer.Option(help="Glacier outlines (any vector format and CRS)")
    ] = None,
    debris_outlines: Annotated[
        Path | None, typer.Option(help="Debris-cover outlines (any vector format and CRS)")
    ] = None,
    water_ndwi: Annotated[float, typer.Option(help="Water where NDWI > this")] = 0.17,
    vegetation_ndvi: Annotated[float, typer.Option(help="Vegetation where NDVI > this")] = 0.3,
    chunk_size: Annotated[int, typer.Option(help="Zarr tile size in pixels")] = 512,
    scheduler: Annotated[str | None, typer.Option(help=SCHEDULER_HELP)] = None,
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    profile: Annotated[Path | None, typer.Option(help=PROFILE_HELP)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Build the feature + label cube of a region from a STAC catalog into a Zarr store.

    Rerunning the same command after an interruption resumes the unfinished store.
    """
    from glacierstack.catalog import EmptySearchError
    from glacierstack.labels import LabelRules
    from glacierstack.pipeline import build_cube
    from glacierstack.store import CubeError

    rules = LabelRules(water_ndwi=water_ndwi, vegetation_ndvi=vegetation_ndvi)
    runner = runner_options(scheduler, threads, None, profile, progress)
    try:
        path = build_cube(
            catalog,
            out,
            bbox=parse_bbox(bbox),
            bbox_crs=bbox_crs,
            datetime=datetime,
            layers=layers,
            resolution=resolution,
            glacier_outlines=glacier_outlines,
            debris_outlines=debris_outlines,
            label_rules=rules,
            chunk_size=chunk_size,
            overwrite=overwrite,
            progress=progress,
            runner=runner,
        )
    except (EmptySearchError, KeyError, FileNotFoundError, FileExistsError, CubeError) as e:
        typer.echo(f"error: {e.args[0] if e.args else e}", err=True)
        raise typer.Exit(1) from e
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(str(path))
