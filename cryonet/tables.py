"""Tables as text: a dependency-free Markdown table writer for pandas DataFrames."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["markdown_table"]


def _fmt(v: object, floatfmt: str) -> str:
    if isinstance(v, float | np.floating):
        return "–" if math.isnan(float(v)) else format(float(v), floatfmt)
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v).replace("|", "\\|")


def markdown_table(df, *, floatfmt: str = ".4f", index: bool = True) -> str:
    """Format a ``pandas.DataFrame`` as a GitHub-flavoured Markdown table.

    Parameters
    ----------
    df
        The table; the index becomes the first column when ``index`` is true.
    floatfmt
        Format spec for floats (NaN is shown as ``–``).
    index
        Include the index.

    Returns
    -------
    str
        The Markdown table (no trailing newline).
    """
    header = ([str(df.index.name or "")] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in zip(df.index, df.itertuples(index=False), strict=True):
        cells = ([_fmt(idx, floatfmt)] if index else []) + [_fmt(v, floatfmt) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
