"""``cryonet areas``: per-glacier area and area change between two mosaics."""

from __future__ import annotations

from typing import Annotated

import typer

from cryonet.cli import app


@app.command()
def areas(
    mosaics: Annotated[
        list[str],
        typer.Argument(help="Two Zarr mosaics of the same grid (paths or URLs), earlier first."),
    ],
    outlines: Annotated[
        str, typer.Option(help="Inventory outlines with glacier ids (GeoPackage, shapefile).")
    ],
    out: Annotated[
        str, typer.Option(help="Folder for areas.csv, areas.gpkg, area_change.png (path or URL).")
    ],
    labels: Annotated[
        str, typer.Option(help="Comma-separated labels of the two dates, e.g. 2018,2028.")
    ] = "t1,t2",
    id_column: Annotated[str, typer.Option(help="Glacier id column of the outlines.")] = "RGIId",
    buffer_m: Annotated[
        float, typer.Option(help="Also count pixels within this distance of an outline (m).")
    ] = 0.0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Per-glacier area (total, clean, debris) at two dates, the change and its interval.

    The interval is the expected commission / omission from the mosaics' probabilities
    (see cryonet.areas).
    """
    from cryonet.areas import AreaOptions, area_change

    names = [s.strip() for s in labels.split(",")]
    if len(mosaics) != 2:
        raise typer.BadParameter(f"give two mosaics, got {len(mosaics)}", param_hint="MOSAICS")
    if len(names) != 2 or names[0] == names[1]:
        raise typer.BadParameter(f"need two distinct labels, got {labels!r}", param_hint="--labels")
    try:
        df = area_change(
            mosaics,
            outlines,
            names,
            out,
            AreaOptions(id_column=id_column, buffer_m=buffer_m),
            overwrite=overwrite,
        )
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    a, b = names
    total = df[[f"area_km2_{a}", f"area_km2_{b}", "change_km2"]].sum()
    typer.echo(
        f"{len(df)} glaciers: {total.iloc[0]:.3f} km² ({a}) -> {total.iloc[1]:.3f} km² ({b}), "
        f"change {total.iloc[2]:+.3f} km²; written to {out}"
    )
