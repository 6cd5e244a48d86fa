"""election.py: client-go's Lease rules on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtls_operator.rules.election import (
    RELEASED_LEASE_DURATION,
    Action,
    LeaseRecord,
    Observation,
    Timing,
    decide,
    leadership_left,
    observe,
    release_record,
)

T0 = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)
TIMING = Timing.for_lease_duration(15 * S)  # client-go's defaults: 15s, 10s, 2s
ME = "mtls-operator-a"
OTHER = "mtls-operator-b"


def held(
    holder: str, *, duration: timedelta | None = 15 * S, renewed: datetime = T0, transitions: int = 3
) -> LeaseRecord:
    return LeaseRecord(holder, duration, T0 - 60 * S, renewed, transitions)


def test_timing_follows_client_go_defaults() -> None:
    assert (TIMING.lease_duration, TIMING.renew_deadline, TIMING.retry_period) == (15 * S, 10 * S, 2 * S)
    three = Timing.for_lease_duration(3 * S)
    assert (three.renew_deadline, three.retry_period) == (2 * S, timedelta(milliseconds=400))


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [
        pytest.param(15, 15, 2, id="deadline-not-below-duration"),
        pytest.param(15, 10, 10, id="retry-not-below-deadline"),
        pytest.param(15, 10, 0, id="no-retry-period"),
    ],
)
def test_timing_refuses_an_unsafe_order(duration: int, deadline: int, retry: int) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        Timing(duration * S, deadline * S, retry * S)


# --- the record -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2026-11-27T07:59:00.000000Z",
             "renewTime": "2026-11-27T08:00:00.000000Z", "leaseTransitions": 3},
            held("a"), id="complete",
        ),
        pytest.param({}, LeaseRecord("", None, None, None, 0), id="empty-spec"),
        pytest.param({"holderIdentity": None, "leaseDurationSeconds": 0, "leaseTransitions": -1},
                     LeaseRecord("", None, None, None, 0), id="nonsense-values"),
        pytest.param({"holderIdentity": "a", "leaseDurationSeconds": "15", "renewTime": "soon"},
                     LeaseRecord("a", None, None, None, 0), id="wrong-types"),
    ],
)
def test_record_from_lease(spec: dict[str, Any], expected: LeaseRecord) -> None:
    assert LeaseRecord.from_lease({"metadata": {"name": "l"}, "spec": spec}) == expected


def test_no_lease_has_no_record() -> None:
    assert LeaseRecord.from_lease(None) is None
    assert LeaseRecord.from_lease({"metadata": {"name": "l"}}) == LeaseRecord("", None, None, None, 0)


@pytest.mark.parametrize(
    ("record", "spec"),
    [
        pytest.param(held("a"), {"holderIdentity": "a", "leaseDurationSeconds": 15,
                                 "acquireTime": "2026-11-27T07:59:00.000000Z",
                                 "renewTime": "2026-11-27T08:00:00.000000Z", "leaseTransitions": 3}, id="held"),
        pytest.param(LeaseRecord("a", timedelta(milliseconds=2500), None, None, 0),
                     {"holderIdentity": "a", "leaseDurationSeconds": 3, "leaseTransitions": 0},
                     id="fraction-rounded-up"),
        pytest.param(LeaseRecord("", None, None, None, 7), {"holderIdentity": "", "leaseTransitions": 7},
                     id="bare"),
    ],
)
def test_record_to_spec(record: LeaseRecord, spec: dict[str, Any]) -> None:
    assert record.to_spec() == spec


# --- observing --------------------------------------------------------------------------------------


def test_an_unchanged_record_keeps_when_it_was_first_seen() -> None:
    first = observe(None, held(OTHER), T0)
    assert observe(first, held(OTHER), T0 + 5 * S) is first
    assert observe(first, held(OTHER, renewed=T0 + 2 * S), T0 + 5 * S) == Observation(
        held(OTHER, renewed=T0 + 2 * S), T0 + 5 * S)
    assert observe(first, None, T0 + 5 * S) == Observation(None, T0 + 5 * S)
    assert observe(Observation(None, T0), None, T0 + 5 * S).since == T0


# --- deciding -----------------------------------------------------------------------------------------

# (observed record, first seen, now, leading) -> (action, wait, record to write, holder)
DECISIONS = [
    pytest.param(None, T0, T0, False, Action.ACQUIRE, 2 * S, LeaseRecord(ME, 15 * S, T0, T0, 0), "",
                 id="absent-is-created"),
    pytest.param(held(""), T0, T0, False, Action.ACQUIRE, 2 * S, LeaseRecord(ME, 15 * S, T0, T0, 4), "",
                 id="released-is-taken-at-once"),
    pytest.param(held(OTHER), T0, T0 + 5 * S, False, Action.WAIT, 2 * S, None, OTHER,
                 id="held-waits-a-retry-period"),
    pytest.param(held(OTHER), T0, T0 + 14 * S, False, Action.WAIT, 1 * S, None, OTHER,
                 id="held-waits-until-expiry-when-sooner"),
    pytest.param(held(OTHER), T0, T0 + 15 * S, False, Action.ACQUIRE, 2 * S,
                 LeaseRecord(ME, 15 * S, T0 + 15 * S, T0 + 15 * S, 4), OTHER, id="expired-is-taken"),
    pytest.param(held(OTHER, duration=5 * S), T0, T0 + 5 * S, False, Action.ACQUIRE, 2 * S,
                 LeaseRecord(ME, 15 * S, T0 + 5 * S, T0 + 5 * S, 4), OTHER, id="holders-duration-counts"),
    pytest.param(held(OTHER, duration=None), T0, T0 + 14 * S, False, Action.WAIT, 1 * S, None, OTHER,
                 id="no-duration-lasts-as-long-as-ours"),
    # Expiry runs on our clock from when we first saw the record, whatever renewTime says.
    pytest.param(held(OTHER, renewed=T0 - 3600 * S), T0, T0 + 5 * S, False, Action.WAIT, 2 * S, None, OTHER,
                 id="stale-renew-time-still-waits-a-full-duration"),
    pytest.param(held(OTHER, renewed=T0 + 3600 * S), T0, T0 + 15 * S, False, Action.ACQUIRE, 2 * S,
                 LeaseRecord(ME, 15 * S, T0 + 15 * S, T0 + 15 * S, 4), OTHER,
                 id="future-renew-time-does-not-hold-it-forever"),
    pytest.param(held(ME, duration=5 * S), T0, T0 + S, False, Action.ACQUIRE, 2 * S,
                 LeaseRecord(ME, 15 * S, T0 - 60 * S, T0 + S, 3), ME, id="ours-from-before-is-resumed"),
    pytest.param(held(ME), T0, T0 + 2 * S, True, Action.RENEW, 2 * S,
                 LeaseRecord(ME, 15 * S, T0 - 60 * S, T0 + 2 * S, 3), "", id="leader-renews"),
    pytest.param(held(OTHER), T0, T0 + 2 * S, True, Action.LOST, timedelta(0), None, OTHER,
                 id="leader-sees-another-holder"),
    pytest.param(held(""), T0, T0 + 2 * S, True, Action.LOST, timedelta(0), None, "", id="leader-sees-it-released"),
    pytest.param(None, T0, T0 + 2 * S, True, Action.LOST, timedelta(0), None, "", id="leader-sees-it-deleted"),
]


@pytest.mark.parametrize(("record", "since", "now", "leading", "action", "wait", "written", "holder"), DECISIONS)
def test_decide(
    record: LeaseRecord | None,
    since: datetime,
    now: datetime,
    leading: bool,
    action: Action,
    wait: timedelta,
    written: LeaseRecord | None,
    holder: str,
) -> None:
    decision = decide(Observation(record, since), me=ME, now=now, timing=TIMING, leading=leading)
    assert (decision.action, decision.wait, decision.record, decision.holder) == (action, wait, written, holder)


@pytest.mark.parametrize(
    ("renewed_at", "now", "left"),
    [
        pytest.param(T0, T0, 10 * S, id="just-renewed"),
        pytest.param(T0, T0 + 9 * S, S, id="one-second-left"),
        pytest.param(T0, T0 + 10 * S, timedelta(0), id="deadline"),
        pytest.param(T0, T0 + 12 * S, -2 * S, id="past"),
    ],
)
def test_leadership_left(renewed_at: datetime, now: datetime, left: timedelta) -> None:
    assert leadership_left(renewed_at, now, TIMING) == left


def test_a_leader_stops_before_anyone_may_take_over() -> None:
    """The renew deadline ends leadership while every follower still sees the Lease as held."""
    for duration in (2, 3, 15, 60, 600):
        timing = Timing.for_lease_duration(duration * S)
        # The leader's last renewal started at T0; a follower saw its result no earlier.
        stops = T0 + timing.renew_deadline
        assert leadership_left(T0, stops, timing) == timedelta(0)
        follower = decide(Observation(held(OTHER, duration=duration * S), T0), me=ME, now=stops, timing=timing,
                          leading=False)
        assert follower.action is Action.WAIT


def test_release_clears_the_holder_and_keeps_the_count() -> None:
    released = release_record(held(ME, transitions=5), T0 + S)
    assert released == LeaseRecord("", RELEASED_LEASE_DURATION, T0 + S, T0 + S, 5)
    assert released.to_spec()["holderIdentity"] == ""
    successor = decide(Observation(released, T0 + S), me=OTHER, now=T0 + S, timing=TIMING, leading=False)
    assert (successor.action, successor.record) == (Action.ACQUIRE, LeaseRecord(OTHER, 15 * S, T0 + S, T0 + S, 6))
