"""The exit codes of the `progress` command, and how every command fails: one line on stderr.

One meaning per code, so a wrapper script can tell a broken extract from a busy warehouse
(docs/operating.md lists them). Only typer and rich are imported here: `progress --help` stays
fast.
"""

from __future__ import annotations

import signal
from enum import IntEnum
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # an unexpected failure (a bug, the disk): the line says what
    USAGE = 2  # bad input: an unknown option or bad value, a missing file, a failing SQL query
    BLOCKED = 3  # the extract is broken (refused file or quarantine gate): nothing published
    BUSY = 4  # another run holds the warehouse's writer lock
    TIMEOUT = 5  # `progress sql --timeout` elapsed; the query was stopped
    INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); nothing published


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM reached the command. A BaseException (like KeyboardInterrupt) so that
    no `except Exception` swallows it; unlike KeyboardInterrupt, click does not turn it into
    "Aborted!" with exit 1."""


class CommandFailed(Exception):
    """A failure to report to the user as one line, with its exit code."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def install_interrupt_handlers() -> None:
    """Ctrl-C (SIGINT) and SIGTERM raise Interrupted in the main thread. Dagster replaces the
    handlers while a run executes and raises its own interrupt inside the running step; the
    runner turns that into Interrupted too."""
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)


def one_line(exc: BaseException) -> str:
    """The first line of an error in the user's terms: no `module.Class: ` prefix, no
    traceback; an OS error as its reason and file."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    message = lines[0] if lines else "failed without a message"
    head, _, rest = message.partition(": ")
    if rest and " " not in head and (head[:1].isupper() or "." in head):
        return rest  # e.g. "duckdb.IOException: ..." or "ValueError: ..."
    return message


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> NoReturn:
    """Print `error: <message>` on stderr and exit with `code`."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(int(code))
