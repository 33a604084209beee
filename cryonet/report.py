"""A one-file Markdown (optionally HTML) report: typed sections of text, tables and figures.

:class:`Section` and :class:`Figure` are the records a report is made of;
:func:`render_markdown` and :func:`write_report` turn them into ``report.md`` (and
``report.html``). Figures are linked with relative paths, so the output folder can be moved or
zipped as a whole. The demo's report is :mod:`cryonet.demo_report`; figures are
:mod:`cryonet.plots`, tables :mod:`cryonet.tables`.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryonet.tables import markdown_table
from glacierstack import storage

__all__ = ["Figure", "Section", "render_markdown", "write_report"]


@dataclass(frozen=True)
class Figure:
    """An image in the report."""

    path: Path
    """Image file (linked relative to the report)."""
    caption: str = ""
    """Caption shown under the image."""


@dataclass(frozen=True)
class Section:
    """One section of the report: text, then tables, then figures."""

    title: str
    """Section heading."""
    text: str = ""
    """Markdown paragraph(s)."""
    tables: tuple[tuple[str, object], ...] = ()
    """``(caption, DataFrame)`` pairs."""
    figures: tuple[Figure, ...] = ()
    """Figures, in order."""
    floatfmt: str = ".4f"
    """Float format of the tables."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Bullet points after the text (e.g. what was skipped)."""


def _rel(path: Path, base: Path) -> str:
    import os

    return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()


def render_markdown(title: str, sections: Sequence[Section], *, base: str | Path) -> str:
    """Render sections as one Markdown document.

    Parameters
    ----------
    title
        Document title (level-1 heading).
    sections
        Sections in order.
    base
        Folder the document will be written to (figure links are made relative to it).

    Returns
    -------
    str
        The Markdown text.
    """
    base = Path(base)
    parts = [f"# {title}", ""]
    for s in sections:
        parts += [f"## {s.title}", ""]
        if s.text:
            parts += [s.text.strip(), ""]
        if s.notes:
            parts += [f"- {n}" for n in s.notes] + [""]
        for caption, df in s.tables:
            if caption:
                parts += [f"**{caption}**", ""]
            parts += [markdown_table(df, floatfmt=s.floatfmt), ""]
        for fig in s.figures:
            parts += [f"![{fig.caption}]({_rel(fig.path, base)})", ""]
            if fig.caption:
                parts += [f"*{fig.caption}*", ""]
    return "\n".join(parts).rstrip() + "\n"


def _render_html(title: str, markdown_text: str) -> str:
    import markdown  # a core dependency

    body = markdown.markdown(markdown_text, extensions=["tables"])
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{_html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 8px;text-align:right}img{max-width:100%}</style>"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def write_report(
    path: str | Path,
    title: str,
    sections: Sequence[Section],
    *,
    html: bool = False,
) -> Path:
    """Write the report as Markdown (and HTML next to it when ``html`` is true).

    The file is written to a temporary name and renamed, so a failed run never leaves a
    report that looks complete.

    Parameters
    ----------
    path
        Markdown file to write (``.md``); the HTML version gets the suffix ``.html``.
    title
        Document title.
    sections
        The content.
    html
        Also write a standalone HTML file (needs the ``markdown`` package).

    Returns
    -------
    pathlib.Path
        The Markdown file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for s in sections:
        for fig in s.figures:
            if not Path(fig.path).exists():
                raise FileNotFoundError(f"figure {fig.path} of section {s.title!r} does not exist")
    text = render_markdown(title, sections, base=path.parent)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    storage.publish(tmp, path)
    if html:
        hpath = path.with_suffix(".html")
        htmp = hpath.with_suffix(".html.tmp")
        htmp.write_text(_render_html(title, text), encoding="utf-8")
        storage.publish(htmp, hpath)
    return path
