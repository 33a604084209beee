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
    out: Annotated[
        str, typer.Option(help="Zarr store to write: cube.zarr or s3://bucket/cube.zarr")
    ],
    bbox: Annotated[
        str | None, typer.Option(help="Region 'xmin,ymin,xmax,ymax' in --bbox-crs")
    ] = None,
    datetime: Annotated[
        str | None, typer.Option(help="Acquisition window, e.g. 2018-10-01/2018-10-31")
    ] = None,
    bbox_crs: Annotated[str, typer.Option(help="CRS of --bbox")] = "EPSG:4326",
    layers: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated layers and/or groups (default: every layer computable from "
            "the catalog; 'all': the 30 layers)"
        ),
    ] = None,
    resolution: Annotated[float, typer.Option(help="Pixel size in metres")] = 10.0,
    crs: Annotated[
        str | None,
        typer.Option(
            help="Grid CRS (default: the UTM zone of the bbox); with --bbox-crs equal "
            "to it the grid is exactly the bbox (a whole number of pixels, any origin)"
        ),
    ] = None,
    like: Annotated[
        Path | None,
        typer.Option(
            help="Use this raster's own grid exactly (CRS, bounds, pixel size) "
            "instead of --bbox/--resolution"
        ),
    ] = None,
    modalities: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated modalities to load (default: chosen from what the "
            "catalog offers; see `glacierstack layers`)"
        ),
    ] = None,
    glacier_outlines: Annotated[
        Path | None, typer.Option(help="Glacier outlines (any vector format and CRS)")
    ] = None,
    debris_outlines: Annotated[
        Path | None, typer.Option(help="Debris-cover outlines (any vector format and CRS)")
    ] = None,
    scheme: Annotated[
        str,
        typer.Option(
            help="Class scheme: cryonet5 (5 classes, water/vegetation rules), glacier "
            "(glacier/background), ice-debris, or a YAML file"
        ),
    ] = "cryonet5",
    water_ndwi: Annotated[float, typer.Option(help="Water where NDWI > this")] = 0.17,
    vegetation_ndvi: Annotated[float, typer.Option(help="Vegetation where NDVI > this")] = 0.3,
    chunk_size: Annotated[
        int, typer.Option(help="Output tile side in pixels: one Zarr chunk and one Dask task each")
    ] = 512,
    scheduler: Annotated[str | None, typer.Option(help=SCHEDULER_HELP)] = None,
    threads: Annotated[int | None, typer.Option(help=THREADS_HELP)] = None,
    profile: Annotated[Path | None, typer.Option(help=PROFILE_HELP)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars")] = True,
) -> None:
    """Build the feature + label cube of a region from a STAC catalog into a Zarr store.

    Rerunning the same command after an interruption resumes the unfinished store.
    """
    from pyproj import CRS

    from glacierstack.grid import Grid
    from glacierstack.labels import LabelRules
    from glacierstack.pipeline import build_cube

    rules = LabelRules(water_ndwi=water_ndwi, vegetation_ndvi=vegetation_ndvi)
    if (bbox is None) == (like is None):
        raise typer.BadParameter("give exactly one of --bbox or --like")
    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    runner = runner_options(scheduler, threads, None, profile, progress)
    # errors end in one line (a traceback with --debug): glacierstack.cli._errors
    if like is not None:
        grid = Grid.from_raster(like)
    else:
        assert bbox is not None
        box = parse_bbox(bbox)
        if crs is not None and CRS.from_user_input(crs) == CRS.from_user_input(bbox_crs):
            grid = Grid(crs, box, resolution)  # exactly these bounds (any origin), no snapping
        else:
            grid = Grid.from_bbox(box, bbox_crs=bbox_crs, resolution=resolution, crs=crs)
    path = build_cube(
        catalog,
        out,
        grid=grid,
        modalities=mods,
        datetime=datetime,
        layers=layers,
        glacier_outlines=glacier_outlines,
        debris_outlines=debris_outlines,
        label_rules=rules,
        scheme=scheme,
        chunk_size=chunk_size,
        overwrite=overwrite,
        progress=progress,
        runner=runner,
    )
    typer.echo(str(path))
