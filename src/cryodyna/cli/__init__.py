"""``cryodyna`` command line: parse, validate, call the library (no logic here).  Commands live in
one module per group; this module wires them to the application and runs it."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from cryodyna.cli import analysis_commands, data_commands, training_commands  # noqa: F401  (register the commands)
from cryodyna.cli.common import app, err_console
from cryodyna.errors import CryodynaError, TrainingInterrupted

__all__ = ["app", "main"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


class _ConsoleLog(logging.Handler):
    """The log's informational lines (resumes, evaluations, start-up facts) on the console."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(record.getMessage(), style="dim" if record.levelno < logging.WARNING else "yellow",
                          highlight=False, markup=False)


def main() -> None:
    """Console-script entry point: warnings print as one line; the log's lines appear on the console
    (rank 0 only); user errors print one line and exit with status 2; an interrupted training says
    how to resume and exits with status 130."""
    warnings.showwarning = _show_warning
    if os.environ.get("RANK", "0") == "0":
        log = logging.getLogger("cryodyna")
        log.setLevel(logging.INFO)
        log.addHandler(_ConsoleLog())
    try:
        app()
    except TrainingInterrupted as exc:
        err_console.print(f"[bold yellow]interrupted:[/bold yellow] {exc}", highlight=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("[bold yellow]interrupted[/bold yellow] (outside the training steps: no checkpoint written; re-run the command to continue)")
        sys.exit(130)
    except CryodynaError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False)
        sys.exit(2)

