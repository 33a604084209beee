"""MkDocs hooks: generate the CLI reference from the typer apps at build time."""

from __future__ import annotations

import click
import typer.main

PLACEHOLDER = "<!-- cli-reference -->"


def _command_markdown(cmd: click.Command, prog: str, depth: int = 2) -> list[str]:
    ctx = click.Context(cmd, info_name=prog)
    lines = [f"{'#' * depth} `{prog}`", "", "```text", cmd.get_help(ctx).rstrip(), "```", ""]
    if isinstance(cmd, click.Group):
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


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: D103
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, cli_reference())
    return markdown
