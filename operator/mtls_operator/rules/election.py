"""Leader election on a ``coordination.k8s.io/v1`` Lease: client-go's rules, as plain data.

Pure: no kopf, no kubernetes, never reads the clock (``now`` is an argument, aware UTC). The loop
that applies these rules is ``controller/leader.py``.

A Lease is free when it is absent, unheld (``holderIdentity`` empty: its holder released it), or
expired. Like client-go, expiry is measured on the *observer's* clock: a Lease held by another
replica expires ``leaseDurationSeconds`` after this replica first saw its current record (holder,
renewTime, ...) unchanged, never by comparing the holder's ``renewTime`` with our clock, so clock
skew between nodes cannot make two replicas lead at once. ``leaseTransitions`` counts the changes
of holder. A leader stops leading when it has not renewed for ``renew_deadline`` (2/3 of the lease
duration), so it stops before anyone else may take over: there are never two issuers.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from mtls_operator.times import format_micro_time, parse_time

__all__ = [
    "RELEASED_LEASE_DURATION",
    "Action",
    "Decision",
    "LeaseRecord",
    "Observation",
    "Timing",
    "decide",
    "leadership_left",
    "observe",
    "release_record",
]

# client-go's ReleaseOnCancel writes a released Lease with a duration of one second.
RELEASED_LEASE_DURATION: Final = timedelta(seconds=1)
# client-go's defaults (15s lease, 10s renew deadline, 2s retry period) as fractions of the lease.
_RENEW_DEADLINE_FRACTION: Final = 2 / 3
_RETRY_PERIOD_FRACTION: Final = 2 / 15


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec. ``holder`` is ``""`` for an unheld (released) Lease."""

    holder: str
    lease_duration: timedelta | None
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: Mapping[str, Any] | None) -> LeaseRecord | None:
        """The record of a Lease object as read from the API (None for no Lease)."""
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        seconds = spec.get("leaseDurationSeconds")
        transitions = spec.get("leaseTransitions")
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration=timedelta(seconds=seconds) if isinstance(seconds, int) and seconds > 0 else None,
            acquire_time=parse_time(spec.get("acquireTime")),
            renew_time=parse_time(spec.get("renewTime")),
            transitions=transitions if isinstance(transitions, int) and transitions >= 0 else 0,
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.holder, "leaseTransitions": self.transitions}
        if self.lease_duration is not None:
            # Rounded up: others wait at least as long as we promise to hold it.
            spec["leaseDurationSeconds"] = math.ceil(self.lease_duration.total_seconds())
        if self.acquire_time is not None:
            spec["acquireTime"] = format_micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = format_micro_time(self.renew_time)
        return spec


@dataclass(frozen=True)
class Timing:
    """How long a Lease lasts, how long a leader keeps leading without renewing, how often to try."""

    lease_duration: timedelta
    renew_deadline: timedelta
    retry_period: timedelta

    def __post_init__(self) -> None:
        if not timedelta(0) < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry period < renew deadline < lease duration")

    @classmethod
    def for_lease_duration(cls, lease_duration: timedelta) -> Timing:
        return cls(
            lease_duration=lease_duration,
            renew_deadline=lease_duration * _RENEW_DEADLINE_FRACTION,
            retry_period=lease_duration * _RETRY_PERIOD_FRACTION,
        )


@dataclass(frozen=True)
class Observation:
    """The record this replica last read, and when (its clock) it first read that very record."""

    record: LeaseRecord | None
    since: datetime


def observe(previous: Observation | None, record: LeaseRecord | None, now: datetime) -> Observation:
    """The observation after reading ``record`` at ``now``: an unchanged record keeps its ``since``."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


class Action(enum.Enum):
    # Write ``Decision.record`` (create the Lease when there is none): it is free, or ours already.
    ACQUIRE = "acquire"
    # We lead: write ``Decision.record`` to extend the Lease.
    RENEW = "renew"
    # Another replica holds it: look again after ``Decision.wait``.
    WAIT = "wait"
    # We led, but the Lease is another's, unheld or gone: stop leading now, then compete again.
    LOST = "lost"


@dataclass(frozen=True)
class Decision:
    action: Action
    # Until the next look at the Lease (after a successful write, too).
    wait: timedelta
    # What to write (ACQUIRE, RENEW).
    record: LeaseRecord | None = None
    # Who holds the Lease as read (WAIT, LOST); "" when nobody does.
    holder: str = ""


def decide(observation: Observation, *, me: str, now: datetime, timing: Timing, leading: bool) -> Decision:
    """What replica ``me`` does with the Lease it has just read (``observation``), at ``now``."""
    record = observation.record
    if leading:
        if record is None or record.holder != me:
            return Decision(Action.LOST, timedelta(0), holder=record.holder if record else "")
        renewed = replace(record, lease_duration=timing.lease_duration, renew_time=now)
        return Decision(Action.RENEW, timing.retry_period, renewed)
    if record is None:
        created = LeaseRecord(me, timing.lease_duration, now, now, 0)
        return Decision(Action.ACQUIRE, timing.retry_period, created)
    if record.holder == me:
        # Ours from before (this replica restarted under the same name): keep it, as client-go does.
        resumed = replace(record, lease_duration=timing.lease_duration, renew_time=now)
        return Decision(Action.ACQUIRE, timing.retry_period, resumed, holder=me)
    # A Lease without a readable duration is taken to last as long as ours: waiting is the safe error.
    expires = observation.since + (record.lease_duration or timing.lease_duration)
    if record.holder and now < expires:
        return Decision(Action.WAIT, min(timing.retry_period, expires - now), holder=record.holder)
    taken = LeaseRecord(me, timing.lease_duration, now, now, record.transitions + 1)
    return Decision(Action.ACQUIRE, timing.retry_period, taken, holder=record.holder)


def leadership_left(renewed_at: datetime, now: datetime, timing: Timing) -> timedelta:
    """How much longer a leader whose last successful renewal started at ``renewed_at`` may lead."""
    return renewed_at + timing.renew_deadline - now


def release_record(record: LeaseRecord, now: datetime) -> LeaseRecord:
    """The record a leader writes when it stops on purpose: unheld, so a successor takes it at once."""
    return LeaseRecord("", RELEASED_LEASE_DURATION, now, now, record.transitions)
