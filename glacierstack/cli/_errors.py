"""One error-reporting mechanism for both command lines (``glacierstack`` and ``cryonet``).

A user error ends in one line on stderr, ``error: <what went wrong, naming the file/href/band/
bbox and what was expected>``, and exit status 1. The traceback is shown only with the group
option ``--debug`` (``glacierstack --debug cube ...``, ``cryonet --debug predict ...``).
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["DEBUG_HELP", "ErrorReportingGroup", "format_error"]

DEBUG_HELP = "Show the full traceback of an error (default: one line)."

_CLI_FLOW = (typer.Exit, typer.Abort, typer.exceptions.TyperException)
"""Exceptions the command-line framework handles itself (usage errors, exit codes)."""

_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, OSError)
"""Errors that describe bad input (a path, a value, a file's content), not a bug."""


def format_error(exc: BaseException) -> str:
    """One line describing ``exc`` (no traceback).

    ``OSError``s raised by the system name their file (``No such file or directory: x.tif``);
    errors that are not user errors get their type and a hint at ``--debug``.
    """
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        msg = f"{exc.strerror}: {exc.filename}"
    elif (
        exc.args
        and isinstance(exc.args[0], str)
        and (len(exc.args) == 1 or isinstance(exc, KeyError))
    ):
        msg = exc.args[0]
    else:
        msg = str(exc) or type(exc).__name__
    msg = " ".join(msg.split())  # one line
    if not isinstance(exc, _USER_ERRORS):
        msg = f"{type(exc).__name__}: {msg} (rerun with --debug for the traceback)"
    return msg


class ErrorReportingGroup(TyperGroup):
    """A Typer group that turns exceptions of its commands into one-line errors."""

    def invoke(self, ctx: Any) -> Any:
        """Run the sub-command; report an exception as one line unless ``--debug`` is set."""
        try:
            return super().invoke(ctx)
        except _CLI_FLOW:
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            print(f"error: {format_error(exc)}", file=sys.stderr, flush=True)
            raise typer.Exit(1) from None
