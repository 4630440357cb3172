"""Rich progress bars shared by the commands."""

from __future__ import annotations

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """Context manager yielding ``update(done, total)`` that drives a rich progress bar (hidden
    when not ``enabled``, e.g. on non-zero ranks)."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), transient=False, disable=not enabled,
    ) as prog:
        task = prog.add_task(description, total=total)

        def update(done: int, total_: int) -> None:
            prog.update(task, completed=done, total=total_)

        yield update
