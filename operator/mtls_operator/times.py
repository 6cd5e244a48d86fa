"""Time as the operator writes and reads it, and the clock that code with a loop is given.

Every timestamp the operator writes (Secret annotations, status, Events, CA rotation phases,
messages) is RFC 3339 in UTC with a ``Z`` and whole seconds. The annotations are read back after a
restart, so every writer converts to UTC first: a clock with another offset must never produce a
string that a reader takes for UTC. Pure code takes ``now`` as an argument and never calls a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Clock", "format_micro_time", "format_time", "parse_time"]

# Returns the current time, timezone-aware (the wall clock, or a test's fake one).
Clock = Callable[[], datetime]


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, whole seconds: ``2026-11-27T08:00:00Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)  # a naive moment is taken as local time, as strftime would
    # An f-string, not strftime: several per certificate written, and strftime costs a few times more.
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z")


def format_micro_time(moment: datetime) -> str:
    """Kubernetes' MicroTime (a Lease's times), in UTC: ``2026-11-27T08:00:00.000000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time or MicroTime as an aware UTC datetime; ``None`` when absent or unreadable.

    A time without an offset is taken as UTC (what Kubernetes means by it).
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
