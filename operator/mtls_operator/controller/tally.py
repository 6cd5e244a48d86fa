"""What one pass over an identity's pods found and did: counts for the status, the metrics and the Event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mtls_operator.observability.metrics import IssuanceError
from mtls_operator.rules.plan import bounded_message
from mtls_operator.rules.renewal import Decision, ReissueReason
from mtls_operator.times import format_time


@dataclass
class PassTally:
    pods: int = 0
    valid: int = 0
    # Selected pods whose key the kubelet holds (delivery by PodCertificate): not in ``pods``.
    pod_certificates: int = 0
    served: set[str] = field(default_factory=set)
    # Of the pods holding a valid certificate, and of the kubelet's pods (their ID is the signer's to give).
    spiffe_ids: set[str] = field(default_factory=set)
    next_renewal: datetime | None = None
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Served pods left without a valid certificate this pass, and why (for the metrics).
    failed_pods: set[str] = field(default_factory=set)
    errors: dict[IssuanceError, int] = field(default_factory=dict)
    earliest_not_after: datetime | None = None
    issued_by_reason: dict[ReissueReason, int] = field(default_factory=dict)
    first_decision: str | None = None
    first_reason: ReissueReason | None = None
    # Background re-issues started this pass, and those left for the next one.
    background: int = 0
    deferred: int = 0

    def count_valid(self, spiffe: str, renew_at: datetime, not_after: datetime) -> None:
        self.valid += 1
        self.count_held(spiffe, renew_at, not_after)

    def count_held(self, spiffe: str, renew_at: datetime, not_after: datetime) -> None:
        """A certificate still valid though its renewal failed: it keeps expiry and renewal times visible."""
        self.spiffe_ids.add(spiffe)
        if self.next_renewal is None or renew_at < self.next_renewal:
            self.next_renewal = renew_at
        if self.earliest_not_after is None or not_after < self.earliest_not_after:
            self.earliest_not_after = not_after

    def issued(self, decision: Decision, pod_name: str) -> None:
        self.issued_by_reason[decision.reason] = self.issued_by_reason.get(decision.reason, 0) + 1
        if self.first_decision is None:
            self.first_decision = f"pod {pod_name}: {decision.message}"
            self.first_reason = decision.reason

    def add_first_issues(self, count: int, message: str) -> None:
        """First issues done outside the pass (``Reconciler.issue_first``): reported with it."""
        self.issued_by_reason[ReissueReason.NEW] = self.issued_by_reason.get(ReissueReason.NEW, 0) + count
        if self.first_decision is None:
            self.first_decision, self.first_reason = message, ReissueReason.NEW

    def last_issuance(self, now: datetime) -> dict[str, Any] | None:
        """The status's ``lastIssuance``, when this pass issued anything."""
        if not self.issued_by_reason:
            return None
        return {
            "time": format_time(now),
            "reason": str(self.first_reason),
            "count": sum(self.issued_by_reason.values()),
            "message": bounded_message(self.first_decision or ""),
        }

    def issued_summary(self) -> str | None:
        """The ``Issued`` Event's message, when this pass issued anything."""
        if not self.issued_by_reason:
            return None
        summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.issued_by_reason.items()))
        total = sum(self.issued_by_reason.values())
        detail = f"; {self.first_decision}" if self.first_decision else ""
        return f"issued {total} certificate(s) ({summary}){detail}"

    def fail(self, error: IssuanceError, message: str, pod: str | None = None) -> None:
        self.failures.append(message)
        self._count(error, pod)

    def clash(self, message: str, pod: str) -> None:
        self.clashes.append(message)
        self._count(IssuanceError.SECRET_CONFLICT, pod)

    def _count(self, error: IssuanceError, pod: str | None) -> None:
        self.errors[error] = self.errors.get(error, 0) + 1
        if pod is not None:
            self.failed_pods.add(pod)
