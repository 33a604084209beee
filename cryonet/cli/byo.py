"""``cryonet split``, ``cryonet baseline`` and ``cryonet score`` (bring your own data)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cryonet.cli import app
from glacierstack import storage

_AREA = "west|east|north|south, bbox:xmin,ymin,xmax,ymax (cube CRS), or FILE[:VALUE]"


@app.command()
def split(
    cube: Annotated[str, typer.Option(help="Zarr feature cube.")],
    out: Annotated[str, typer.Option(help="split.json to write (a path or URL).")],
    patch_size: Annotated[int, typer.Option(help="Patch edge in pixels (as in training).")],
    areas: Annotated[
        str | None,
        typer.Option(help="Vector file or URL with a 'split' column (train/val/test)."),
    ] = None,
    train_area: Annotated[str | None, typer.Option(help=f"Train area: {_AREA}")] = None,
    val_area: Annotated[str | None, typer.Option(help="Validation area (optional)")] = None,
    test_area: Annotated[str | None, typer.Option(help="Test area (optional)")] = None,
    overlap: Annotated[int, typer.Option(help="Pixels shared by neighbouring windows.")] = 0,
) -> None:
    """Write a spatial split.json from areas (use it with cryonet train --split-file)."""
    from cryonet.splitareas import split_from_areas

    spec = {"all": str(areas)} if areas else {}
    spec |= {k: v for k, v in (("train", train_area), ("val", val_area), ("test", test_area)) if v}
    try:
        sp = split_from_areas(cube, spec, patch_size, overlap=overlap)
    except (ValueError, FileNotFoundError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    with storage.staged_output(out) as local:
        local.parent.mkdir(parents=True, exist_ok=True)
        sp.to_json(local)
    typer.echo(f"{out}: train {len(sp.train)}, val {len(sp.val)}, test {len(sp.test)} windows")


@app.command()
def baseline(
    cube: Annotated[str, typer.Option(help="Zarr feature cube.")],
    out: Annotated[
        str, typer.Option(help="Class GeoTIFF to write (the forest's map), path or URL.")
    ],
    split_file: Annotated[
        str | None, typer.Option(help="split.json (path or URL): train on its train windows.")
    ] = None,
    train_area: Annotated[str | None, typer.Option(help=f"Or train inside: {_AREA}")] = None,
    n_estimators: Annotated[int, typer.Option(help="Trees.")] = 100,
    max_depth: Annotated[int, typer.Option(help="Tree depth.")] = 20,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a per-pixel random forest on the same cube/split/classes; write its class map."""
    from cryonet.baseline import BaselineConfig, train_baseline

    cfg = BaselineConfig(n_estimators=n_estimators, max_depth=max_depth, seed=seed)
    try:
        path = train_baseline(cube, out, split_file=split_file, train_area=train_area, config=cfg)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(str(path))


@app.command()
def score(
    cube: Annotated[str, typer.Option(help="Zarr cube holding the labels.")],
    area: Annotated[str, typer.Option(help=f"Area to score: {_AREA}")],
    maps: Annotated[
        list[str],
        typer.Option(
            "--map",
            help="NAME=PATH: a mosaic (.zarr), class GeoTIFF or checkpoint (.pt, predicted "
            "with its training patch size); repeatable",
        ),
    ],
    out: Annotated[
        str | None, typer.Option(help="Write the full report (JSON), path or URL.")
    ] = None,
) -> None:
    """Score class maps against the labels inside an area: every labelled pixel once."""
    from cryonet.areaeval import evaluate_area, score_table

    parsed = {}
    for m in maps:
        name, sep, path = m.partition("=")
        if not sep:
            raise typer.BadParameter(f"--map {m!r}: expected NAME=PATH")
        parsed[name] = path
    try:
        with tempfile.TemporaryDirectory() as tmp:
            report = evaluate_area(cube, parsed, area, Path(tmp))
    except (ValueError, FileNotFoundError, KeyError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(f"area {area} of {cube} (scheme {report['scheme']})")
    typer.echo(score_table(report["results"]))
    if out is not None:
        with storage.staged_output(out) as local:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(json.dumps(report, indent=2))
