"""Rich progress bars shared by the commands."""

from __future__ import annotations

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def progress_bar(description: str, total: int):
    """Context manager yielding ``update(done, total)`` that drives a rich progress bar."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), transient=False,
    ) as prog:
        task = prog.add_task(description, total=total)

        def update(done: int, total_: int) -> None:
            prog.update(task, completed=done, total=total_)

        yield update
