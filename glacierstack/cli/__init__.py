"""The ``glacierstack`` command line (a thin layer over the Python API).

Each sub-module registers its commands on :data:`app`; the modules are imported below.
"""

from __future__ import annotations

import typer

from glacierstack.cli._common import DebugOption, StorageOptions, use_storage_options
from glacierstack.cli._errors import ErrorReportingGroup

app = typer.Typer(
    cls=ErrorReportingGroup,
    name="glacierstack",
    help="Build multi-modal glacier feature cubes from STAC catalogs (synthetic or real).",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root(
    debug: DebugOption = False,
    storage_option: StorageOptions = None,
) -> None:
    """Build multi-modal glacier feature cubes from STAC catalogs (synthetic or real)."""
    use_storage_options(storage_option)


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_register()


def main() -> None:
    """Entry point of the ``glacierstack`` console script."""
    app()
