"""CA rotation as plain data: its phases, what the CA Secret's annotations say, and the next step.

Pure: no kopf, no kubernetes; ``now`` is an argument. A rotation moves through phases, each
written on the CA Secret so that a restarted operator resumes it where it was:

``Idle``          one CA signs; the bundle holds its trust anchors.
``Distributing``  the new CA joins the bundle (old still signs). Once every pod Secret and trust
                  ConfigMap carries the new bundle, and the kubelet has had the propagation delay
                  to put it into every pod's files, signing switches.
``Reissuing``     the new CA signs; every leaf of the old CA is renewed (rate-limited), and every
                  pod certificate of the old CA a live pod holds is refreshed by its kubelet (at
                  its beginRefreshAt, or never past its expiry). Once none is left, and the
                  kubelet has had the propagation delay again, the old CA goes.
``Retiring``      the old CA is dropped from the bundle; once every pod Secret carries the final
                  bundle the rotation is over (``Idle``).

At no moment may a live pod present a certificate that a peer does not trust: the bundle always
holds every CA that signed a leaf still in use.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from mtls_operator.times import format_time, parse_time

__all__ = [
    "AUTO_ROTATION_FRACTION",
    "CA_EXPIRY_WARNING",
    "Fleet",
    "Phase",
    "RotationState",
    "Step",
    "auto_rotation_due",
    "expiry_warning_due",
    "next_step",
    "read_rotation",
    "rotation_annotations",
    "stall_bound",
    "stalled",
]

# The operator renews a CA it generated once this fraction of its lifetime has passed.
AUTO_ROTATION_FRACTION: Final = 2 / 3
# A CA the operator cannot renew (the user's) is announced this long before it expires.
CA_EXPIRY_WARNING: Final = timedelta(days=30)

PHASE_ANNOTATION: Final = "mtls.dev/rotation-phase"
PHASE_SINCE_ANNOTATION: Final = "mtls.dev/rotation-phase-since"
SIGNING_FINGERPRINT_ANNOTATION: Final = "mtls.dev/ca-fingerprint"
SIGNING_NOT_AFTER_ANNOTATION: Final = "mtls.dev/ca-not-after"
NEXT_FINGERPRINT_ANNOTATION: Final = "mtls.dev/next-ca-fingerprint"
NEXT_NOT_AFTER_ANNOTATION: Final = "mtls.dev/next-ca-not-after"
PREVIOUS_FINGERPRINT_ANNOTATION: Final = "mtls.dev/previous-ca-fingerprint"
PREVIOUS_NOT_AFTER_ANNOTATION: Final = "mtls.dev/previous-ca-not-after"
SETTLED_AT_ANNOTATION: Final = "mtls.dev/rotation-settled-at"
ORIGIN_ANNOTATION: Final = "mtls.dev/ca-origin"
NEXT_ORIGIN_ANNOTATION: Final = "mtls.dev/next-ca-origin"
ROTATE_ANNOTATION: Final = "mtls.dev/rotate"

ORIGIN_GENERATED: Final = "generated"
ORIGIN_SUPPLIED: Final = "supplied"


class Phase(enum.StrEnum):
    IDLE = "Idle"
    DISTRIBUTING = "Distributing"
    REISSUING = "Reissuing"
    RETIRING = "Retiring"

    @property
    def number(self) -> int:
        """The value of the ``mtls_ca_rotation_phase`` gauge: 0 idle, then 1, 2, 3 in order."""
        return list(Phase).index(self)


@dataclass(frozen=True)
class RotationState:
    """What the CA Secret's annotations say about the rotation."""

    phase: Phase = Phase.IDLE
    since: datetime | None = None
    signing_fingerprint: str | None = None
    signing_not_after: datetime | None = None
    next_fingerprint: str | None = None
    next_not_after: datetime | None = None
    previous_fingerprint: str | None = None
    previous_not_after: datetime | None = None
    # When the fleet was first seen settled in this phase (the propagation delay counts from it).
    settled_at: datetime | None = None
    # Whether the operator generated the CA (and may renew it) or a person supplied it.
    origin: str | None = None
    next_origin: str | None = None
    rotate_requested: bool = False


