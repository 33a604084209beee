"""Option parsers shared by the CLI modules (underscore: not a command module)."""

from __future__ import annotations

import typer


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """Parse ``"xmin,ymin,xmax,ymax"`` into four floats, or raise ``typer.BadParameter``."""
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError as e:
        raise typer.BadParameter(f"bbox {text!r} must be 'xmin,ymin,xmax,ymax'") from e
    if len(vals) != 4:
        raise typer.BadParameter(f"bbox {text!r} must have 4 numbers, got {len(vals)}")
    return vals  # type: ignore[return-value]
