"""When to renew a certificate, and the facts a re-issue is decided on: plain data in, plain data out.

Pure: no kopf, no kubernetes, never reads the clock (``now`` is an argument, aware UTC) and takes
its randomness (``jitter``) from the caller. Modelled on cert-manager: ``RenewalTime`` for the
schedule; the checks that decide a re-issue are the chain in ``reissue.py``. Every time this module
returns is truncated to whole seconds, so a value written to an annotation or the status reads back
identical and never re-triggers a change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from mtls_operator.rules.spec import default_renew_before

__all__ = [
    "JITTER_FRACTION",
    "MANUAL_RENEWAL",
    "MIN_RENEWAL_GAP",
    "Decision",
    "DesiredState",
    "IssuedState",
    "ReissueReason",
    "default_renew_before",
    "jittered_renewal_time",
    "renewal_time",
]

# Jitter moves a renewal earlier by up to this fraction of its renewal window (renew_at→not_after):
# 48 minutes for the default 24h certificate (8h window). Earlier only, so jitter can never push a
# renewal past the moment the user asked for.
JITTER_FRACTION: Final = 0.1
# The earliest a fresh certificate may be renewed again.
MIN_RENEWAL_GAP: Final = timedelta(minutes=5)


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
