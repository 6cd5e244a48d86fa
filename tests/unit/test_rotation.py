"""rotation.py: the phases of a CA rotation as plain data, table-driven on a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mtls_operator.rules.rotation import (
    CA_EXPIRY_WARNING,
    ORIGIN_GENERATED,
    ORIGIN_SUPPLIED,
    Decision,
    Fleet,
    Phase,
    RotationState,
    Step,
    auto_rotation_due,
    enter,
    expiry_warning_due,
    next_step,
    read_rotation,
    rotation_annotations,
    stall_bound,
    stalled,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DELAY = timedelta(minutes=2)
CAUGHT_UP = Fleet(objects=10, stale_bundle=0, leaves_of_previous=0)


def state(phase: Phase, settled: timedelta | None = None) -> RotationState:
    return RotationState(phase=phase, since=NOW - timedelta(hours=1), signing_fingerprint="sha256:a",
                         settled_at=NOW - settled if settled is not None else None)


STEPS = [
    # phase, fleet, settled (how long ago), expected step, expected wait
    pytest.param(Phase.IDLE, CAUGHT_UP, None, Step.WAIT, timedelta(0), id="idle-does-nothing"),
    pytest.param(Phase.DISTRIBUTING, Fleet(10, 3, 0), None, Step.WAIT, timedelta(0), id="distributing-behind"),
    pytest.param(Phase.DISTRIBUTING, CAUGHT_UP, None, Step.SETTLED, DELAY, id="distributing-caught-up"),
    pytest.param(Phase.DISTRIBUTING, CAUGHT_UP, timedelta(seconds=30), Step.WAIT, timedelta(seconds=90),
                 id="distributing-kubelet-delay"),
    pytest.param(Phase.DISTRIBUTING, CAUGHT_UP, DELAY, Step.SWITCH, timedelta(0), id="distributing-switch"),
    pytest.param(Phase.DISTRIBUTING, Fleet(10, 1, 0), DELAY, Step.WAIT, timedelta(0),
                 id="distributing-new-pod-behind-after-settling"),
    pytest.param(Phase.REISSUING, Fleet(10, 0, 4), None, Step.WAIT, timedelta(0), id="reissuing-old-leaves"),
    pytest.param(Phase.REISSUING, CAUGHT_UP, None, Step.SETTLED, DELAY, id="reissuing-done"),
    pytest.param(Phase.REISSUING, CAUGHT_UP, timedelta(minutes=1), Step.WAIT, timedelta(minutes=1),
                 id="reissuing-kubelet-delay"),
    pytest.param(Phase.REISSUING, CAUGHT_UP, timedelta(minutes=3), Step.RETIRE, timedelta(0), id="reissuing-retire"),
    pytest.param(Phase.RETIRING, Fleet(10, 2, 0), None, Step.WAIT, timedelta(0), id="retiring-behind"),
    pytest.param(Phase.RETIRING, CAUGHT_UP, None, Step.FINISH, timedelta(0), id="retiring-finish"),
]


@pytest.mark.parametrize(("phase", "fleet", "settled", "step", "wait"), STEPS)
def test_next_step(phase: Phase, fleet: Fleet, settled: timedelta | None, step: Step, wait: timedelta) -> None:
    decision = next_step(state(phase, settled), fleet, NOW, DELAY)
    assert decision.step is step
    assert decision.wait == wait
    assert decision.message


def test_a_zero_delay_switches_on_the_next_look() -> None:
    assert next_step(state(Phase.DISTRIBUTING), CAUGHT_UP, NOW, timedelta(0)).step is Step.SETTLED
    assert next_step(state(Phase.DISTRIBUTING, timedelta(0)), CAUGHT_UP, NOW, timedelta(0)).step is Step.SWITCH


def test_waiting_messages_say_what_is_left() -> None:
    assert "4 certificate(s) of the previous CA" in next_step(state(Phase.REISSUING), Fleet(10, 0, 4), NOW,
                                                              DELAY).message
    assert "3 of 10" in next_step(state(Phase.DISTRIBUTING), Fleet(10, 3, 0), NOW, DELAY).message


def test_annotations_round_trip() -> None:
    full = RotationState(
        phase=Phase.REISSUING,
        since=NOW,
        signing_fingerprint="sha256:b",
        signing_not_after=NOW + timedelta(days=365),
        previous_fingerprint="sha256:a",
        previous_not_after=NOW + timedelta(days=100),
        settled_at=NOW,
        origin=ORIGIN_GENERATED,
    )
    annotations = {key: value for key, value in rotation_annotations(full).items() if value is not None}
    assert annotations["mtls.dev/rotation-phase"] == "Reissuing"
    assert annotations["mtls.dev/previous-ca-not-after"] == "2027-03-07T12:00:00Z"
    assert read_rotation(annotations) == full


def test_annotations_that_a_phase_does_not_use_are_removed() -> None:
    patch = rotation_annotations(RotationState(phase=Phase.IDLE, signing_fingerprint="sha256:b"))
    assert patch["mtls.dev/next-ca-fingerprint"] is None
    assert patch["mtls.dev/previous-ca-fingerprint"] is None
    assert patch["mtls.dev/rotate"] is None


READS = [
    pytest.param({}, RotationState(), id="nothing-is-idle"),
    pytest.param({"mtls.dev/rotation-phase": "Sideways"}, RotationState(), id="unknown-phase-is-idle"),
    pytest.param({"mtls.dev/rotation-phase-since": "yesterday"}, RotationState(), id="unreadable-time"),
    pytest.param({"mtls.dev/rotate": "True"}, RotationState(rotate_requested=True), id="rotate-any-case"),
    pytest.param({"mtls.dev/rotate": "yes"}, RotationState(), id="rotate-only-true"),
    pytest.param({"mtls.dev/ca-origin": "supplied"}, RotationState(origin=ORIGIN_SUPPLIED), id="origin"),
    pytest.param({"mtls.dev/ca-origin": "bought"}, RotationState(), id="unknown-origin"),
]


@pytest.mark.parametrize(("annotations", "expected"), READS)
def test_read_rotation(annotations: dict[str, str], expected: RotationState) -> None:
    assert read_rotation(annotations) == expected


def test_enter_resets_the_settle_mark() -> None:
    moved = enter(state(Phase.DISTRIBUTING, timedelta(minutes=5)), Phase.REISSUING, NOW + timedelta(microseconds=5))
    assert moved.phase is Phase.REISSUING
    assert moved.settled_at is None
    assert moved.since == NOW


LIFETIME = timedelta(days=365)
AUTO = [
    pytest.param(timedelta(0), False, id="new"),
    pytest.param(LIFETIME * 2 / 3 - timedelta(seconds=1), False, id="just-before-two-thirds"),
    pytest.param(LIFETIME * 2 / 3, True, id="two-thirds"),
    pytest.param(LIFETIME, True, id="expiring"),
]


@pytest.mark.parametrize(("age", "due"), AUTO)
def test_auto_rotation_at_two_thirds(age: timedelta, due: bool) -> None:
    born = NOW - age
    assert auto_rotation_due(born, born + LIFETIME, NOW) is due


@pytest.mark.parametrize(
    ("left", "due"),
    [(CA_EXPIRY_WARNING + timedelta(seconds=1), False), (CA_EXPIRY_WARNING, True), (timedelta(days=1), True)],
    ids=["31-days", "30-days", "1-day"],
)
def test_expiry_warning_30_days_ahead(left: timedelta, due: bool) -> None:
    assert expiry_warning_due(NOW + left, NOW) is due


def test_phase_numbers_for_the_metric() -> None:
    assert [phase.number for phase in Phase] == [0, 1, 2, 3]
    assert [str(phase) for phase in Phase] == ["Idle", "Distributing", "Reissuing", "Retiring"]


@pytest.mark.parametrize(
    ("objects", "rate", "delay", "bound"),
    [
        (0, 50.0, timedelta(0), timedelta(minutes=10)),
        (0, 50.0, timedelta(minutes=2), timedelta(minutes=16)),
        (3000, 50.0, timedelta(minutes=2), timedelta(minutes=10 + 3 * (1 + 2))),
        (10_000, 1000.0, timedelta(0), timedelta(minutes=10, seconds=30)),
        (5, 0.0, timedelta(minutes=1), timedelta(minutes=13)),
    ],
)
def test_stall_bound_grows_with_the_fleet_and_the_propagation_delay(
    objects: int, rate: float, delay: timedelta, bound: timedelta
) -> None:
    assert stall_bound(objects, rate, delay) == bound


BOUND = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("phase", "since", "step", "expected"),
    [
        (Phase.DISTRIBUTING, NOW - BOUND - timedelta(seconds=1), Step.WAIT, True),
        (Phase.DISTRIBUTING, NOW - BOUND, Step.WAIT, False),
        (Phase.REISSUING, NOW - 2 * BOUND, Step.SWITCH, False),
        (Phase.IDLE, NOW - 10 * BOUND, Step.WAIT, False),
        (Phase.RETIRING, None, Step.WAIT, False),
        (Phase.DISTRIBUTING, NOW - 2 * BOUND, "timed", False),
    ],
    ids=["past the bound", "at the bound", "moving on", "idle", "no start time", "propagation delay"],
)
def test_only_a_phase_waiting_past_its_bound_for_objects_is_stalled(
    phase: Phase, since: datetime | None, step: Step | str, expected: bool
) -> None:
    state = RotationState(phase=phase, since=since)
    decision = Decision(Step.WAIT, "kubelet", timedelta(seconds=30)) if step == "timed" else Decision(Step(step), "x")
    assert stalled(state, decision, BOUND, NOW) is expected


def test_reissuing_waits_for_the_kubelets_refresh_of_the_previous_cas_pod_certificates() -> None:
    due = NOW + timedelta(minutes=40)
    held = Fleet(10, 0, 0, held_by_kubelets=2, refresh_by=due)
    decision = next_step(state(Phase.REISSUING, settled=DELAY), held, NOW, DELAY)
    assert (decision.step, decision.wait) == (Step.WAIT, timedelta(minutes=40))
    assert "2 pod certificate(s) of the previous CA" in decision.message
    assert "the last is due by 2026-11-27T12:40:00Z" in decision.message
    # A timed wait is no stall, however long the refresh is ahead.
    assert not stalled(state(Phase.REISSUING), decision, timedelta(minutes=10), NOW + timedelta(minutes=30))
    # Past the refresh time the kubelet is late: a plain wait, which the stall bound watches.
    late = next_step(state(Phase.REISSUING), held, due + timedelta(minutes=1), DELAY)
    assert (late.step, late.wait) == (Step.WAIT, timedelta(0))
    # Once none is held, the old CA may go (after the propagation delay, as ever).
    done = next_step(state(Phase.REISSUING, settled=DELAY), CAUGHT_UP, NOW, DELAY)
    assert done.step is Step.RETIRE
    # Other phases do not wait for them.
    assert next_step(state(Phase.RETIRING), held, NOW, DELAY).step is Step.FINISH
