"""Option parsers shared by the CLI modules (underscore: not a command module)."""

from __future__ import annotations

from typing import Annotated

import typer

from glacierstack.cli._errors import DEBUG_HELP


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``"xmin,ymin,xmax,ymax"`` into four floats, or raise ``typer.BadParameter``."""
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError as e:
        raise typer.BadParameter(f"bbox {text!r} must be 'xmin,ymin,xmax,ymax'") from e
    if len(vals) != 4:
        raise typer.BadParameter(f"bbox {text!r} must have 4 numbers, got {len(vals)}")
    return vals  # type: ignore[return-value]


def parse_pairs(values: list[str] | None, sep: str, what: str) -> dict[str, str]:
    """Parse ``["K<sep>V", ...]`` (``--header 'Name: value'``, ``--gdal-env KEY=VALUE``)."""
    out: dict[str, str] = {}
    for v in values or []:
        key, found, val = v.partition(sep)
        if not found or not key.strip():
            raise typer.BadParameter(f"{what} {v!r} must look like 'NAME{sep}VALUE'")
        out[key.strip()] = val.strip()
    return out


HEADER_HELP = (
    "HTTP header 'Name: value' sent to the STAC API and with every pixel read, on every Dask "
    "worker (repeatable), e.g. 'Authorization: Bearer TOKEN'"
)
GDAL_ENV_HELP = "GDAL config option KEY=VALUE for every pixel read, on every worker (repeatable)"
PROVIDER_HELP = (
    "Provider config (name from 'glacierstack providers' or path to a YAML file); default: "
    "matched by URL, recorded links or the catalog's collection ids"
)


STORAGE_OPTION_HELP = (
    "fsspec storage option for object-store URLs (s3://, gs://, az://), repeatable, before the "
    "command: e.g. endpoint_url=http://minio:9000, profile=myaws, anon=true, "
    "client_kwargs.region_name=eu-west-1; prefix a protocol (gs:token=...) to limit it to one. "
    "Also sent to every Dask worker."
)


DebugOption = Annotated[bool, typer.Option("--debug", help=DEBUG_HELP)]
"""The root ``--debug`` flag of both CLIs."""

StorageOptions = Annotated[
    list[str] | None,
    typer.Option("--storage-option", metavar="[PROTOCOL:]KEY=VALUE", help=STORAGE_OPTION_HELP),
]
"""The root ``--storage-option`` option of both CLIs."""


def use_storage_options(items: list[str] | None) -> None:
    """Apply ``--storage-option`` values (see :func:`glacierstack.storage.configure`)."""
    if not items:
        return
    from glacierstack.storage import configure, parse_storage_options

    try:
        configure(parse_storage_options(items))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--storage-option") from e
