"""SIGINT / SIGTERM during training: recorded, not raised, so the loop can stop at a step boundary
with a checkpoint (``TrainingLoop.fit``)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interrupt_signals() -> Iterator[list[int]]:
    """While active, SIGINT and SIGTERM append their number to the yielded list instead of stopping
    the process; the previous handlers come back on exit.  Outside the main thread (where Python
    cannot install handlers) the list stays empty and signals act as usual."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
