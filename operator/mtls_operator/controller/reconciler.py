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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.gate import IssuanceGate
from mtls_operator.controller.index import IdentityIndex
from mtls_operator.controller.issue_log import IssueLog
from mtls_operator.controller.issuer import ISSUE_CONCURRENCY, Issuer
from mtls_operator.controller.keystores import KEYSTORE_RECHECK, KEYSTORE_UNAVAILABLE, KeystorePasswords
from mtls_operator.controller.objects import WatchedObjects
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
    bundle_hash,
    is_pod_secret_of,
    keystore_patch,
    merge_patches,
    metadata_patch,
    ownership_problem,
    pod_info,
    pod_query,
    pod_spec,
    read_secret_metadata,
    reissue_patch,
    secret_body,
    secret_metadata,
    secret_name_for_pod,
    secrets_query,
)
from mtls_operator.rules.reissue import RENEWAL_HORIZON, ReissueInput, reissue_decision
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
# Secrets whose data is checked at once in the background after a list (``verify_listed``), and the
# pause between pages, so the check never competes with issuing for long.
VERIFY_PAGE = 250
VERIFY_PAUSE = 0.05
# A pass's loops over every pod of an identity give the event loop a turn this often.
YIELD_EVERY = 2000


@dataclass(frozen=True)
class _Kept:
    """A pod whose certificate a pass kept without writing, and what that answer rested on: while the pod,
    its Secret's version and the pass's inputs stay the same, and until the renewal comes near, the next
    pass counts it as it is instead of deciding again."""

    pod: PodInfo
    secret_version: tuple[str, str]
    until: datetime
    spiffe_id: str
    renew_at: datetime
    not_after: datetime


@dataclass
class _KeptPods:
    """An identity's kept pods by Secret name, valid for one set of pass inputs (``inputs``)."""

    inputs: tuple[object, ...]
    pods: dict[str, _Kept]


