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
        str | None,
        typer.Option(
            help="Use this raster's own grid exactly (CRS, bounds, pixel size) "
            "instead of --bbox/--resolution; a path or URL (s3://, https://)"
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
        str | None, typer.Option(help="Glacier outlines, path or URL (any vector format, CRS)")
    ] = None,
    debris_outlines: Annotated[
        str | None, typer.Option(help="Debris-cover outlines, path or URL (any vector format)")
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
    import rasterio
    from pyproj import CRS

    from glacierstack.catalog import open_catalog
    from glacierstack.grid import Grid
    from glacierstack.inputs import ReadConfig
    from glacierstack.labels import LabelRules
    from glacierstack.pipeline import build_cube

    rules = LabelRules(water_ndwi=water_ndwi, vegetation_ndvi=vegetation_ndvi)
    if (bbox is None) == (like is None):
        raise typer.BadParameter("give exactly one of --bbox or --like")
    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    runner = runner_options(scheduler, threads, None, profile, progress)
    headers = parse_pairs(header, ":", "--header")
    read = ReadConfig.create(
        parse_pairs(gdal_env, "=", "--gdal-env"), headers, allow_missing=allow_missing
    )
    # errors end in one line (a traceback with --debug): glacierstack.cli._errors
    if like is not None:
        with rasterio.Env(**read.gdal_options()):
            grid = Grid.from_raster(like)
    else:
        assert bbox is not None
        box = parse_bbox(bbox)
        if crs is not None and CRS.from_user_input(crs) == CRS.from_user_input(bbox_crs):
            grid = Grid(crs, box, resolution)  # exactly these bounds (any origin), no snapping
        else:
            grid = Grid.from_bbox(box, bbox_crs=bbox_crs, resolution=resolution, crs=crs)
    # API headers need an opened catalog; otherwise build_cube opens it (and knows its path)
    source = open_catalog(catalog, provider, headers=headers) if headers else catalog
    path = build_cube(
        source,
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
        provider=provider,
        read=read,
    )
    typer.echo(str(path))
