"""Figures drawn without pyplot, so library plots never switch a notebook's backend."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(*args: Any, figsize: tuple[float, float] | None = None, **kwargs: Any) -> Any:
    """Like ``matplotlib.pyplot.subplots`` but on a standalone :class:`Figure`.

    The figure is not registered with pyplot: there is nothing to close, and an interactive
    (e.g. Jupyter inline) backend stays as the user set it.
    """
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)