@dataclass(frozen=True)
class _Pass:
    """One pass over an identity's pods: what every pod's decision and write needs."""

    namespace: str
    identity: str
    spec: IdentitySpec
    ca: CertificateAuthority
    bundle_pem: bytes
    bundle_hash: str
    trusted: frozenset[str]
    spec_hash: str
    now: datetime
    existing: dict[str, SecretView]
    tally: PassTally
    ca_fingerprint: str
    # Pods kept at this pass, remembered for the next (None: the pass read the API, nothing is kept).
    kept: dict[str, _Kept] | None = None

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
        # Pods and Secrets as the watches report them (the runtime feeds it); passes read it once synced.
        self.objects = WatchedObjects()
        self.gate = IssuanceGate()
        self.writer = SecretWriter(cluster, on_written=self._written, on_deleted=self.objects.deleted)
        self.issuer = Issuer(trust_domain=settings.trust_domain, clock=clock, limiter=limiter, metrics=self.metrics,
                             jitter=jitter)
        self.reporter = Reporter(cluster, ca_store, self.metrics, clock)
        self.bundles = TrustBundlePublisher(cluster, ca_store, self.writer)
        self.keystores = KeystorePasswords(cluster)
        # Per identity, the pods its last passes kept untouched (passes over the watched store only).
        self._kept: dict[IdentityKey, _KeptPods] = {}
        self.issue_log = IssueLog(logger)

    def _log_issue(self, message: str, identity: str, pod: PodInfo, content: SecretContent,
                   reason: ReissueReason) -> None:
        self.issue_log.issued(message, namespace=pod.namespace, identity=identity, pod=pod.name, serial=content.serial,
                              spiffe_id=content.spiffe_id, not_after=content.not_after, reason=str(reason))

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
        self._kept.pop(key, None)
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

    def _written(self, secret: SecretView) -> None:
        """Every Secret write, as the API answered it: into the store, and its reading from the annotations
        just written (no parse: the operator wrote the certificate, the key and the bundle itself)."""
        kept = self.objects.wrote(secret)
        reading = read_secret_metadata(kept.annotations)
        if reading is not None:
            self.secrets.remember(secret, reading, listed=False)

    # The pods of one identity ------------------------------------------------------------------

    async def _pods_and_secrets(self, key: IdentityKey,
                                spec: IdentitySpec) -> tuple[list[PodInfo], dict[str, SecretView], bool]:
        """The identity's pods and Secrets: from the watched store once it is synced, else from the API.
        Also whether they came from the store (Secrets without data: read from their annotations).

        Keystores are built from a Secret's own key and chain, so identities that ask for them still list
        their Secrets with data."""
        namespace, name = key
        if self.objects.synced and spec.pkcs12 is None:
            return self.objects.pods(namespace, spec.selector), self.objects.secrets(namespace, name), True
        pods = [pod_info(body) for body in await self.cluster.list_pods(namespace, pod_query(spec.selector))]
        listed = map(SecretView.of, await self.cluster.list_secrets(namespace, secrets_query(name)))
        return pods, {secret.name: secret for secret in listed}, False

    async def _read_stored(self, key: IdentityKey, existing: dict[str, SecretView], names: list[str],
                           bundle_pem: bytes) -> None:
        """Readings for the stored (metadata-only) Secrets ``names`` of ``existing``, which is updated.

        A version the operator wrote, or one listed at start-up, is read from its annotations; any other
        (edited behind our back: the watch reported a version we did not write) is read from the API
        with its data and parsed, as before."""
        unknown = []
        for secret_name in names:
            secret = existing[secret_name]
            if self.secrets.known(secret):
                continue
            reading = read_secret_metadata(secret.annotations) if self.objects.listed(secret) else None
            if reading is not None:
                self.secrets.remember(secret, reading, listed=True)
            else:
                unknown.append(secret_name)
        if not unknown:
            return
        namespace = key[0]
        slots = asyncio.Semaphore(ISSUE_CONCURRENCY)

        async def fetch(secret_name: str) -> SecretView | None:
            async with slots:
                return await self._get_secret(namespace, secret_name)

        fetched = await asyncio.gather(*(fetch(secret_name) for secret_name in unknown))
        for secret_name, found in zip(unknown, fetched, strict=True):
            if found is None:
                existing.pop(secret_name)  # deleted meanwhile: its DELETED event is on its way
            else:
                existing[secret_name] = found
        await self.secrets.read_all([found for found in fetched if found is not None], bundle_pem)

    async def _serve_pods(self, key: IdentityKey, identity: IdentityView, spec: IdentitySpec,
                          ca: CertificateAuthority, bundle_pem: bytes, now: datetime) -> PassTally:
        namespace, name = key
        me = self.index.identity_ref(identity.body)
        others = [self.index.identity_ref(body) for body in await self.cluster.list_identities(namespace)]
        pods, existing, stored = await self._pods_and_secrets(key, spec)
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
        job = _Pass(namespace, name, spec, ca, bundle_pem, bundle_hash(bundle_pem),
                    self.ca_store.trusted_fingerprints, spec.certificate_hash(), now, existing, tally, ca.fingerprint,
                    kept=self._kept_pods(key, spec, ca.fingerprint, bundle_pem) if stored else None)
        # A pod whose first issue is being tried right now is left to it (the pass after it reports it):
        # a pass that took it would make it wait for the pass's other work.
        assigned = [(secret_name, pod) for secret_name, pod in plan.assigned
                    if secret_name in existing or not self.gate.is_arriving((pod.namespace, pod.name))]
        if job.kept is not None:
            assigned = await self._count_kept(job, assigned)
        if stored:
            await self._read_stored(key, existing, [n for n, _ in assigned if n in existing], bundle_pem)
        else:
            self._kept.pop(key, None)
            # Every uncached Secret of the pass parsed in one worker thread, before anything reads it.
            await self.secrets.read_all([existing[n] for n, _ in assigned if n in existing], bundle_pem)
        assigned = [(name_, pod) for name_, pod in assigned if not self._kept_at_once(job, name_, pod)]
        # Starting pods first, then overdue renewals, then the rest: also the order the rate limit serves.
        assigned = sorted(assigned, key=lambda item: self._urgency(existing.get(item[0]), now))
        # Pods are served ISSUE_CONCURRENCY at a time (API round trips overlap), in that order, by as many
        # workers taking the next pod (not a task per pod); the rate limit stays global.
        pending = iter(assigned)

        async def serve_next() -> None:
            for secret_name, pod in pending:
                await self._serve_slot(job, secret_name, pod)

        await asyncio.gather(*(serve_next() for _ in range(min(ISSUE_CONCURRENCY, len(assigned)))))
        await self._delete_unserved(job, plan.keep)
        return tally

    def _kept_pods(self, key: IdentityKey, spec: IdentitySpec, ca_fingerprint: str,
                   bundle_pem: bytes) -> dict[str, _Kept]:
        """The pods kept by the identity's last passes, if those passes had the same inputs as this one."""
        inputs = self._kept_inputs(spec, ca_fingerprint, bundle_pem)
        kept = self._kept.get(key)
        if kept is None or kept.inputs != inputs:
            kept = self._kept[key] = _KeptPods(inputs, {})
        return kept.pods

    def _kept_inputs(self, spec: IdentitySpec, ca_fingerprint: str, bundle_pem: bytes) -> tuple[object, ...]:
        """What a pass's decisions rest on besides the pod and its Secret: while they stay, a kept pod stays kept."""
        return (spec, ca_fingerprint, bundle_pem, self.ca_store.trusted_fingerprints)

    async def _count_kept(self, job: _Pass, assigned: list[tuple[str, PodInfo]]) -> list[tuple[str, PodInfo]]:
        """Count the pods nothing changed for since a pass kept them; return the others, to be served.

        A pass for one new pod so touches that pod only: the rest is a look-up each (with a turn for the
        loop every few thousand, for the webhooks and first issues)."""
        kept = job.kept if job.kept is not None else {}
        serve = []
        for index, (secret_name, pod) in enumerate(assigned):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            was = kept.get(secret_name)
            secret = job.existing.get(secret_name)
            if (was is not None and secret is not None and was.secret_version == secret.version
                    and job.now < was.until and was.pod == pod):
                job.tally.count_valid(was.spiffe_id, was.renew_at, was.not_after)
            else:
                kept.pop(secret_name, None)
                serve.append((secret_name, pod))
        return serve

    def _urgency(self, secret: SecretView | None, now: datetime) -> IssuePriority:
        state = self.secrets.read(secret).state if secret is not None else None
        if state is None:
            return IssuePriority.STARTING
        return IssuePriority.OVERDUE if now >= state.renew_at else IssuePriority.BACKGROUND

    async def _serve_slot(self, job: _Pass, secret_name: str, pod: PodInfo) -> None:
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
                                 ca_fingerprint=job.ca_fingerprint, trusted_ca_fingerprints=job.trusted),
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
        patch = self._keep_patch(job, pod, secret, reading)
        if patch:
            try:
                await self.writer.update(secret, patch)
            except KubernetesAPIError as exc:
                job.tally.fail(issuance_error(exc), f"pod {pod.name}: updating Secret {secret.name} failed: {exc}",
                               pod.name)
                job.keep_held(reading)
                return
        self._count_kept_pod(job, pod, secret, state, remember=not patch)

    def _keep_patch(self, job: _Pass, pod: PodInfo, secret: SecretView, reading: SecretReading) -> dict[str, Any]:
        """What a Secret whose certificate stays needs written: missing template metadata, a stale ca.crt."""
        labels, annotations = secret_metadata(job.identity, pod, job.spec.secret_labels, job.spec.secret_annotations)
        if secret.annotations.get(c.BUNDLE_HASH_ANNOTATION) != job.bundle_hash:
            annotations[c.BUNDLE_HASH_ANNOTATION] = job.bundle_hash
        patch = metadata_patch(secret, labels, annotations) or {}
        if reading.bundle_hash != job.bundle_hash:
            patch.setdefault("data", {})[c.CA_CRT] = b64text(job.bundle_pem)
        stores = keystore_patch(secret, self.keystores.get((job.namespace, job.identity)), job.bundle_pem)
        if stores is not None:
            patch = merge_patches(patch, stores)
        return patch

    def _count_kept_pod(self, job: _Pass, pod: PodInfo, secret: SecretView, state: IssuedState, *,
                        remember: bool) -> None:
        spiffe = self.issuer.spiffe_id(pod)
        job.tally.count_valid(spiffe, state.renew_at, state.not_after)
        if job.kept is not None and remember:
            job.kept[secret.name] = _Kept(pod, secret.version, state.renew_at - RENEWAL_HORIZON, spiffe,
                                          state.renew_at, state.not_after)

    def _kept_at_once(self, job: _Pass, secret_name: str, pod: PodInfo) -> bool:
        """Serve a pod on the spot, without a task of its own, when its certificate stays and its Secret needs
        no write (most pods of a pass at start-up, of a CA rotation's passes): the same checks as ``_serve``,
        and anything else — a write, a Secret to read, a slot being issued — goes the long way."""
        secret = job.existing.get(secret_name)
        slot = job.slot(secret_name)
        if secret is None or not self.secrets.known(secret) or self.gate.busy(slot):
            return False
        if ownership_problem(secret, job.identity, pod) is not None:
            return False
        reading = self.secrets.read(secret)
        if reading.state is None or reading.problems:
            return False
        if self.secrets.needs_parsing(secret, job.bundle_pem):
            return False  # a chain check still to run in a worker thread
        pod_job = job.for_pod(pod, self.settings.cluster_domain)
        if self._decide(pod_job, pod, secret_name, secret, reading) is not None:
            return False
        if self._keep_patch(pod_job, pod, secret, reading):
            return False
        self.gate.clear_clash(slot)
        self._count_kept_pod(pod_job, pod, secret, reading.state, remember=True)
        return True

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
        if written is False:
            job.keep_held(reading)
            return
        self._log_issue(decision.message, job.identity, pod, content, decision.reason)
        job.tally.issued(decision, pod.name)
        self.metrics.certificate_issued(decision.reason)
        job.tally.count_valid(content.spiffe_id, content.renew_at, content.not_after)
        if job.kept is not None and isinstance(written, SecretView):
            # Written just now for this pass's inputs: the next pass counts it as kept, without deciding again.
            job.kept[secret_name] = _kept_written(pod, written, content)

    async def _write(self, job: _Pass, pod: PodInfo, secret_name: str, secret: SecretView | None,
                     body: dict[str, Any]) -> SecretView | bool | None:
        """Write the new certificate: the Secret as written, False when left for a later pass (the name is
        taken), None when this very pod's Secret turned up issued meanwhile (counted as it is)."""
        if secret is not None:
            return await self.writer.update(secret, reissue_patch(body))
        try:
            # Create first, look only on a clash: one write per new pod, no extra read.
            return await self.writer.create(pod.namespace, body)
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

    # Secrets read from their annotations when listed: their data checked in the background ---------

    async def verify_listed(self, pause: float = VERIFY_PAUSE,
                            idle: Callable[[], Awaitable[None]] | None = None) -> set[IdentityKey]:
        """Page once through the managed Secrets with their data, and check every version that a pass read
        from its annotations because it was listed (a restart, a lost watch): a Secret edited while no
        operator watched is found here. Returns the identities holding one whose data disagrees; their
        next pass decides on what the data says (a repair).

        ``idle`` is awaited before each page: the passes' work (a CA rotation's writes, new pods) goes
        first, as the check's parsing and chain checks would slow it down by as much as they cost."""
        wrong: set[IdentityKey] = set()
        if not self.secrets.unchecked:
            return wrong  # every version read from its annotations is the operator's own write, or checked
        selector = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME},{c.IDENTITY_LABEL}"
        token: str | None = None
        while True:
            if idle is not None:
                await idle()
            items, token = await self.cluster.list_secrets_page(selector, VERIFY_PAGE, token)
            for secret in await self.secrets.verify([SecretView.of(item) for item in items],
                                                    self.ca_store.bundle_pem):
                logger.warning("Secret %s/%s does not hold what its annotations record (changed while no operator "
                               "watched): its identity looks at it again", secret.meta.namespace, secret.name)
                key = (secret.meta.namespace, secret.labels.get(c.IDENTITY_LABEL, ""))
                wrong.add(key)
                if (kept := self._kept.get(key)) is not None:
                    kept.pods.pop(secret.name, None)  # its version is the same, what it holds is not
            if token is None:
                return wrong
            await asyncio.sleep(pause)

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
        identity_spec = spec
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
            first = await self._create_first(key, pod, spec, ca, secret_name)
        finally:
            self.gate.end_first(slot)
        if first is None:
            return False
        created, content = first
        self.metrics.certificate_issued(ReissueReason.NEW)
        self.gate.first_issued(key, slot, created.meta.uid, pod.name)
        kept = self._kept.get(key)
        if kept is not None and kept.inputs == self._kept_inputs(identity_spec, ca.fingerprint, content.bundle_pem):
            # Issued with the inputs of the identity's last pass: the next one counts it as kept.
            kept.pods[secret_name] = _kept_written(pod, created, content)
        return True

    async def _create_first(self, key: IdentityKey, pod: PodInfo, spec: IdentitySpec, ca: CertificateAuthority,
                            secret_name: str) -> tuple[SecretView, SecretContent] | None:
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
        self._log_issue("Issuing: first certificate", key[1], pod, content, ReissueReason.NEW)
        return created, content


def _kept_written(pod: PodInfo, written: SecretView, content: SecretContent) -> _Kept:
    """A pod whose certificate was just written: kept until its renewal comes near (as ``_count_kept_pod``)."""
    return _Kept(pod, written.version, content.renew_at - RENEWAL_HORIZON, content.spiffe_id, content.renew_at,
                 content.not_after)




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
