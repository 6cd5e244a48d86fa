"""What identities, pod Secrets and the CA Secret say, as plain data; which identity needs a look first.

Pure: no kopf, no kubernetes, no clock (``now`` is an argument). Inputs are the API's JSON objects.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mtls_operator import constants as c
from mtls_operator.rules.rotation import Phase, read_rotation
from mtls_operator.rules.spec import parse_duration
from mtls_operator.times import parse_time

__all__ = [
    "CAView",
    "IdentityRow",
    "Urgency",
    "ca_view_from_identities",
    "ca_view_from_secret",
    "expiring_within",
    "identity_row",
    "parse_within",
    "sort_by_urgency",
    "urgency",
]

_DAYS = re.compile(r"([0-9]{1,4})d")


@dataclass(frozen=True)
class CAView:
    """Which CA is which, by SHA-256 fingerprint.

    ``source`` says where it came from: ``ca-secret`` (the CA Secret's annotations, the operator's
    record), ``identity-status`` (only the CA that signs now, from ``status.caFingerprint``; the user
    may not read the CA Secret) or ``unknown``.
    """

    signing: str | None = None
    next: str | None = None
    previous: str | None = None
    phase: str = str(Phase.IDLE)
    signing_not_after: datetime | None = None
    source: str = "unknown"

    def generation(self, fingerprint: str | None) -> str:
        """``current``, ``next``, ``previous``; ``other`` for a CA the record does not name."""
        if not fingerprint:
            return "unknown"
        if fingerprint == self.signing:
            return "current"
        if fingerprint == self.next:
            return "next"
        if fingerprint == self.previous:
            return "previous"
        return "other"

    @property
    def rotating(self) -> bool:
        return self.phase != str(Phase.IDLE)


def ca_view_from_secret(annotations: Mapping[str, str]) -> CAView:
    state = read_rotation(annotations)
    return CAView(
        signing=state.signing_fingerprint,
        next=state.next_fingerprint,
        previous=state.previous_fingerprint,
        phase=str(state.phase),
        signing_not_after=state.signing_not_after,
        source="ca-secret",
    )


def ca_view_from_identities(identities: Iterable[Mapping[str, Any]]) -> CAView:
    """The CA that signs now and the rotation phase as identities report them (the newest report wins)."""
    best: tuple[str, str, str] | None = None
    for body in identities:
        status = body.get("status") or {}
        fingerprint = status.get("caFingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            continue
        stamp = max((str(cond.get("lastTransitionTime") or "") for cond in status.get("conditions") or []), default="")
        candidate = (stamp, fingerprint, str(status.get("caRotationPhase") or Phase.IDLE))
        if best is None or candidate > best:
            best = candidate
    if best is None:
        return CAView()
    return CAView(signing=best[1], phase=best[2], source="identity-status")


class Urgency(enum.IntEnum):
    """Lower is more urgent: what ``status`` lists first."""

    EXPIRED = 0  # a pod holds an expired certificate
    UNSERVED = 1  # pods without a valid certificate
    NOT_READY = 2  # Ready is not True (a bad spec, a conflict, the CA)
    RENEWAL_OVERDUE = 3  # a renewal time has passed and nothing was re-issued yet
    OK = 4

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True)
class IdentityRow:
    """One identity as ``kubectl mtls status`` shows it."""

    namespace: str
    name: str
    ready: str
    reason: str
    pods: int
    issued: int
    earliest_expiry: datetime | None
    next_renewal: datetime | None
    # How many of its pod Secrets hold a certificate of each CA generation (current, previous...).
    ca_generations: Mapping[str, int] = field(default_factory=dict)
    rotation_phase: str = str(Phase.IDLE)
    # spec.delivery, and how many of its pods the kubelet serves (PodCertificate: no Secret, no expiry here).
    delivery: str = "Secret"
    pod_certificate_pods: int = 0

    @property
    def ca_text(self) -> str:
        order = ("current", "next", "previous", "other", "unknown")
        parts = [f"{name}:{self.ca_generations[name]}" for name in order if self.ca_generations.get(name)]
        return ",".join(parts) or "-"


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def identity_row(identity: Mapping[str, Any], secrets: Sequence[Mapping[str, Any]], ca: CAView) -> IdentityRow:
    """The row for ``identity`` from its status and its pod Secrets' annotations (``secrets`` may hold
    other identities' Secrets; only the ones labelled with this identity count)."""
    meta = identity.get("metadata") or {}
    status = identity.get("status") or {}
    name = str(meta.get("name") or "")
    conditions = status.get("conditions") or []
    ready: Mapping[str, Any] = next((cond for cond in conditions if cond.get("type") == "Ready"), {})
    expiries: list[datetime] = []
    renewals: list[datetime] = []
    generations: Counter[str] = Counter()
    for secret in secrets:
        secret_meta = secret.get("metadata") or {}
        labels = secret_meta.get("labels") or {}
        if labels.get(c.IDENTITY_LABEL) != name or labels.get(c.MANAGED_BY_LABEL) != c.MANAGER_NAME:
            continue
        annotations = secret_meta.get("annotations") or {}
        not_after = parse_time(annotations.get(c.NOT_AFTER_ANNOTATION))
        renew_at = parse_time(annotations.get(c.RENEW_AT_ANNOTATION))
        if not_after is not None:
            expiries.append(not_after)
        if renew_at is not None:
            renewals.append(renew_at)
        generations[ca.generation(annotations.get(c.CA_FINGERPRINT_ANNOTATION))] += 1
    next_renewal = min(renewals, default=None) or parse_time(status.get("nextRenewalTime"))
    return IdentityRow(
        namespace=str(meta.get("namespace") or ""),
        name=name,
        ready=str(ready.get("status") or "Unknown"),
        reason=str(ready.get("reason") or ""),
        pods=_count(status.get("pods")),
        issued=_count(status.get("issued")),
        earliest_expiry=min(expiries, default=None),
        next_renewal=next_renewal,
        ca_generations=dict(generations),
        rotation_phase=str(status.get("caRotationPhase") or ca.phase),
        delivery=str((identity.get("spec") or {}).get("delivery") or "Secret"),
        pod_certificate_pods=_count(status.get("podCertificatePods")),
    )


