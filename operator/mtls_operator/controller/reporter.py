"""What a person sees of an identity: its status, its Events, and the metrics of its pods.

Events go before the status (a status write that fails must not also lose the reason); a standing
warning is posted once, not every pass; a trust ConfigMap the operator may not write is reported
once per namespace.
"""

from __future__ import annotations

import logging
from datetime import datetime

from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.tally import PassTally
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s import Cluster
from mtls_operator.k8s.views import IdentityView
from mtls_operator.observability.logs import fields
from mtls_operator.observability.metrics import Metrics
from mtls_operator.rules.plan import Readiness, identity_status, status_changed, summarize_readiness
from mtls_operator.rules.rotation import Phase
from mtls_operator.rules.spec import IdentitySpec, PolicyRefusal
from mtls_operator.times import Clock, format_time

logger = logging.getLogger(__name__)

IdentityKey = tuple[str, str]  # (namespace, name)


class Reporter:
    def __init__(self, cluster: Cluster, ca_store: CAStore, metrics: Metrics, clock: Clock) -> None:
        self.cluster = cluster
        self.ca_store = ca_store
        self.metrics = metrics
        self.clock = clock
        # The last warning posted per identity, so a standing problem is not re-posted every pass.
        self._last_warning: dict[IdentityKey, str] = {}
        # A namespace whose trust ConfigMap name is taken by someone else, as reported.
        self._bundle_problems: dict[str, str] = {}

    async def event(self, identity: IdentityView, type_: str, reason: str, message: str, now: datetime) -> None:
        try:
            await self.cluster.post_identity_event(identity.body, type_=type_, reason=reason, message=message,
                                                   now=now)
        except KubernetesAPIError as exc:
            # Events are best effort: losing one must never stop a reconcile.
            logger.warning("could not post event %s: %s", reason, exc)

    async def warn(self, identity: IdentityView, reason: str, message: str, now: datetime) -> None:
        key = (identity.meta.namespace, identity.meta.name)
        if self._last_warning.get(key) == message:
            return
        self._last_warning[key] = message
        logger.warning("identity %s/%s: %s: %s", key[0], key[1], reason, message,
                       extra=fields(identity=key[1], namespace=key[0], reason=reason))
        await self.event(identity, "Warning", reason, message, now)

    async def not_reconciled(self, identity: IdentityView, readiness: Readiness, now: datetime) -> None:
        """The Warning, then a status for an identity that could not be reconciled, keeping the last
        known counts and renewal time."""
        await self.warn(identity, readiness.reason, readiness.message, now)
        previous = identity.status
        status = identity_status(
            previous=previous,
            readiness=readiness,
            generation=identity.meta.generation,
            pods=int(previous.get("pods") or 0),
            issued=int(previous.get("issued") or 0),
            spiffe_ids=previous.get("spiffeIDs") or [],
            next_renewal=None,
            ca_fingerprint=previous.get("caFingerprint"),
            now=now,
        )
        if previous.get("nextRenewalTime"):
            status["nextRenewalTime"] = previous["nextRenewalTime"]
        await self._write_status(identity, status)

    async def bundle_problem(self, identity: IdentityView, problem: str | None, now: datetime) -> None:
        """Report (once per namespace) that the trust ConfigMap there is someone else's."""
        namespace = identity.meta.namespace
        if problem is None:
            self._bundle_problems.pop(namespace, None)
        elif self._bundle_problems.get(namespace) != problem:
            self._bundle_problems[namespace] = problem
            logger.warning("identity %s/%s: %s", namespace, identity.meta.name, problem)
            await self.event(identity, "Warning", "TrustBundleNotPublished", problem, now)

    async def passed(self, identity: IdentityView, spec: IdentitySpec, tally: PassTally, ca_fingerprint: str,
                     now: datetime, *, refusal: PolicyRefusal | None = None) -> None:
        """The metrics, the Events and the status of a pass (with what the policy refused, if anything)."""
        self._observe(identity, tally)
        readiness = summarize_readiness(pods=tally.pods, issued=tally.valid, selector_text=spec.selector.to_query(),
                                        conflicts=tally.conflicts, clashes=tally.clashes, failures=tally.failures,
                                        pod_certificates=tally.pod_certificates)
        if refusal is not None:
            # What is issued first: a long refusal is cut at the status's message limit, never these facts.
            readiness = Readiness(False, "PolicyViolation", f"{refusal.outcome}; {readiness.message}; {refusal}")
        status = identity_status(
            previous=identity.status,
            readiness=readiness,
            generation=identity.meta.generation,
            pods=tally.pods + tally.pod_certificates,
            issued=tally.valid,
            spiffe_ids=tally.spiffe_ids,
            next_renewal=tally.next_renewal,
            ca_fingerprint=ca_fingerprint,
            now=self.clock(),
            ca_condition=self.ca_condition(),
            rotation_phase=str(self.ca_store.rotation.phase),
            last_issuance=tally.last_issuance(self.clock()),
            pod_certificate_pods=tally.pod_certificates,
        )
        if (summary := tally.issued_summary()) is not None:
            await self.event(identity, "Normal", "Issued", summary, now)
        if readiness.status or readiness.reason in ("Issuing", "NoPods"):
            self._last_warning.pop((identity.meta.namespace, identity.meta.name), None)
        else:
            await self.warn(identity, readiness.reason, readiness.message, now)
        await self._write_status(identity, status)

    def _observe(self, identity: IdentityView, tally: PassTally) -> None:
        for error, count in tally.errors.items():
            self.metrics.issuance_error(error, count)
        self.metrics.identity_observed(
            identity.meta.namespace,
            identity.meta.name,
            served=tally.pods,
            issued=tally.valid,
            failed=len(tally.failed_pods),
            earliest_not_after=tally.earliest_not_after,
            next_renewal=tally.next_renewal,
        )

    async def _write_status(self, identity: IdentityView, status: dict[str, object]) -> None:
        if status_changed(identity.status, status):
            await self.cluster.patch_identity_status(identity.meta.namespace, identity.meta.name, status)

    def ca_condition(self) -> Readiness:
        """The CertificateAuthority condition: a CA problem every identity should show."""
        store = self.ca_store
        if store.stalled:
            return Readiness(False, "RotationStalled", store.stalled)
        if store.problem:
            return Readiness(False, "CASecretInvalid", f"{store.problem}; still signing with the CA "
                                                       f"loaded before, {store.current().fingerprint}")
        if store.warning:
            return Readiness(False, "CAExpiringSoon", store.warning)
        phase = store.rotation.phase
        ca = store.current()
        if phase is not Phase.IDLE:
            return Readiness(True, "Rotating", f"CA rotation phase {phase}; {ca.fingerprint} signs")
        return Readiness(True, "Valid", f"{ca.fingerprint} signs, expires {format_time(ca.not_after)}")

    def forget(self, key: IdentityKey) -> None:
        self._last_warning.pop(key, None)
        self.metrics.identity_removed(*key)
