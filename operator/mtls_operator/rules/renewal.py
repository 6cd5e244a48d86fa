"""When to renew a certificate and why to re-issue one: plain data in, plain data out.

Pure: no kopf, no kubernetes, never reads the clock (``now`` is an argument, aware UTC) and takes
its randomness (``jitter``) from the caller. Modelled on cert-manager: ``RenewalTime`` for the
schedule, and a chain of small checks whose first answer becomes the log line, the event and the
status message. Every time this module returns is truncated to whole seconds, so a value written
to an annotation or the status reads back identical and never re-triggers a change.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from mtls_operator.rules.spec import default_renew_before, format_duration
from mtls_operator.times import format_time

__all__ = [
    "JITTER_FRACTION",
    "MANUAL_RENEWAL",
    "Decision",
    "DesiredState",
    "IssuedState",
    "ReissueReason",
    "default_renew_before",
    "jittered_renewal_time",
    "reissue_decision",
    "renewal_time",
]

# Jitter moves a renewal earlier by up to this fraction of its renewal window (renew_at→not_after):
# 48 minutes for the default 24h certificate (8h window). Earlier only, so jitter can never push a
# renewal past the moment the user asked for.
JITTER_FRACTION: Final = 0.1


def _truncate(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def renewal_time(not_before: datetime, not_after: datetime, renew_before: timedelta | None) -> datetime:
    """cert-manager's RenewalTime: ``not_after - renew_before`` if ``0 < renew_before < lifetime``,
    else ``not_after - lifetime/3``; truncated to whole seconds (never later than exact)."""
    lifetime = not_after - not_before
    if renew_before is None or not timedelta(0) < renew_before < lifetime:
        renew_before = lifetime / 3
    return _truncate(not_after - renew_before)


def jittered_renewal_time(renew_at: datetime, not_after: datetime, jitter: float) -> datetime:
    """Move ``renew_at`` earlier by ``jitter * JITTER_FRACTION`` of ``not_after - renew_at``.

    ``jitter`` is in [0, 1), drawn by the caller (``random.random()`` in production, a constant in
    tests). The result is never later than ``renew_at``; truncation to whole seconds may take it
    up to one second further than the exact bound.
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
    window = not_after - renew_at
    if window <= timedelta(0):
        return _truncate(renew_at)
    return _truncate(renew_at - window * (JITTER_FRACTION * jitter))


@dataclass(frozen=True)
class IssuedState:
    """What a pod Secret says about its certificate (its annotations plus the parsed leaf)."""

    spiffe_id: str
    serial: str
    not_before: datetime | None
    not_after: datetime
    renew_at: datetime
    ca_fingerprint: str
    spec_hash: str
    dns_names: tuple[str, ...] = ()
    # The Secret's ``mtls.dev/renew-reason``: who moved ``renew_at`` (``manual``), if anyone.
    renew_reason: str | None = None


@dataclass(frozen=True)
class DesiredState:
    """What the certificate should be now.

    ``bundle_current`` is informational here: a stale ``ca.crt`` is refreshed in place by the
    caller (no new key, no new leaf), so it never causes a re-issue on its own.
    """

    spiffe_id: str
    spec_hash: str
    ca_fingerprint: str
    trusted_ca_fingerprints: frozenset[str]
    bundle_current: bool = True


class ReissueReason(enum.StrEnum):
    """Why a certificate is issued; also the ``reason`` label of ``mtls_certificates_issued_total``."""

    NEW = "new"
    RENEWAL = "renewal"
    SPEC_CHANGE = "spec-change"
    CA_ROTATION = "ca-rotation"
    REPAIR = "repair"
    # Someone asked for it (``kubectl mtls renew``): the Secret's ``mtls.dev/renew-reason`` says
    # ``manual`` and its ``mtls.dev/renew-at`` has come.
    MANUAL = "manual"


# The value of a pod Secret's ``mtls.dev/renew-reason`` annotation that makes a due renewal manual.
MANUAL_RENEWAL: Final = "manual"


@dataclass(frozen=True)
class Decision:
    reason: ReissueReason
    message: str


_Check = Callable[[IssuedState, DesiredState, datetime], Decision | None]


def _spiffe_id_changed(current: IssuedState, desired: DesiredState, now: datetime) -> Decision | None:
    if current.spiffe_id == desired.spiffe_id:
        return None
    return Decision(
        ReissueReason.SPEC_CHANGE,
        f"Re-issuing: SPIFFE ID changed from {current.spiffe_id} to {desired.spiffe_id}",
    )


def _spec_changed(current: IssuedState, desired: DesiredState, now: datetime) -> Decision | None:
    if current.spec_hash == desired.spec_hash:
        return None
    return Decision(ReissueReason.SPEC_CHANGE, "Re-issuing: spec changed")


def _issuer_untrusted(current: IssuedState, desired: DesiredState, now: datetime) -> Decision | None:
    if current.ca_fingerprint in desired.trusted_ca_fingerprints:
        return None
    return Decision(
        ReissueReason.CA_ROTATION,
        f"Re-issuing: issuer no longer trusted (CA {current.ca_fingerprint})",
    )


def _ca_rotated(current: IssuedState, desired: DesiredState, now: datetime) -> Decision | None:
    if current.ca_fingerprint == desired.ca_fingerprint:
        return None
    return Decision(ReissueReason.CA_ROTATION, "Re-issuing: CA rotated")


def _expired(current: IssuedState, desired: DesiredState, now: datetime) -> Decision | None:
    if now < current.not_after:
        return None
    return Decision(ReissueReason.RENEWAL, f"Renewing: certificate expired at {format_time(current.not_after)}")


def _renewal_due(current: IssuedState, desired: DesiredState, now: datetime) -> Decision | None:
    if now < current.renew_at:
        return None
    if current.renew_reason == MANUAL_RENEWAL:
        return Decision(ReissueReason.MANUAL, "Re-issuing: renewal requested (manual)")
    return Decision(
        ReissueReason.RENEWAL,
        f"Renewing: certificate expires in {format_duration(current.not_after - now)}",
    )


_CHECKS: Final[tuple[_Check, ...]] = (
    _spiffe_id_changed,
    _spec_changed,
    _issuer_untrusted,
    _ca_rotated,
    _expired,
    _renewal_due,
)


def reissue_decision(
    current: IssuedState | None, desired: DesiredState, now: datetime, *, problems: Sequence[str] = ()
) -> Decision | None:
    """Why the certificate must be (re-)issued now, or ``None`` if it is fine.

    ``problems`` are what the caller found wrong with an existing Secret (unparsable certificate,
    missing key, key mismatch); they win even when ``current`` is ``None`` because the Secret could
    not be read, so a broken Secret is reported (and counted) as a repair, not as new. Then: no
    state → new; then the first of SPIFFE ID, spec hash, untrusted issuer, rotated CA, expiry,
    renewal time.
    """
    if problems:
        return Decision(ReissueReason.REPAIR, f"Repairing: {problems[0]}")
    if current is None:
        return Decision(ReissueReason.NEW, "Issuing: no certificate yet")
    for check in _CHECKS:
        decision = check(current, desired, now)
        if decision is not None:
            return decision
    return None
