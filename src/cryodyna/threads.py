"""CPU thread count that holds up when the cores are shared with other work.

On a shared machine, torch's OpenMP threads spin against other processes on the same cores: with
one thread per core and a second busy process, a step can become 5-40x slower, while one thread
fewer keeps most of the speed.  So, unless ``optim.threads`` fixes the count:

* at start, every command (training included) uses one thread per *free* core: the cores this
  process may use (its CPU affinity, at most the physical cores), less the load measured on them
  over 0.2 s (``/proc/stat``), divided among the processes of this node under torchrun
  (``LOCAL_WORLD_SIZE``);
* during training (one process, CPU), :class:`ThreadGovernor` times a few steps at the current
  count and at half / double it, shortly after the start and then every 30 s, and keeps the
  fastest, so that work that starts or stops on the machine later is followed too.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger("cryodyna")


def allowed_cpus() -> list[int]:
    """The CPU ids this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int]) -> int:
    """Physical cores among ``cpus`` (hyper-threads of one core count once; all of them when the
    topology is not readable)."""
    siblings = set()
    for cpu in cpus:
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            siblings.add(path.read_text().strip())
        except OSError:
            return len(cpus)
    return max(1, len(siblings))


def _cpu_times(cpus: list[int]) -> dict[int, tuple[int, int]] | None:
    """(idle, total) jiffies per CPU from /proc/stat; None where it cannot be read."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    times = {}
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            numbers = [int(v) for v in values[:8]]
            times[int(name[3:])] = (numbers[3] + numbers[4], sum(numbers))  # idle + iowait, all
    return times if len(times) == len(cpus) else None


def busy_cores(cpus: list[int], seconds: float = 0.2) -> float | None:
    """Cores' worth of work other processes ran on ``cpus`` over ``seconds`` (this process is
    asleep meanwhile); None where /proc/stat is not available."""
    before = _cpu_times(cpus)
    time.sleep(seconds)
    after = _cpu_times(cpus)
    if before is None or after is None:
        return None
    busy = 0.0
    for cpu in cpus:
        idle, total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        busy += 1.0 - idle / total if total > 0 else 0.0
    return busy


@dataclass(frozen=True)
class ThreadChoice:
    """Threads to use and the cores they were chosen from (for the start banner)."""

    threads: int
    limit: int  # the most threads worth trying: this process's share of the cores it may use
    reason: str


def choose_threads(requested: int = 0) -> ThreadChoice:
    """``requested`` threads (``optim.threads``), or 0: one per free core (module docstring)."""
    cpus = allowed_cpus()
    share = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    limit = max(1, physical_cores(cpus) // share)
    if requested:
        return ThreadChoice(requested, requested, "optim.threads")
    busy = busy_cores(cpus)
    if busy is None:
        return ThreadChoice(limit, limit, f"{limit} of {len(cpus)} cores (load not readable)")
    free = max(1, int(len(cpus) - busy + 0.3) // share)
    threads = min(limit, free)
    return ThreadChoice(threads, limit, f"{len(cpus) - busy:.1f} of {len(cpus)} cores free at start"
                        + (f", shared by {share} processes" if share > 1 else ""))


@dataclass
class ThreadGovernor:
    """Re-chooses the thread count from measured step times (module docstring).

    Call :meth:`step_done` with the duration of each training step (seconds, compute only).
    ``enabled`` False (a fixed ``optim.threads``, a GPU, several processes) makes it a no-op.
    """

    threads: int
    limit: int
    enabled: bool = True
    first_probe_steps: int = 10  # steps before the first check (the first ones are warm-up)
    recheck_s: float = 30.0
    probe_steps: int = 5  # timed steps per candidate, after one step to settle
    margin: float = 0.9  # another count must be this much faster (time ratio) to be taken
    _steps: int = 0
    _last_probe: float = field(default_factory=time.perf_counter)
    _queue: list[int] = field(default_factory=list)
    _times: dict[int, list[float]] = field(default_factory=dict)
    _probing: int | None = None

    def __post_init__(self) -> None:
        self.enabled = self.enabled and self.limit > 1
        torch.set_num_threads(self.threads)

    def candidates(self) -> list[int]:
        """Counts to time against the current one: half and double it, within 1..limit."""
        return sorted({max(1, self.threads // 2), min(self.limit, self.threads * 2)} - {self.threads})

    def step_done(self, seconds: float) -> None:
        if not self.enabled:
            return
        self._steps += 1
        if self._probing is None:
            due = self._steps == self.first_probe_steps or time.perf_counter() - self._last_probe > self.recheck_s
            if due and self._steps >= self.first_probe_steps:
                self._start_probe()
            return
        samples = self._times.setdefault(self._probing, [])
        samples.append(seconds)
        if len(samples) > self.probe_steps:  # the first step after a switch settles the thread pool
            self._next_candidate()

    def _start_probe(self) -> None:
        self._queue = [self.threads, *self.candidates()]
        self._times = {}
        self._next_candidate()

    def _next_candidate(self) -> None:
        if self._queue:
            self._probing = self._queue.pop(0)
            torch.set_num_threads(self._probing)
            return
        medians = {n: statistics.median(t[1:]) for n, t in self._times.items()}
        best = min(medians, key=medians.get)
        if best != self.threads and medians[best] < self.margin * medians[self.threads]:
            log.info("CPU threads %d -> %d: a step took %.3g s with %d and %.3g s with %d (other work on the cores "
                     "changed; optim.threads fixes the count)", self.threads, best, medians[self.threads], self.threads,
                     medians[best], best)
            self.threads = best
        torch.set_num_threads(self.threads)
        self._probing = None
        self._last_probe = time.perf_counter()
