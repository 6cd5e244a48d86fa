"""Why a pod's certificate must be (re-)issued now: one ordered chain of small checks.

Modelled on cert-manager's ``policies.Chain``: each check looks at one thing and answers a
``Decision`` or ``None``; the first answer wins and becomes the log line, the Event and the status
message. The repair checks come first (a Secret that cannot be read, does not chain to the bundle,
was deleted, or belongs to an earlier pod of the same name), then the renewal checks (identity,
spec, issuer, CA, expiry, renewal time) and last the batching of renewals due soon anyway.

Pure: the caller reads the Secret (``plan.read_secret``), checks its chain and passes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from mtls_operator.pki import CLOCK_SKEW
from mtls_operator.rules.renewal import (
    JITTER_FRACTION,
    MANUAL_RENEWAL,
    MIN_RENEWAL_GAP,
    Decision,
    DesiredState,
    IssuedState,
    ReissueReason,
)
from mtls_operator.rules.spec import format_duration
from mtls_operator.times import format_time

__all__ = ["CHAIN", "RENEWAL_HORIZON", "ReissueInput", "reissue_decision"]

# Renewals due within this window are done together (jitter spreads them; this batches them).
RENEWAL_HORIZON: Final = timedelta(minutes=5)


@dataclass(frozen=True)
class ReissueInput:
    """What the chain decides on, for one pod and the Secret its certificate lives in."""

    desired: DesiredState
    now: datetime
    pod_uid: str = ""
    # Whether the pod's Secret exists, and what it says (``state`` None: unreadable, see ``problems``).
    secret_exists: bool = False
    state: IssuedState | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    # Why its certificate does not chain to the trust bundle, when it does not.
    chain_problem: str | None = None
    # The uid of the pod the existing Secret belongs to (its ownerReference).
    owner_pod_uid: str | None = None
    # Whether the Secret was seen deleted since the last pass (so issuing again is a repair).
    vanished: bool = False


Check = Callable[[ReissueInput], Decision | None]


def secret_unreadable(given: ReissueInput) -> Decision | None:
    if not given.secret_exists or given.state is not None:
        return None
    return Decision(ReissueReason.REPAIR, f"Repairing: {given.problems[0]}")


def chain_broken(given: ReissueInput) -> Decision | None:
    if given.chain_problem is None:
        return None
    return Decision(ReissueReason.REPAIR, f"Repairing: {given.chain_problem}")


def secret_deleted(given: ReissueInput) -> Decision | None:
    if given.secret_exists or not given.vanished:
        return None
    return Decision(ReissueReason.REPAIR, "Repairing: the Secret was deleted")


def pod_recreated(given: ReissueInput) -> Decision | None:
    # A new pod under an old name (StatefulSet): its own key, and an ownerReference that does not let
    # the garbage collector delete the Secret along with the old pod.
    if not given.secret_exists or given.owner_pod_uid == given.pod_uid:
        return None
    return Decision(ReissueReason.NEW, "Issuing: the pod was re-created")


def secret_damaged(given: ReissueInput) -> Decision | None:
    # Problems win even without a state, so a broken Secret is counted as a repair, not as new.
    if not given.problems:
        return None
    return Decision(ReissueReason.REPAIR, f"Repairing: {given.problems[0]}")


def no_certificate(given: ReissueInput) -> Decision | None:
    if given.state is not None:
        return None
    return Decision(ReissueReason.NEW, "Issuing: no certificate yet")


def spiffe_id_changed(given: ReissueInput) -> Decision | None:
    if given.state is None or given.state.spiffe_id == given.desired.spiffe_id:
        return None
    return Decision(
        ReissueReason.SPEC_CHANGE,
        f"Re-issuing: SPIFFE ID changed from {given.state.spiffe_id} to {given.desired.spiffe_id}",
    )


def spec_changed(given: ReissueInput) -> Decision | None:
    if given.state is None or given.state.spec_hash == given.desired.spec_hash:
        return None
    return Decision(ReissueReason.SPEC_CHANGE, "Re-issuing: spec changed")


def issuer_untrusted(given: ReissueInput) -> Decision | None:
    if given.state is None or given.state.ca_fingerprint in given.desired.trusted_ca_fingerprints:
        return None
    return Decision(
        ReissueReason.CA_ROTATION, f"Re-issuing: issuer no longer trusted (CA {given.state.ca_fingerprint})"
    )


def ca_rotated(given: ReissueInput) -> Decision | None:
    if given.state is None or given.state.ca_fingerprint == given.desired.ca_fingerprint:
        return None
    return Decision(ReissueReason.CA_ROTATION, "Re-issuing: CA rotated")


def expired(given: ReissueInput) -> Decision | None:
    if given.state is None or given.now < given.state.not_after:
        return None
    return Decision(ReissueReason.RENEWAL, f"Renewing: certificate expired at {format_time(given.state.not_after)}")


def renewal_due(given: ReissueInput) -> Decision | None:
    if given.state is None or given.now < given.state.renew_at:
        return None
    if given.state.renew_reason == MANUAL_RENEWAL:
        # Someone asked for it (kubectl mtls renew moved renew-at and said so).
        return Decision(ReissueReason.MANUAL, "Re-issuing: renewal requested (manual)")
    left = format_duration(given.state.not_after - given.now)
    return Decision(ReissueReason.RENEWAL, f"Renewing: certificate expires in {left}")


def renewal_batched(given: ReissueInput) -> Decision | None:
    """Renew now what falls due within the horizon anyway: one pass instead of a wake-up per pod.

    Never for a certificate younger than the minimum renewal gap (its notBefore is backdated by a
    minute of clock skew): its renewal time may have been held at that gap, and batching it early
    would re-issue it on every pass.
    """
    state, now = given.state, given.now
    if state is None:
        return None
    # Batching must not undo the jitter: for short certificates (1h: a 2-minute jitter window) the
    # horizon shrinks to half the jitter window.
    horizon = min(RENEWAL_HORIZON, (state.not_after - state.renew_at) * JITTER_FRACTION / 2)
    if state.renew_at > now + horizon:
        return None
    if state.not_before is not None and now < state.not_before + MIN_RENEWAL_GAP + CLOCK_SKEW:
        return None
    left = format_duration(max(state.not_after - now, timedelta(0)))
    return Decision(ReissueReason.RENEWAL, f"Renewing: certificate expires in {left} (due within the batch window)")


# The order is the policy: repairs, then a new pod, then what changed, then time.
CHAIN: Final[tuple[Check, ...]] = (
    secret_unreadable,
    chain_broken,
    secret_deleted,
    pod_recreated,
    secret_damaged,
    no_certificate,
    spiffe_id_changed,
    spec_changed,
    issuer_untrusted,
    ca_rotated,
    expired,
    renewal_due,
    renewal_batched,
)


def reissue_decision(given: ReissueInput, chain: tuple[Check, ...] = CHAIN) -> Decision | None:
    """The first check's answer, or ``None`` when the certificate is fine as it is."""
    for check in chain:
        decision = check(given)
        if decision is not None:
            return decision
    return None
