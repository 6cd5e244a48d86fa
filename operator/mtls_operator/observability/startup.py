"""How long start-up took, phase by phase, in seconds since the process started.

A restart over thousands of valid certificates should reach its first full look at every identity in
seconds; when it does not, these say where the time went: ``imports`` (the interpreter and the
operator's modules), ``runtime`` (kopf up and the runtime started), ``lists`` (the opted-in pods and the
managed Secrets listed), ``store`` (the watched store built from them), ``first_look`` (every identity's
first pass over the store done: its status and decisions made for all its pods and Secrets). They are
logged once and published as ``mtls_startup_seconds{phase}``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PHASES = ("imports", "runtime", "lists", "store", "first_look")


def _process_age() -> float:
    """Seconds since this process started, by the kernel's start time (0 where /proc cannot tell)."""
    try:
        # Field 22 of /proc/self/stat: the start time in clock ticks since boot (the comm field may hold spaces).
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


# The process's start on the monotonic clock (this module is imported first by the command line).
_STARTED = time.monotonic() - _process_age()
_imports_done: float | None = None


def since_start() -> float:
    return time.monotonic() - _STARTED


def imports_done() -> None:
    """The command line has imported what the operator runs on (once per process)."""
    global _imports_done  # one process, one start
    if _imports_done is None:
        _imports_done = since_start()


class StartupPhases:
    """The end of each start-up phase of one operator, in seconds since the process started; the first
    time only (a phase is not ended again by a later list or pass)."""

    def __init__(self) -> None:
        self.ended: dict[str, float] = {}
        if _imports_done is not None:
            self.ended["imports"] = _imports_done

    def end(self, phase: str, at: float | None = None) -> bool:
        """Record the phase's end, now or ``at`` (a ``since_start()`` taken earlier); returns whether this was
        its first."""
        if phase in self.ended:
            return False
        self.ended[phase] = since_start() if at is None else at
        return True

    def summary(self) -> str:
        return ", ".join(f"{phase} {self.ended[phase]:.2f}s" for phase in PHASES if phase in self.ended)
