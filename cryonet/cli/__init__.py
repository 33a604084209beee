"""The ``cryonet`` command line (a thin layer over the Python API).

Each sub-module registers its commands on :data:`app`; the modules are imported below.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cryonet",
    help="Train, evaluate and apply CryoNet glacier-segmentation models on glacierstack cubes.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Train, evaluate and apply CryoNet glacier-segmentation models on glacierstack cubes."""


def _register() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_register()


def main() -> None:
    """Entry point of the ``cryonet`` console script."""
    app()
