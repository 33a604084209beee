"""CLI commands for catalogs: ``providers``, ``search`` and ``stac-from-files``."""

from __future__ import annotations

from typing import Annotated

import typer

from glacierstack.cli import app
from glacierstack.cli._common import HEADER_HELP, PROVIDER_HELP, parse_bbox, parse_pairs


@app.command()
def providers() -> None:
    """List the provider configs in catalogs/ and their modalities."""
    from rich.console import Console
    from rich.table import Table

    from glacierstack.modalities import get_provider, list_providers

    table = Table("provider", "modality", "collection", "bands", "needs")
    for name in list_providers():
        cfg = get_provider(name)
        for m in cfg.modalities:
            table.add_row(
                name,
                m.name + ("" if m.default else " (opt)"),
                m.collection,
                " ".join(m.band_names),
                cfg.requires.split(".")[0] if cfg.requires else "",
            )
    Console().print(table)


@app.command()
def search(
    catalog: Annotated[
        str, typer.Option(help="Provider name, STAC API URL or static catalog path")
    ],
    bbox: Annotated[str, typer.Option(help="xmin,ymin,xmax,ymax in --bbox-crs")],
    datetime: Annotated[str | None, typer.Option(help="Window, e.g. 2018-10-01/2018-10-31")] = None,
    modality: Annotated[
        str | None, typer.Option(help="Modality name (s2, dem, lst, velocity, insar)")
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="Collection id (instead of a modality)")
    ] = None,
    bbox_crs: Annotated[str, typer.Option(help="CRS of --bbox")] = "EPSG:4326",
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP)] = None,
    limit: Annotated[int, typer.Option(help="Maximum number of items")] = 50,
    header: Annotated[list[str] | None, typer.Option(help=HEADER_HELP)] = None,
) -> None:
    """Search a catalog and show the items found (and the scene(s) a cube would use)."""
    from rich.console import Console
    from rich.table import Table

    from glacierstack.catalog import EmptySearchError, bbox_to_lonlat, open_catalog, select_items
    from glacierstack.modalities import choose_band_set

    try:
        cat = open_catalog(catalog, provider, headers=parse_pairs(header, ":", "--header"))
    except (KeyError, FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e.args[0] if e.args else e}", err=True)
        raise typer.Exit(1) from e
    box = parse_bbox(bbox)
    if (modality is None) == (collection is None):
        raise typer.BadParameter("give exactly one of --modality or --collection")
    try:
        if modality is not None:
            spec = cat.provider.modality(modality)
            items = cat.search_modality(
                spec, box, bbox_crs=bbox_crs, datetime=datetime, limit=limit
            )
            bands = choose_band_set(spec, [set(it.assets) for it in items])
            sel = select_items(
                items,
                spec,
                bbox_to_lonlat(box, bbox_crs),
                required_assets=[b.asset for b in bands],
            )
            chosen = set(sel.item_ids)
        else:
            assert collection is not None
            items = cat.search(collection, box, bbox_crs=bbox_crs, datetime=datetime, limit=limit)
            chosen = set()
    except (EmptySearchError, KeyError) as e:
        typer.echo(f"error: {e.args[0] if e.args else e}", err=True)
        raise typer.Exit(1) from e
    table = Table(
        "id", "datetime", "cloud %", "chosen", title=f"{cat.source} ({cat.provider.name})"
    )
    for it in items:
        cc = it.properties.get("eo:cloud_cover")
        table.add_row(
            it.id,
            str(it.datetime or it.properties.get("start_datetime", "")),
            "" if cc is None else f"{cc:.1f}",
            "*" if it.id in chosen else "",
        )
    Console().print(table)


@app.command("stac-from-files")
def stac_from_files_cmd(
    files: Annotated[
        list[str],
        typer.Argument(help="GeoTIFF/COG files (any band count): paths or URLs (s3://, https://)"),
    ],
    out: Annotated[str, typer.Option(help="Output folder for catalog.json: a path or a URL")],
    collection: Annotated[
        str | None,
        typer.Option(
            help="Collection id, e.g. its-live-velocity (default with --sensor: "
            "the sensor's, 'optical' for any optical sensor)"
        ),
    ] = None,
    datetime: Annotated[
        str | None, typer.Option(help="Date or window, e.g. 2018 or 2018-10-15")
    ] = None,
    pattern: Annotated[
        str,
        typer.Option(
            help="Regex on file stems with groups (?P<item>) and (?P<asset>), optional (?P<date>)"
        ),
    ] = r"^(?P<item>.+)_(?P<asset>[^_]+)$",
    copy: Annotated[bool, typer.Option(help="Copy the files into the catalog folder")] = False,
    bands: Annotated[
        list[str] | None,
        typer.Option(
            help="Band names of multi-band files, e.g. red,green,blue (all such "
            "files) or rgb=red,green,blue (files whose pattern asset is rgb); "
            "default: the files' band descriptions; repeatable"
        ),
    ] = None,
    sensor: Annotated[
        str | None,
        typer.Option(
            help="Sensor band map: sentinel-2-l2a, landsat-tm-c2l2, landsat-etm-c2l2, "
            "landsat-oli-c2l2, landsat-{tm,etm,oli}-toa, optical (common names)"
        ),
    ] = None,
    scale: Annotated[
        float | None, typer.Option(help="Scale for files declaring none (physical=DN*s+o)")
    ] = None,
    offset: Annotated[float | None, typer.Option(help="Offset for files declaring none")] = None,
    nodata: Annotated[float | None, typer.Option(help="Nodata for files declaring none")] = None,
) -> None:
    """Turn local rasters into a static STAC catalog usable as --catalog.

    A file's declared scale/offset wins; else --scale/--offset; else the --sensor product's;
    else values are used as stored. Multi-band files give one asset per band.
    """
    from glacierstack.byo import EncodingOptions, parse_bands, stac_from_files

    try:
        enc = EncodingOptions(sensor=sensor, scale=scale, offset=offset, nodata=nodata)
        path = stac_from_files(
            files,
            out,
            collection=collection,
            datetime=datetime,
            pattern=pattern,
            copy=copy,
            bands=parse_bands(bands or []),
            encoding=enc,
        )
    except (ValueError, FileNotFoundError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(str(path))
