"""``glacierstack layers``: which of the 30 layers a catalog can give, and why not."""

from __future__ import annotations

from typing import Annotated

import typer

from glacierstack.cli import app
from glacierstack.cli._common import HEADER_HELP, PROVIDER_HELP, parse_bbox, parse_pairs


@app.command()
def layers(
    catalog: Annotated[
        str, typer.Option(help="Provider name, STAC API URL or path to a static catalog")
    ],
    bbox: Annotated[
        str | None,
        typer.Option(
            help="Region 'xmin,ymin,xmax,ymax' in --bbox-crs (APIs: searched; "
            "without it an API's default modalities are assumed complete)"
        ),
    ] = None,
    bbox_crs: Annotated[str, typer.Option(help="CRS of --bbox")] = "EPSG:4326",
    datetime: Annotated[str | None, typer.Option(help="Acquisition window")] = None,
    modalities: Annotated[
        str | None, typer.Option(help="Comma-separated modalities (default: chosen)")
    ] = None,
    provider: Annotated[str | None, typer.Option(help=PROVIDER_HELP)] = None,
    header: Annotated[list[str] | None, typer.Option(help=HEADER_HELP)] = None,
) -> None:
    """List, per layer, whether it is computable from a catalog, from what, or why not."""
    from rich.console import Console
    from rich.table import Table

    from glacierstack.availability import catalog_bands, choose_modalities, layer_status
    from glacierstack.catalog import open_catalog

    mods = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
    try:
        cat = open_catalog(catalog, provider, headers=parse_pairs(header, ":", "--header"))
        box = parse_bbox(bbox) if bbox else None
        found = catalog_bands(cat, box, bbox_crs=bbox_crs, datetime=datetime, modalities=mods)
    except (KeyError, FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e.args[0] if e.args else e}", err=True)
        raise typer.Exit(1) from e
    chosen = mods or choose_modalities(found, cat.provider)
    variables = {v for m in chosen if m in found for v in found[m][0]}
    sensor = next((found[m][1] for m in chosen if m in found and found[m][1]), None)
    console = Console(width=160)
    console.print(
        f"catalog {cat.source} (provider {cat.provider.name}); modalities used: "
        f"{', '.join(chosen) or 'none'}; optical sensor: {sensor or 'none'}"
    )
    table = Table("layer", "computable", "from / why not")
    for s in layer_status(variables, sensor):
        table.add_row(s.name, "yes" if s.computable else "no",
                      ",".join(s.inputs) if s.computable else s.reason)  # fmt: skip
    console.print(table)
