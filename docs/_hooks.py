"""MkDocs hooks: generate the CLI reference and include the benchmark results at build time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

PLACEHOLDER = "<!-- cli-reference -->"
BENCHMARKS = "<!-- benchmark-results -->"
ROOT = Path(__file__).resolve().parents[1]


def _command_markdown(cmd: Any, prog: str, depth: int = 2) -> list[str]:
    # typer's rich help prints to the terminal instead of returning text: use click's plain help
    if hasattr(cmd, "rich_markup_mode"):
        cmd.rich_markup_mode = None
    # typer >= 0.20 ships its own copy of click: use the command's context class, duck-type groups
    ctx = cmd.context_class(cmd, info_name=prog, terminal_width=100, max_content_width=100)
    lines = [f"{'#' * depth} `{prog}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]
    if hasattr(cmd, "list_commands"):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                lines += _command_markdown(sub, f"{prog} {name}", depth + 1)
    return lines


def cli_reference() -> str:
    """Return Markdown with the ``--help`` text of every command of both CLIs."""
    from cryonet.cli import app as cryonet_app
    from glacierstack.cli import app as glacierstack_app

    lines: list[str] = []
    for prog, app in (("glacierstack", glacierstack_app), ("cryonet", cryonet_app)):
        lines += _command_markdown(typer.main.get_command(app), prog)
    return "\n".join(lines)


def _demote_headings(text: str) -> str:
    """Shift every Markdown heading one level down (outside fenced code)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,5} ", line):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


def benchmark_results(root: Path = ROOT) -> str:
    """Return ``benchmarks/RESULTS.md``, or the per-topic result files, as one Markdown section.

    Relative links in the result files point into the repository, not the docs site, so they
    are rewritten to plain text.
    """
    merged = root / "benchmarks" / "RESULTS.md"
    files = [merged] if merged.is_file() else sorted((root / "benchmarks" / "results").glob("*.md"))
    if not files:
        return "_No benchmark results recorded yet._"
    parts = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        # [label](relative/path) -> label (`relative/path`): not pages of this site
        text = re.sub(r"\[([^\]]+)\]\((?!https?://|#)([^)]+)\)", r"\1 (`\2`)", text)
        parts.append(f"<!-- from {f.relative_to(root)} -->\n\n" + _demote_headings(text))
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: D103
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, cli_reference())
    if BENCHMARKS in markdown:
        markdown = markdown.replace(BENCHMARKS, benchmark_results())
    return markdown