class Step(enum.StrEnum):
    WAIT = "wait"
    SETTLED = "settled"  # record that the fleet caught up; the propagation delay starts
    SWITCH = "switch"  # Distributing -> Reissuing
    RETIRE = "retire"  # Reissuing -> Retiring
    FINISH = "finish"  # Retiring -> Idle


@dataclass(frozen=True)
class Fleet:
    """What the cluster's pod Secrets (and trust ConfigMaps) hold, counted against the CA Secret."""

    objects: int  # pod Secrets and trust ConfigMaps
    stale_bundle: int  # of those, not carrying the current bundle
    leaves_of_previous: int  # pod Secrets whose leaf the previous CA signed
    # Pod certificates of the previous CA that live pods hold (delivery PodCertificate): the operator
    # cannot renew them, the kubelet asks again at their beginRefreshAt, the last of which is refresh_by.
    held_by_kubelets: int = 0
    refresh_by: datetime | None = None


@dataclass(frozen=True)
class Decision:
    step: Step
    message: str
    wait: timedelta = timedelta(0)


def _text(moment: datetime | None) -> str | None:
    return format_time(moment) if moment else None


def read_rotation(annotations: Mapping[str, str]) -> RotationState:
    """The rotation state from the CA Secret's annotations; anything unreadable reads as Idle."""
    try:
        phase = Phase(annotations.get(PHASE_ANNOTATION) or Phase.IDLE)
    except ValueError:
        phase = Phase.IDLE
    return RotationState(
        phase=phase,
        since=parse_time(annotations.get(PHASE_SINCE_ANNOTATION)),
        signing_fingerprint=annotations.get(SIGNING_FINGERPRINT_ANNOTATION) or None,
        signing_not_after=parse_time(annotations.get(SIGNING_NOT_AFTER_ANNOTATION)),
        next_fingerprint=annotations.get(NEXT_FINGERPRINT_ANNOTATION) or None,
        next_not_after=parse_time(annotations.get(NEXT_NOT_AFTER_ANNOTATION)),
        previous_fingerprint=annotations.get(PREVIOUS_FINGERPRINT_ANNOTATION) or None,
        previous_not_after=parse_time(annotations.get(PREVIOUS_NOT_AFTER_ANNOTATION)),
        settled_at=parse_time(annotations.get(SETTLED_AT_ANNOTATION)),
        origin=_origin(annotations.get(ORIGIN_ANNOTATION)),
        next_origin=_origin(annotations.get(NEXT_ORIGIN_ANNOTATION)),
        rotate_requested=(annotations.get(ROTATE_ANNOTATION) or "").lower() == "true",
    )


def _origin(text: str | None) -> str | None:
    return text if text in (ORIGIN_GENERATED, ORIGIN_SUPPLIED) else None


def rotation_annotations(state: RotationState) -> dict[str, str | None]:
    """The annotations for ``state``, as a merge patch: ``None`` removes what the phase does not use."""
    return {
        PHASE_ANNOTATION: str(state.phase),
        PHASE_SINCE_ANNOTATION: _text(state.since),
        SIGNING_FINGERPRINT_ANNOTATION: state.signing_fingerprint,
        SIGNING_NOT_AFTER_ANNOTATION: _text(state.signing_not_after),
        NEXT_FINGERPRINT_ANNOTATION: state.next_fingerprint,
        NEXT_NOT_AFTER_ANNOTATION: _text(state.next_not_after),
        PREVIOUS_FINGERPRINT_ANNOTATION: state.previous_fingerprint,
        PREVIOUS_NOT_AFTER_ANNOTATION: _text(state.previous_not_after),
        SETTLED_AT_ANNOTATION: _text(state.settled_at),
        ORIGIN_ANNOTATION: state.origin,
        NEXT_ORIGIN_ANNOTATION: state.next_origin,
        ROTATE_ANNOTATION: "true" if state.rotate_requested else None,
    }


