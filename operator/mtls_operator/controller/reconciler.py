"""Level-triggered reconciliation of one MTLSIdentity: read, assign, decide, write, report.

``Reconciler.reconcile`` is the whole loop for one identity, and only orchestrates: it re-reads
everything it decides on (the identity, its namespace's identities, the selected pods, the managed
Secrets), so it is correct after a restart, after missed events and with several triggers racing:
a restart re-derives all state from the Secrets' annotations and re-issues nothing still valid.
Its parts, each with one job: the identity index (``index.py``), the Secret cache
(``secret_cache.py``), the issuance gate (``gate.py``), the issuer (``issuer.py``), the Secret
writer (``writer.py``), the trust-bundle publisher (``trust_bundle.py``), the keystore passwords
(``keystores.py``) and the reporter (``reporter.py``); the rules it applies are
``rules/assignment.py`` and ``rules/reissue.py``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.gate import IssuanceGate
from mtls_operator.controller.index import IdentityIndex
from mtls_operator.controller.issuer import ISSUE_CONCURRENCY, Issuer
from mtls_operator.controller.keystores import KEYSTORE_RECHECK, KEYSTORE_UNAVAILABLE, KeystorePasswords
from mtls_operator.controller.reporter import Reporter
from mtls_operator.controller.retry import BackOff, issuance_error, verdict
from mtls_operator.controller.secret_cache import SecretCache
from mtls_operator.controller.tally import PassTally
from mtls_operator.controller.trust_bundle import TrustBundlePublisher
from mtls_operator.controller.workqueue import IssuePriority, RateLimiter
from mtls_operator.controller.writer import SecretWriter
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError, MTLSError, PKIError, SpecError
from mtls_operator.k8s import Cluster
from mtls_operator.k8s.views import IdentityView, SecretView
from mtls_operator.models import Delivery
from mtls_operator.observability.logs import fields
from mtls_operator.observability.metrics import IssuanceError, Metrics
from mtls_operator.pki import CertificateAuthority
from mtls_operator.rules.assignment import assign_pods
from mtls_operator.rules.delivery import delivered_by_pod_certificate
from mtls_operator.rules.plan import (
    PodInfo,
    Readiness,
    SecretContent,
    SecretReading,
    b64text,
    is_pod_secret_of,
    keystore_patch,
    merge_patches,
    metadata_patch,
    ownership_problem,
    pod_info,
    pod_query,
    pod_spec,
    reissue_patch,
    secret_body,
    secret_metadata,
    secret_name_for_pod,
    secrets_query,
)
from mtls_operator.rules.reissue import ReissueInput, reissue_decision
from mtls_operator.rules.renewal import Decision, DesiredState, IssuedState, ReissueReason
from mtls_operator.rules.spec import IdentitySpec, PolicyRefusal
from mtls_operator.times import Clock

logger = logging.getLogger(__name__)

IdentityKey = tuple[str, str]  # (namespace, name)

# How soon to look again when something outside our control (the CA, a clash) may get fixed.
RETRY_SOON = 15.0
# Never sleep longer than this between looks at an identity, whatever its renewal time.
MAX_SLEEP = 3600.0
# When a pass left background re-issues (CA rotation, spec change) for later, look again this soon.
DEFERRED_DELAY = 1.0
# An identity with delivery PodCertificate while the operator's pod certificates are off.
POD_CERTIFICATES_OFF = "PodCertificatesDisabled"
_OFF_MESSAGE = (
    "spec.delivery is PodCertificate, but the operator runs with pod certificates off: set the chart value "
    "podCertificates.enabled=true (MTLS_POD_CERTIFICATES=true) on Kubernetes 1.35 or later, or use delivery: "
    "Secret. No Secret is issued for this identity and the webhook mounts nothing into its new pods"
)


@dataclass(frozen=True)
class _Pass:
    """One pass over an identity's pods: what every pod's decision and write needs."""

    namespace: str
    identity: str
    spec: IdentitySpec
    ca: CertificateAuthority
    bundle_pem: bytes
    trusted: frozenset[str]
    spec_hash: str
    now: datetime
    existing: dict[str, SecretView]
    tally: PassTally

    def for_pod(self, pod: PodInfo, cluster_domain: str) -> _Pass:
        """This pass as one pod's certificate sees it: the spec with the pod's own headless names."""
        spec = pod_spec(self.spec, pod, cluster_domain)
        return self if spec is self.spec else replace(self, spec=spec, spec_hash=spec.certificate_hash())

    def slot(self, secret_name: str) -> tuple[str, str]:
        return (self.namespace, secret_name)

    def keep_held(self, reading: SecretReading | None) -> None:
        """Whatever failed, a certificate the pod still holds keeps its expiry on the status and in
        the metrics: that is exactly when someone needs to see it."""
        state = reading.state if reading is not None else None
        if state is not None and state.not_after > self.now:
            self.tally.count_held(state.spiffe_id, state.renew_at, state.not_after)


class Reconciler:
    def __init__(
        self,
        cluster: Cluster,
        settings: Settings,
        ca_store: CAStore,
        *,
        clock: Clock,
        limiter: RateLimiter,
        jitter: Callable[[], float] = random.random,
        retry_delay: float = RETRY_SOON,
        metrics: Metrics | None = None,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.ca_store = ca_store
        self.clock = clock
        self.retry_delay = retry_delay
        self.metrics = metrics if metrics is not None else Metrics()
        self.index = IdentityIndex(settings)
        self.secrets = SecretCache(clock)
        self.gate = IssuanceGate()
        self.writer = SecretWriter(cluster)
        self.issuer = Issuer(trust_domain=settings.trust_domain, clock=clock, limiter=limiter, metrics=self.metrics,
                             jitter=jitter)
        self.reporter = Reporter(cluster, ca_store, self.metrics, clock)
        self.bundles = TrustBundlePublisher(cluster, ca_store, self.writer)
        self.keystores = KeystorePasswords(cluster)

    # One identity: read -> assign -> decide -> write -> report --------------------------------

    async def reconcile(self, key: IdentityKey) -> float | BackOff | None:
        """Bring one identity's Secrets and status in line; return when to look again."""
        try:
            return await self._reconcile(key)
        except MTLSError as exc:
            # The queue logs it and retries with backoff; the metric makes it visible.
            if (metric := verdict(exc).metric) is not None:
                self.metrics.issuance_error(metric)
            raise

    async def _reconcile(self, key: IdentityKey) -> float | BackOff | None:
        identity = await self._read_identity(key)
        if identity is None:
            # Being deleted (its finalizer waits for this) or gone: its Secrets go with it.
            await self.cleanup(key)
            return None
        now = self.clock()
        served = await self._spec(key, identity, now)
        if served is None:
            return None
        spec, refusal = served
        ca = await self._ca(identity, now)
        if ca is None:
            return self.retry_delay
        if not await self._keystores_readable(key, identity, spec, now):
            return BackOff(self.retry_delay)
        bundle_pem = self.ca_store.bundle_pem
        await self._publish_bundle(identity, bundle_pem, now)
        tally = await self._serve_pods(key, identity, spec, ca, bundle_pem, now)
        first_issues = self.gate.take_first_issues(key)
        if first_issues is not None:
            tally.add_first_issues(*first_issues)
        self.index.served[key] = tally.served
        await self.reporter.passed(identity, spec, tally, ca.fingerprint, now, refusal=refusal)
        return self._next_look(tally, spec)

    async def _read_identity(self, key: IdentityKey) -> IdentityView | None:
        body = await self.cluster.get_identity(*key)
        identity = IdentityView.of(body) if body is not None else None
        return identity if identity is not None and not identity.meta.deleting else None

    async def _spec(self, key: IdentityKey, identity: IdentityView,
                    now: datetime) -> tuple[IdentitySpec, PolicyRefusal | None] | None:
        """The spec to serve and the policy's refusal, if any; or None after reporting why the identity
        cannot be served."""
        refusal = None
        try:
            try:
                spec = self.index.parse_spec(identity)
            except PolicyRefusal as exc:
                # Issue what the policy allows (a tightened policy re-issues without the refused names).
                spec, refusal = exc.allowed, exc
        except SpecError as exc:
            self.index.remember_spec(key, identity, None)
            # A bad spec never touches existing Secrets: they stay valid until the user fixes it.
            await self.reporter.not_reconciled(identity, Readiness(False, "InvalidSpec", str(exc)), now)
            self.metrics.issuance_error(issuance_error(exc))
            await self.bundles.follow(*key)
            return None
        if spec.delivery is Delivery.POD_CERTIFICATE and not self.settings.pod_certificates:
            # Never a Secret for an identity that asked for keys that never leave the node; existing
            # Secrets stay as they are, as with a bad spec.
            self.index.remember_spec(key, identity, None)
            await self.reporter.not_reconciled(identity, Readiness(False, POD_CERTIFICATES_OFF, _OFF_MESSAGE), now)
            await self.bundles.follow(*key)
            return None
        self.index.remember_spec(key, identity, spec)
        return spec, refusal

    async def _ca(self, identity: IdentityView, now: datetime) -> CertificateAuthority | None:
        """The CA that signs now, or None after reporting that there is none."""
        try:
            await self.ca_store.ensure_fresh()
            return self.ca_store.current()
        except CAError as exc:
            message = f"no CA to sign with: {exc}"
            await self.reporter.not_reconciled(identity, Readiness(False, "CAUnavailable", message), now)
            self.metrics.issuance_error(issuance_error(exc))
            return None

    async def _keystores_readable(self, key: IdentityKey, identity: IdentityView, spec: IdentitySpec,
                                  now: datetime) -> bool:
        """Whether the keystore password (if the spec asks for keystores) can be read; if not, reported."""
        problem = await self.keystores.read(key, spec)
        if problem is None:
            return True
        # Never a keystore without its password: nothing is issued until the password is readable.
        self.index.remember_spec(key, identity, None)
        await self.reporter.not_reconciled(identity, Readiness(False, KEYSTORE_UNAVAILABLE, problem), now)
        await self.bundles.follow(*key)
        return False

    async def _publish_bundle(self, identity: IdentityView, bundle_pem: bytes, now: datetime) -> None:
        namespace = identity.meta.namespace
        try:
            problem = await self.bundles.publish(namespace, bundle_pem)
        except KubernetesAPIError as exc:
            logger.warning("could not publish the trust bundle in namespace %s: %s", namespace, exc)
            return
        await self.reporter.bundle_problem(identity, problem, now)

    def _next_look(self, tally: PassTally, spec: IdentitySpec) -> float | BackOff | None:
        if tally.failures or tally.clashes:
            # Standing problems (a clash, a bad annotation) back off; the watches report their fixes.
            return BackOff(self.retry_delay)
        if tally.deferred:
            return DEFERRED_DELAY
        # A new keystore password changes no object the operator watches: look at it again this soon.
        recheck = KEYSTORE_RECHECK if spec.pkcs12 is not None else MAX_SLEEP
        if tally.next_renewal is None:
            return recheck if spec.pkcs12 is not None else None
        wait = (tally.next_renewal - self.clock()).total_seconds()
        return min(MAX_SLEEP, recheck, max(1.0, wait))

    async def cleanup(self, key: IdentityKey) -> int:
        """Delete every Secret this identity manages (the identity is being deleted)."""
        deleted = 0
        for secret in await self._managed_secrets(key):
            await self.writer.delete(secret)
            deleted += 1
        self.index.forget(key)
        self.gate.forget(key)
        self.reporter.forget(key)
        self.keystores.forget(key)
        return deleted

    async def managed_secret_count(self, key: IdentityKey) -> int:
        return len(await self._managed_secrets(key))

    async def _managed_secrets(self, key: IdentityKey) -> list[SecretView]:
        namespace, name = key
        secrets = map(SecretView.of, await self.cluster.list_secrets(namespace, secrets_query(name)))
        return [secret for secret in secrets if is_pod_secret_of(secret, name)]

    # The pods of one identity ------------------------------------------------------------------

    async def _serve_pods(self, key: IdentityKey, identity: IdentityView, spec: IdentitySpec,
                          ca: CertificateAuthority, bundle_pem: bytes, now: datetime) -> PassTally:
        namespace, name = key
        me = self.index.identity_ref(identity.body)
        others = [self.index.identity_ref(body) for body in await self.cluster.list_identities(namespace)]
        pods = [pod_info(body) for body in await self.cluster.list_pods(namespace, pod_query(spec.selector))]
        listed = map(SecretView.of, await self.cluster.list_secrets(namespace, secrets_query(name)))
        existing = {secret.name: secret for secret in listed}
        plan = assign_pods(me, others, pods, spec=spec, cluster_domain=self.settings.cluster_domain,
                           owners={secret_name: secret.owner_pod_uid for secret_name, secret in existing.items()},
                           signer=self.settings.pod_certificate_signer)
        tally = PassTally(pods=plan.pods, conflicts=plan.conflicts, pod_certificates=len(plan.pod_certificates),
                          served={pod.name for _, pod in plan.assigned} | set(plan.pod_certificates))
        # The kubelet's pods get their certificate from the signer, with the ID the pod's account gives.
        by_name = {pod.name: pod for pod in pods}
        for pod_name in plan.pod_certificates:
            tally.spiffe_ids.add(self.issuer.spiffe_id(by_name[pod_name]))
        for pod_name, message in plan.invalid:
            tally.fail(IssuanceError.INVALID_SPEC, message, pod_name)
        for pod_name, message in plan.duplicates:
            tally.fail(IssuanceError.SECRET_CONFLICT, message, pod_name)
        job = _Pass(namespace, name, spec, ca, bundle_pem, self.ca_store.trusted_fingerprints,
                    spec.certificate_hash(), now, existing, tally)
        # Every uncached Secret of the pass parsed in one worker thread, before anything reads it.
        await self.secrets.read_all([existing[n] for n, _ in plan.assigned if n in existing], bundle_pem)
        # Starting pods first, then overdue renewals, then the rest: also the order the rate limit serves.
        assigned = sorted(plan.assigned, key=lambda item: self._urgency(existing.get(item[0]), now))
        # Pods are served concurrently (API round trips overlap); the rate limit stays global.
        slots = asyncio.Semaphore(ISSUE_CONCURRENCY)
        await asyncio.gather(*(self._serve_slot(job, slots, secret_name, pod) for secret_name, pod in assigned))
        await self._delete_unserved(job, plan.keep)
        return tally

    def _urgency(self, secret: SecretView | None, now: datetime) -> IssuePriority:
        state = self.secrets.read(secret).state if secret is not None else None
        if state is None:
            return IssuePriority.STARTING
        return IssuePriority.OVERDUE if now >= state.renew_at else IssuePriority.BACKGROUND

    async def _serve_slot(self, job: _Pass, slots: asyncio.Semaphore, secret_name: str, pod: PodInfo) -> None:
        async with slots:
            if not self.gate.hold(job.slot(secret_name)):
                return  # being issued right now outside this pass; the pass queued after it counts it
            try:
                secret = await self._current_secret(job, secret_name)
                await self._serve(job.for_pod(pod, self.settings.cluster_domain), secret_name, pod, secret)
            finally:
                self.gate.release(job.slot(secret_name))

    async def _current_secret(self, job: _Pass, secret_name: str) -> SecretView | None:
        """The pod's Secret as the pass listed it, or as it is now where the pass may be out of date."""
        secret = job.existing.get(secret_name)
        slot = job.slot(secret_name)
        if self.gate.take_claim(slot) is not None and secret is None:
            # Created by a first issue after the pass listed: read it, do not issue again. What is there
            # now may be another Secret under that name: ``_serve`` checks whose it is before any write.
            secret = await self._get_secret(job.namespace, secret_name)
        if secret is None and self.gate.clashed(slot):
            # Known to be taken: look before generating a key we could not store.
            secret = await self._get_secret(job.namespace, secret_name)
            if secret is None:
                self.gate.clear_clash(slot)
        return secret

    async def _get_secret(self, namespace: str, name: str) -> SecretView | None:
        body = await self.cluster.get_secret(namespace, name)
        return SecretView.of(body) if body is not None else None

    async def _serve(self, job: _Pass, secret_name: str, pod: PodInfo, secret: SecretView | None) -> None:
        if secret is not None and (problem := ownership_problem(secret, job.identity, pod)) is not None:
            # Never write a Secret we did not create for this pod, whatever labels it carries.
            self._clash(job, pod, secret_name, problem)
            return
        self.gate.clear_clash(job.slot(secret_name))
        reading = None
        if secret is not None:
            await self.secrets.read_all([secret], job.bundle_pem)  # a no-op for the Secrets the pass listed
            reading = self.secrets.read(secret)
        decision = self._decide(job, pod, secret_name, secret, reading)
        if decision is None:
            # The chain answers for every Secret that is missing or unreadable: this one is fine.
            if secret is not None and reading is not None and reading.state is not None:
                await self._keep(job, pod, secret, reading, reading.state)
            return
        priority = self._priority(job, pod, decision, reading)
        if priority is not None:
            await self._reissue(job, pod, secret_name, secret, reading, decision, priority)

    def _decide(self, job: _Pass, pod: PodInfo, secret_name: str, secret: SecretView | None,
                reading: SecretReading | None) -> Decision | None:
        chain_problem = None
        if secret is not None and reading is not None and not reading.problems:
            chain_problem = self.secrets.chain_problem(secret, reading, job.bundle_pem)
        return reissue_decision(ReissueInput(
            desired=DesiredState(spiffe_id=self.issuer.spiffe_id(pod), spec_hash=job.spec_hash,
                                 ca_fingerprint=job.ca.fingerprint, trusted_ca_fingerprints=job.trusted),
            now=job.now,
            pod_uid=pod.uid,
            secret_exists=secret is not None,
            state=reading.state if reading is not None else None,
            problems=reading.problems if reading is not None else (),
            chain_problem=chain_problem,
            owner_pod_uid=secret.owner_pod_uid if secret is not None else None,
            vanished=secret is None and self.gate.take_vanished(job.slot(secret_name)),
        ))

    async def _keep(self, job: _Pass, pod: PodInfo, secret: SecretView, reading: SecretReading,
                    state: IssuedState) -> None:
        """A certificate that stays: its Secret only gets missing template metadata and a stale ca.crt."""
        labels, annotations = secret_metadata(job.identity, pod, job.spec.secret_labels, job.spec.secret_annotations)
        patch = metadata_patch(secret, labels, annotations) or {}
        if reading.bundle_pem != job.bundle_pem:
            patch.setdefault("data", {})[c.CA_CRT] = b64text(job.bundle_pem)
        stores = keystore_patch(secret, self.keystores.get((job.namespace, job.identity)), job.bundle_pem)
        if stores is not None:
            patch = merge_patches(patch, stores)
        if patch:
            try:
                await self.writer.update(secret, patch)
            except KubernetesAPIError as exc:
                job.tally.fail(issuance_error(exc), f"pod {pod.name}: updating Secret {secret.name} failed: {exc}",
                               pod.name)
                job.keep_held(reading)
                return
        job.tally.count_valid(self.issuer.spiffe_id(pod), state.renew_at, state.not_after)

    def _priority(self, job: _Pass, pod: PodInfo, decision: Decision,
                  reading: SecretReading | None) -> IssuePriority | None:
        """Who goes first at the rate limit; None when this background re-issue waits for a later pass."""
        state = reading.state if reading is not None else None
        priority = _priority(decision, state, job.now)
        if priority is IssuePriority.BACKGROUND and state is not None:
            if job.tally.background >= self.issuer.background_per_pass:
                # Short passes: a pod starting meanwhile waits for one pass, not for a whole rotation.
                job.tally.deferred += 1
                job.tally.count_valid(self.issuer.spiffe_id(pod), state.renew_at, state.not_after)
                return None
            job.tally.background += 1
        return priority

    async def _reissue(self, job: _Pass, pod: PodInfo, secret_name: str, secret: SecretView | None,
                       reading: SecretReading | None, decision: Decision, priority: IssuePriority) -> None:
        try:
            content = await self.issuer.issue(pod, job.spec, job.ca, job.bundle_pem, job.spec_hash, priority)
        except PKIError as exc:  # ChainError included
            job.tally.fail(issuance_error(exc), f"pod {pod.name}: issuing failed: {exc}", pod.name)
            job.keep_held(reading)
            return
        try:
            body = secret_body(name=secret_name, identity=job.identity, pod=pod, content=content,
                               template_labels=job.spec.secret_labels,
                               template_annotations=job.spec.secret_annotations,
                               keystore=self.keystores.get((job.namespace, job.identity)))
        except PKIError as exc:
            job.tally.fail(issuance_error(exc), f"pod {pod.name}: writing the keystores failed: {exc}", pod.name)
            job.keep_held(reading)
            return
        try:
            written = await self._write(job, pod, secret_name, secret, body)
        except ConflictError as exc:
            job.tally.fail(issuance_error(exc),
                           f"pod {pod.name}: Secret {secret_name} changed while writing, retrying ({exc})", pod.name)
            written = False
        except KubernetesAPIError as exc:
            job.tally.fail(issuance_error(exc), f"pod {pod.name}: writing Secret {secret_name} failed: {exc}", pod.name)
            written = False
        if written is None:
            return
        if not written:
            job.keep_held(reading)
            return
        _log_issue(decision.message, job.identity, pod, content, decision.reason)
        job.tally.issued(decision, pod.name)
        self.metrics.certificate_issued(decision.reason)
        job.tally.count_valid(content.spiffe_id, content.renew_at, content.not_after)

    async def _write(self, job: _Pass, pod: PodInfo, secret_name: str, secret: SecretView | None,
                     body: dict[str, Any]) -> bool | None:
        """Write the new certificate: True when written, False when left for a later pass (the name is
        taken), None when this very pod's Secret turned up issued meanwhile (counted as it is)."""
        if secret is not None:
            await self.writer.update(secret, reissue_patch(body))
            return True
        try:
            # Create first, look only on a clash: one write per new pod, no extra read.
            await self.writer.create(pod.namespace, body)
            return True
        except ConflictError:
            taken = await self._get_secret(pod.namespace, secret_name)
            if taken is None:
                raise
            if (problem := ownership_problem(taken, job.identity, pod)) is not None:
                self._clash(job, pod, secret_name, problem)
                return False
            if taken.owner_pod_uid == pod.uid:
                await self.secrets.read_all([taken], job.bundle_pem)
                held = self.secrets.read(taken).state
                if held is not None:
                    # Issued for this very pod a moment ago (a first issue outside the pass).
                    job.tally.count_valid(held.spiffe_id, held.renew_at, held.not_after)
                    return None
            raise

    def _clash(self, job: _Pass, pod: PodInfo, secret_name: str, problem: str) -> None:
        self.gate.clash(job.slot(secret_name))
        job.tally.clash(_clash_message(job.namespace, secret_name, pod.name, problem), pod.name)

    async def _delete_unserved(self, job: _Pass, keep: set[str]) -> None:
        for secret_name, secret in job.existing.items():
            if secret_name in keep or not is_pod_secret_of(secret, job.identity):
                continue
            try:
                await self.writer.delete(secret)
            except KubernetesAPIError as exc:
                job.tally.fail(issuance_error(exc), f"deleting Secret {secret_name} failed: {exc}")
                continue
            logger.info("deleted Secret %s/%s: pod %s is no longer served by %s", job.namespace, secret_name,
                        secret.labels.get(c.POD_LABEL), job.identity)

    # A new pod's first certificate, outside any pass --------------------------------------------

    async def issue_first(self, key: IdentityKey, version: tuple[str, object], pod: PodInfo) -> bool:
        """A new pod's first certificate, at once, without a pass over the identity's pods.

        A pod injected by the webhook has its Secret mounted by name, and the kubelet retries the
        mount until the Secret exists: its first certificate is what a starting pod waits for. This
        uses the spec the last pass read (``version``, the identity's (uid, generation) as watched,
        must match it), creates only, and leaves everything else (status, clashes, a Secret that
        exists) to the pass queued after it. Returns whether it issued.
        """
        spec = self.index.spec_for(key, version)
        if spec is None or pod.terminating or pod.finished or not pod.opted_in:
            return False
        if delivered_by_pod_certificate(pod.pod_certificate_signers, self.settings.pod_certificate_signer):
            return False  # the kubelet holds its key: the signer issues, never a Secret
        if spec.service_account_name and pod.service_account != spec.service_account_name:
            return False
        try:
            spec = pod_spec(spec, pod, self.settings.cluster_domain)
            secret_name = secret_name_for_pod(key[1], pod)
            ca = self.ca_store.current()
        except (ValueError, CAError):
            return False
        slot = (pod.namespace, secret_name)
        # Only with a token free right now: in a burst (a scale-up faster than the rate cap) the passes
        # issue in batches, with one status write and one Event per batch, not per pod.
        if not self.gate.may_start_first(slot) or not self.issuer.try_token():
            return False
        self.gate.start_first(slot)
        try:
            created = await self._create_first(key, pod, spec, ca, secret_name)
        finally:
            self.gate.end_first(slot)
        if created is None:
            return False
        self.metrics.certificate_issued(ReissueReason.NEW)
        self.gate.first_issued(key, slot, created.meta.uid, pod.name)
        return True

    async def _create_first(self, key: IdentityKey, pod: PodInfo, spec: IdentitySpec, ca: CertificateAuthority,
                            secret_name: str) -> SecretView | None:
        try:
            content = await self.issuer.issue(pod, spec, ca, self.ca_store.bundle_pem, spec.certificate_hash(), None)
            body = secret_body(name=secret_name, identity=key[1], pod=pod, content=content,
                               template_labels=spec.secret_labels, template_annotations=spec.secret_annotations,
                               keystore=self.keystores.get(key))
        except PKIError:
            return None  # the pass reports it
        try:
            created = await self.writer.create(pod.namespace, body)
        except KubernetesAPIError:  # ConflictError included
            return None  # there already (or the API failed): the pass decides
        _log_issue("Issuing: first certificate", key[1], pod, content, ReissueReason.NEW)
        return created


def _log_issue(message: str, identity: str, pod: PodInfo, content: SecretContent, reason: ReissueReason) -> None:
    logger.info("%s for pod %s/%s: serial %s, %s, expires %s", message, pod.namespace, pod.name,
                content.serial, content.spiffe_id, content.not_after.isoformat(),
                extra=fields(identity=identity, namespace=pod.namespace, pod=pod.name, reason=str(reason)))


def _priority(decision: Decision, state: IssuedState | None, now: datetime) -> IssuePriority:
    """New pods and repairs first; then renewals at or past their time; then everything else."""
    if decision.reason in (ReissueReason.NEW, ReissueReason.REPAIR):
        return IssuePriority.STARTING
    if decision.reason is ReissueReason.RENEWAL and state is not None and now >= state.renew_at:
        return IssuePriority.OVERDUE
    return IssuePriority.BACKGROUND


def _clash_message(namespace: str, secret_name: str, pod_name: str, problem: str) -> str:
    return (
        f"pod {pod_name}: {problem.replace('Secret ' + secret_name, 'Secret ' + namespace + '/' + secret_name, 1)}; "
        f"it was left untouched (delete or rename it, or set the pod annotation {c.SECRET_NAME_ANNOTATION})"
    )
