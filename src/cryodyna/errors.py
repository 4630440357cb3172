"""Error types raised for problems a user can fix (bad files, bad options).

Every message names the file, the row or field, and what was expected, so the CLI can print it
as one line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class CryodynaError(Exception):
    """Base class of all errors that describe a user-fixable problem."""


class InputError(CryodynaError):
    """A file the user gave is missing, unreadable or malformed.

    Parameters
    ----------
    path:
        The offending file.
    problem:
        What is wrong, including the row/field when there is one and what was expected.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class ConfigError(CryodynaError):
    """A configuration key or value is invalid."""


class TrainingError(CryodynaError):
    """Training cannot continue (e.g. the loss stays non-finite); the last checkpoint is intact."""


class TrainingInterrupted(CryodynaError):
    """Training was stopped by SIGINT/SIGTERM after saving a checkpoint; the message says how to resume."""