def enter(state: RotationState, phase: Phase, now: datetime) -> RotationState:
    """``state`` moved to ``phase`` at ``now`` (the settle mark belongs to the phase it was made in)."""
    return replace(state, phase=phase, since=now.replace(microsecond=0), settled_at=None)


def auto_rotation_due(not_before: datetime, not_after: datetime, now: datetime) -> bool:
    """A generated CA is rotated once two thirds of its lifetime have passed."""
    return now >= not_before + (not_after - not_before) * AUTO_ROTATION_FRACTION


def expiry_warning_due(not_after: datetime, now: datetime) -> bool:
    return not_after - now <= CA_EXPIRY_WARNING


def next_step(state: RotationState, fleet: Fleet, now: datetime, propagation_delay: timedelta) -> Decision:
    """What to do next in a rotation under way (``state.phase`` is not Idle)."""
    if state.phase is Phase.IDLE:
        return Decision(Step.WAIT, "no rotation under way")
    if state.phase is Phase.REISSUING and fleet.leaves_of_previous:
        return Decision(
            Step.WAIT, f"{fleet.leaves_of_previous} certificate(s) of the previous CA still to renew"
        )
    if state.phase is Phase.REISSUING and fleet.held_by_kubelets:
        # Not a stall while the kubelets' refresh times are ahead: the wait ends by them (and a leaf that
        # expires no longer counts, so never later than the last expiry).
        ahead = fleet.refresh_by - now if fleet.refresh_by is not None and fleet.refresh_by > now else timedelta(0)
        by = f"; the last is due by {format_time(fleet.refresh_by)}" if fleet.refresh_by is not None else ""
        return Decision(Step.WAIT, f"{fleet.held_by_kubelets} pod certificate(s) of the previous CA wait for their "
                                   f"kubelet to ask again at beginRefreshAt{by}", ahead)
    if fleet.stale_bundle:
        what = "the new CA" if state.phase is Phase.DISTRIBUTING else "the current trust bundle"
        return Decision(Step.WAIT, f"{fleet.stale_bundle} of {fleet.objects} pod Secrets and ConfigMaps still "
                                   f"to receive {what}")
    if state.phase is Phase.RETIRING:
        return Decision(Step.FINISH, "every pod Secret carries the final trust bundle")
    if state.settled_at is None:
        return Decision(Step.SETTLED, "the cluster has caught up; waiting for the kubelet to update pod files",
                        propagation_delay)
    ready_at = state.settled_at + propagation_delay
    if now < ready_at:
        return Decision(Step.WAIT, "waiting for the kubelet to update pod files", ready_at - now)
    if state.phase is Phase.DISTRIBUTING:
        return Decision(Step.SWITCH, "every pod trusts the new CA: signing switches to it")
    return Decision(Step.RETIRE, "no certificate of the previous CA is left: it leaves the trust bundle")


# However small the fleet, a phase is given at least this long before it is reported stalled.
MIN_STALL_BOUND: Final = timedelta(minutes=10)


def stall_bound(objects: int, rate: float, propagation_delay: timedelta) -> timedelta:
    """How long one phase may take before it is reported stalled.

    A phase re-issues or re-writes every object at most once, at ``rate`` per second, then waits one
    propagation delay: three times that, plus a margin, is generous for a healthy cluster. Past it,
    something outside the operator's control holds the phase (an object someone keeps editing, a
    write refused), and people must be told what is waited for.
    """
    writes = timedelta(seconds=objects / rate) if rate > 0 else timedelta(0)
    return MIN_STALL_BOUND + 3 * (writes + propagation_delay)


def stalled(state: RotationState, decision: Decision, bound: timedelta, now: datetime) -> bool:
    """Whether a phase under way has waited longer than ``bound`` for objects to catch up (a timed wait,
    the propagation delay, ends by itself and never stalls)."""
    if state.phase is Phase.IDLE or decision.step is not Step.WAIT or decision.wait or state.since is None:
        return False
    return now - state.since > bound