def urgency(row: IdentityRow, now: datetime) -> Urgency:
    if row.earliest_expiry is not None and row.earliest_expiry <= now:
        return Urgency.EXPIRED
    # Pods the kubelet serves (delivery PodCertificate) hold no Secret: they are not unserved for that.
    if row.issued + row.pod_certificate_pods < row.pods:
        return Urgency.UNSERVED
    if row.ready != "True":
        return Urgency.NOT_READY
    if row.next_renewal is not None and row.next_renewal <= now:
        return Urgency.RENEWAL_OVERDUE
    return Urgency.OK


def sort_by_urgency(rows: Iterable[IdentityRow], now: datetime) -> list[IdentityRow]:
    """Most urgent first; within a tier the earliest expiry first (none last), then by namespace and name."""
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return sorted(rows, key=lambda row: (urgency(row, now), row.earliest_expiry or far, row.namespace, row.name))


def expiring_within(rows: Iterable[IdentityRow], within: timedelta, now: datetime) -> list[IdentityRow]:
    """Identities with a certificate expiring by ``now + within`` (already expired ones included)."""
    return [row for row in rows if row.earliest_expiry is not None and row.earliest_expiry <= now + within]


def parse_within(text: str) -> timedelta:
    """``--expiring-within``: a Go duration (``24h``, ``90m``) or whole days (``30d``); ValueError says so."""
    days = _DAYS.fullmatch(text.strip())
    if days:
        return timedelta(days=int(days.group(1)))
    try:
        return parse_duration(text.strip())
    except ValueError as exc:
        raise ValueError(f"--expiring-within {text!r}: {exc}; or whole days such as '30d'") from None
