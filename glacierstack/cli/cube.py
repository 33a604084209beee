"""CLI command ``glacierstack cube``: build the feature + label cube of a region into Zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glacierstack.cli import app
from glacierstack.cli._common import (
    GDAL_ENV_HELP,
    HEADER_HELP,
    PROVIDER_HELP,
    parse_bbox,
    parse_pairs,
)


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
        str | None, typer.Option(help="Glacier outlines, path or URL (any vector format, CRS)")
    ] = None,
    debris_outlines: Annotated[
        str | None, typer.Option(help="Debris-cover outlines, path or URL (any vector format)")
    ] = None,
    water_ndwi: Annotated[float, typer.Option(help="Water where NDWI > this")] = 0.17,
    vegetation_ndvi: Annotated[float, typer.Option(help="Vegetation where NDVI > this")] = 0.3,
    chunk_size: Annotated[int, typer.Option(help="Zarr tile size in pixels")] = 512,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler: a scheduler address (tcp://...), 'local:N' for a "
            "LocalCluster of N workers, 'threads' or 'synchronous' (default: threads)"
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP)] = None,
    header: Annotated[list[str] | None, typer.Option(help=HEADER_HELP)] = None,
    gdal_env: Annotated[list[str] | None, typer.Option(help=GDAL_ENV_HELP)] = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            help="Mask input files that cannot be read (listed in the cube attrs "
            "'missing_inputs') instead of failing"
        ),
    ] = False,
) -> None:
    """Build the feature + label cube of a region from a STAC catalog into a Zarr store.

    Rerunning the same command after an interruption resumes the unfinished store.
    """
    from glacierstack.catalog import EmptySearchError, open_catalog
    from glacierstack.inputs import ReadConfig
    from glacierstack.labels import LabelRules
    from glacierstack.pipeline import build_cube, scheduler_context
    from glacierstack.store import CubeError

    rules = LabelRules(water_ndwi=water_ndwi, vegetation_ndvi=vegetation_ndvi)
    headers = parse_pairs(header, ":", "--header")
    read = ReadConfig.create(
        parse_pairs(gdal_env, "=", "--gdal-env"), headers, allow_missing=allow_missing
    )
    try:
        cat = open_catalog(catalog, provider, headers=headers)
        with scheduler_context(scheduler):
            path = build_cube(
                cat,
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
                read=read,
            )
    except (EmptySearchError, KeyError, FileNotFoundError, FileExistsError, CubeError) as e:
        typer.echo(f"error: {e.args[0] if e.args else e}", err=True)
        raise typer.Exit(1) from e
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(str(path))
