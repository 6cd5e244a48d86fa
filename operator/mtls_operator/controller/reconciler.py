"""Level-triggered reconciliation of one MTLSIdentity: read the cluster, plan, write the difference.

``Reconciler.reconcile`` is the whole loop for one identity. It re-reads everything it decides on
(the identity, its namespace's identities, the selected pods, the managed Secrets), so it is
correct after a restart, after missed events and with several triggers racing: a restart
re-derives all state from the Secrets' annotations and re-issues nothing that is still valid.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.signing import run_issuance
from mtls_operator.controller.workqueue import IssuePriority, RateLimiter
from mtls_operator.errors import (
    CAError,
    ChainError,
    ConflictError,
    KubernetesAPIError,
    PKIError,
    PolicyError,
    SpecError,
)
from mtls_operator.k8s import JSON, Cluster
from mtls_operator.observability.logs import fields
from mtls_operator.observability.metrics import IssuanceError, Metrics
from mtls_operator.pki import (
    BUNDLE_LIMITS,
    CHAIN_LIMITS,
    CLOCK_SKEW,
    CertificateAuthority,
    LeafRequest,
    issue_leaf,
    parse_pem_certificates,
    verify_leaf,
)
from mtls_operator.rules.plan import (
    IdentityRef,
    KeystoreRequest,
    PodInfo,
    Readiness,
    SecretContent,
    SecretReading,
    b64text,
    bounded_message,
    identity_ref,
    identity_status,
    is_managed,
    is_pod_secret_of,
    keystore_patch,
    keystore_request,
    merge_patches,
    metadata_patch,
    owner_pod_uid,
    ownership_problem,
    pod_info,
    pod_query,
    pod_spec,
    read_secret,
    reissue_patch,
    secret_body,
    secret_data,
    secret_metadata,
    secret_name_for_pod,
    secrets_query,
    serving_identity,
    status_changed,
    summarize_readiness,
)
from mtls_operator.rules.policy import spiffe_id
from mtls_operator.rules.renewal import (
    JITTER_FRACTION,
    Decision,
    DesiredState,
    IssuedState,
    ReissueReason,
    jittered_renewal_time,
    reissue_decision,
    renewal_time,
)
from mtls_operator.rules.rotation import Phase
from mtls_operator.rules.spec import (
    IdentitySpec,
    PolicyRefusal,
    check_identity_name,
    format_duration,
    parse_identity_spec,
)
from mtls_operator.times import Clock, format_time

logger = logging.getLogger(__name__)

IdentityKey = tuple[str, str]  # (namespace, name)

# How soon to look again when something outside our control (the CA, a clash) may get fixed.
RETRY_SOON = 15.0
# Renewals due within this window are done together (jitter spreads them; this batches them).
RENEWAL_HORIZON = timedelta(minutes=5)
# The earliest a fresh certificate may be renewed again.
MIN_RENEWAL_GAP = timedelta(minutes=5)
# Parsed Secrets remembered by (uid, resourceVersion); cleared when full.
READING_CACHE_SIZE = 50_000
# How many pods of one identity are served at once.
ISSUE_CONCURRENCY = 8
# The longest wait between retries of an identity with a standing per-pod problem.
MAX_PROBLEM_DELAY = 300.0
# Never sleep longer than this between looks at an identity, whatever its renewal time.
MAX_SLEEP = 3600.0
# First issues outside a pass only while fewer than this are under way: a burst of new pods goes
# through the passes, which batch it.
FIRST_ISSUE_LIMIT = 8
# The Ready reason of an identity whose keystore password Secret is missing or unusable.
KEYSTORE_UNAVAILABLE = "KeystorePasswordUnavailable"
KEYSTORE_RECHECK = 600.0
# When a pass left background re-issues (CA rotation, spec change) for later, look again this soon.
DEFERRED_DELAY = 1.0


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
        self.limiter = limiter
        self.jitter = jitter
        self.retry_delay = retry_delay
        self.metrics = metrics if metrics is not None else Metrics()
        # Which pods each identity served at its last reconcile: routes pod events to identities.
        self.served: dict[IdentityKey, set[str]] = {}
        # The last warning posted per identity, so a standing problem is not re-posted every loop.
        self._last_warning: dict[IdentityKey, str] = {}
        self._problem_streak: dict[IdentityKey, int] = {}
        self._readings: dict[tuple[str, str], SecretReading] = {}
        # Managed Secrets seen deleted (namespace, name): re-issuing one is a repair, not a first issue.
        self._vanished: dict[tuple[str, str], bool] = {}
        # The resourceVersion of our last write per Secret: the Secret watch ignores our own edits.
        self._written: dict[tuple[str, str], str] = {}
        # The last good spec per identity, by (uid, generation): what a first issue may use unread.
        self._specs: dict[IdentityKey, tuple[str, object, IdentitySpec]] = {}
        # Secrets (namespace, name) being issued right now, by a pass or a first issue: never both.
        self._issuing: set[tuple[str, str]] = set()
        self._first_in_flight = 0
        # First issues done outside a pass, per identity (count, first message), for the next pass to report.
        self._first_issued: dict[IdentityKey, tuple[int, str]] = {}
        # ... and their Secrets (namespace, name) -> uid, which a pass that listed before them must not
        # re-issue. Only a claim: the pass re-reads the Secret and checks it is still the one created.
        self._first_done: dict[tuple[str, str], str] = {}
        # Background re-issues per pass: about two seconds of the rate limit.
        self._background_per_pass = max(ISSUE_CONCURRENCY, int(limiter.rate * 2))
        # Secret names found taken by someone else: checked before issuing, until they free up.
        self._clashes: set[tuple[str, str]] = set()
        # Chain checks of pod Secrets against the bundle, by (uid, resourceVersion, bundle).
        self._chain_checks: dict[tuple[str, str, bytes], str | None] = {}
        self._anchors: tuple[bytes, list[Any]] | None = None
        # A namespace whose trust ConfigMap name is taken by someone else, as reported (once).
        self._bundle_problems: dict[str, str] = {}
        # Whether an identity's spec is servable, by (uid, generation): invalid ones take no part in conflicts.
        self._spec_validity: dict[tuple[str, str], bool] = {}
        # The PKCS#12 keystore password and profile per identity that asks for keystores, read each pass.
        self._keystores: dict[IdentityKey, KeystoreRequest] = {}

    # Entry points ---------------------------------------------------------------------------

    def identity_ref(self, body: Mapping[str, Any]) -> IdentityRef:
        """``plan.identity_ref``, with an identity whose spec is invalid selecting nothing."""
        return identity_ref(body, valid=self._spec_valid(body))

    def _spec_valid(self, body: Mapping[str, Any]) -> bool:
        """Whether an identity's spec can be served (a policy violation can: without the refused
        names); remembered per (uid, generation)."""
        metadata = body.get("metadata") or {}
        version = (str(metadata.get("uid")), str(metadata.get("generation")))
        known = self._spec_validity.get(version)
        if known is None:
            try:
                check_identity_name(str(metadata.get("name") or ""))
                self._parse_spec(body.get("spec") or {}, str(metadata.get("namespace") or ""))
                known = True
            except PolicyError:
                known = True
            except SpecError:
                known = False
            if len(self._spec_validity) >= READING_CACHE_SIZE:
                self._spec_validity.clear()
            self._spec_validity[version] = known
        return known

    def _parse_spec(self, spec: Mapping[str, Any], namespace: str) -> IdentitySpec:
        return parse_identity_spec(
            spec,
            namespace=namespace,
            cluster_domain=self.settings.cluster_domain,
            allowed_dns_patterns=self.settings.allowed_dns_patterns,
            default_duration=self.settings.default_duration,
            max_duration=self.settings.max_duration,
            allow_short_dns_names=self.settings.allow_short_dns_names,
        )

    async def reconcile(self, key: IdentityKey) -> float | None:
        """Bring one identity's Secrets and status in line; return seconds until the next look."""
        try:
            return await self._reconcile(key)
        except KubernetesAPIError:
            # The queue logs it and retries with backoff; the metric makes it visible.
            self.metrics.issuance_error(IssuanceError.API)
            raise

    async def _reconcile(self, key: IdentityKey) -> float | None:
        namespace, name = key
        identity = await self.cluster.get_identity(namespace, name)
        if identity is None or (identity.get("metadata") or {}).get("deletionTimestamp"):
            # Being deleted (its finalizer waits for this) or gone: its Secrets go with it.
            await self.cleanup(key)
            return None
        metadata = identity.get("metadata") or {}
        generation = metadata.get("generation")
        previous_status: Mapping[str, Any] = identity.get("status") or {}
        now = self.clock()
        refusal: PolicyRefusal | None = None
        try:
            check_identity_name(name)
            try:
                spec = self._parse_spec(identity.get("spec") or {}, namespace)
            except PolicyRefusal as exc:
                # Issue what the policy allows (a tightened policy re-issues without the refused names).
                spec, refusal = exc.allowed, exc
            self._specs[key] = (str(metadata.get("uid")), generation, spec)
        except SpecError as exc:
            self._specs.pop(key, None)
            # A bad spec never touches existing Secrets: they stay valid until the user fixes it.
            reason = "InvalidSpec"
            # The Event first: a status write that fails must not also lose the reason.
            await self._warn(key, identity, reason, str(exc), now)
            await self._report(identity, previous_status, Readiness(False, reason, str(exc)), generation, now,
                               keep_counts=True)
            self.metrics.issuance_error(IssuanceError.INVALID_SPEC)
            await self._follow_bundle(key)
            return None

        try:
            await self.ca_store.ensure_fresh()
            ca = self.ca_store.current()
        except CAError as exc:
            message = f"no CA to sign with: {exc}"
            await self._warn(key, identity, "CAUnavailable", message, now)
            await self._report(identity, previous_status, Readiness(False, "CAUnavailable", message), generation,
                               now, keep_counts=True)
            self.metrics.issuance_error(IssuanceError.CA_UNAVAILABLE)
            return self.retry_delay

        keystore_problem = await self._read_keystore_password(key, spec)
        if keystore_problem is not None:
            # Never a keystore without its password: nothing is issued until the password is readable.
            self._specs.pop(key, None)
            await self._warn(key, identity, KEYSTORE_UNAVAILABLE, keystore_problem, now)
            await self._report(identity, previous_status, Readiness(False, KEYSTORE_UNAVAILABLE, keystore_problem),
                               generation, now, keep_counts=True)
            await self._follow_bundle(key)
            streak = self._problem_streak.get(key, 0)
            self._problem_streak[key] = streak + 1
            return min(MAX_PROBLEM_DELAY, self.retry_delay * 2.0**streak)

        bundle_pem = self.ca_store.bundle_pem
        try:
            problem = await self._ensure_trust_bundle(namespace, bundle_pem)
        except KubernetesAPIError as exc:
            logger.warning("could not publish the trust bundle in namespace %s: %s", namespace, exc)
        else:
            if problem is not None and self._bundle_problems.get(namespace) != problem:
                self._bundle_problems[namespace] = problem
                logger.warning("identity %s/%s: %s", namespace, name, problem)
                await self._event(identity, "Warning", "TrustBundleNotPublished", problem, now)
            elif problem is None:
                self._bundle_problems.pop(namespace, None)
        result = await self._reconcile_pods(key, identity, spec, ca, bundle_pem, now)
        first_issues = self._first_issued.pop(key, None)
        if first_issues is not None:
            # Issued outside the pass (issue_first): reported with it, in its Event and status.
            count, message = first_issues
            result.issued_by_reason[ReissueReason.NEW] = result.issued_by_reason.get(ReissueReason.NEW, 0) + count
            if result.first_decision is None:
                result.first_decision, result.first_reason = message, ReissueReason.NEW
        if result.issued_by_reason:
            result.last_issuance = {
                "time": format_time(self.clock()),
                "reason": str(result.first_reason),
                "count": sum(result.issued_by_reason.values()),
                "message": bounded_message(result.first_decision or ""),
            }
        self.served[key] = result.served
        for error, count in result.errors.items():
            self.metrics.issuance_error(error, count)
        self.metrics.identity_observed(
            namespace,
            name,
            served=result.pods,
            issued=result.valid,
            failed=len(result.failed_pods),
            earliest_not_after=result.earliest_not_after,
            next_renewal=result.next_renewal,
        )
        readiness = summarize_readiness(
            pods=result.pods,
            issued=result.valid,
            selector_text=spec.selector.to_query(),
            conflicts=result.conflicts,
            clashes=result.clashes,
            failures=result.failures,
        )
        if refusal is not None:
            # What is issued first: a long refusal is cut at the status's message limit, never these facts.
            readiness = Readiness(False, "PolicyViolation", f"{refusal.outcome}; {readiness.message}; {refusal}")
        status = identity_status(
            previous=previous_status,
            readiness=readiness,
            generation=generation if isinstance(generation, int) else None,
            pods=result.pods,
            issued=result.valid,
            spiffe_ids=result.spiffe_ids,
            next_renewal=result.next_renewal,
            ca_fingerprint=ca.fingerprint,
            now=self.clock(),
            ca_condition=self._ca_condition(),
            rotation_phase=str(self.ca_store.rotation.phase),
            last_issuance=result.last_issuance,
        )
        # Events before the status: a status write that fails must not also lose what happened.
        if result.issued_by_reason:
            summary = ", ".join(f"{reason}: {count}" for reason, count in sorted(result.issued_by_reason.items()))
            total = sum(result.issued_by_reason.values())
            detail = f"; {result.first_decision}" if result.first_decision else ""
            await self._event(identity, "Normal", "Issued",
                              f"issued {total} certificate(s) ({summary}){detail}", now)
        if readiness.status or readiness.reason in ("Issuing", "NoPods"):
            self._last_warning.pop(key, None)
        else:
            await self._warn(key, identity, readiness.reason, readiness.message, now)
        if status_changed(previous_status, status):
            await self.cluster.patch_identity_status(namespace, name, status)
        if result.failures or result.clashes:
            # Standing problems (a clash, a bad annotation) back off; the watches report their fixes.
            streak = self._problem_streak.get(key, 0)
            self._problem_streak[key] = streak + 1
            return min(MAX_PROBLEM_DELAY, self.retry_delay * 2.0**streak)
        self._problem_streak.pop(key, None)
        if result.deferred:
            return DEFERRED_DELAY
        # A new keystore password changes no object the operator watches: look at it again this soon.
        recheck = KEYSTORE_RECHECK if spec.pkcs12 is not None else MAX_SLEEP
        if result.next_renewal is None:
            return recheck if spec.pkcs12 is not None else None
        wait = (result.next_renewal - self.clock()).total_seconds()
        return min(MAX_SLEEP, recheck, max(1.0, wait))

    async def _read_keystore_password(self, key: IdentityKey, spec: IdentitySpec) -> str | None:
        """Read the keystore password the spec names (``None`` when it asks for no keystores, or all is
        well); otherwise why it cannot be used."""
        if spec.pkcs12 is None:
            self._keystores.pop(key, None)
            return None
        ref = spec.pkcs12
        try:
            password_secret = await self.cluster.get_secret(key[0], ref.password_secret_name)
            self._keystores[key] = keystore_request(password_secret, ref, key[0])
        except KubernetesAPIError as exc:
            self._keystores.pop(key, None)
            return f"cannot read the keystore password Secret {key[0]}/{ref.password_secret_name}: {exc}"
        except ValueError as exc:
            self._keystores.pop(key, None)
            return str(exc)
        return None

    def _ca_condition(self) -> Readiness:
        """The CertificateAuthority condition: a CA problem every identity should show."""
        if self.ca_store.stalled:
            return Readiness(False, "RotationStalled", self.ca_store.stalled)
        if self.ca_store.problem:
            return Readiness(False, "CASecretInvalid", f"{self.ca_store.problem}; still signing with the CA "
                                                       f"loaded before, {self.ca_store.current().fingerprint}")
        if self.ca_store.warning:
            return Readiness(False, "CAExpiringSoon", self.ca_store.warning)
        phase = self.ca_store.rotation.phase
        ca = self.ca_store.current()
        if phase is not Phase.IDLE:
            return Readiness(True, "Rotating", f"CA rotation phase {phase}; {ca.fingerprint} signs")
        return Readiness(True, "Valid", f"{ca.fingerprint} signs, expires {format_time(ca.not_after)}")

    async def _follow_bundle(self, key: IdentityKey) -> None:
        """Keep ``ca.crt`` of an identity's Secrets on the current bundle even while its spec is bad:
        its certificates stay as they are, but its pods must keep trusting peers through a CA rotation."""
        try:
            await self.ca_store.ensure_fresh()
            bundle_pem = self.ca_store.bundle_pem
        except CAError:
            return
        namespace, name = key
        for secret in await self.cluster.list_secrets(namespace, secrets_query(name)):
            if is_pod_secret_of(secret, name) and secret_data(secret, c.CA_CRT) != bundle_pem:
                meta = secret.get("metadata") or {}
                try:
                    self._remember_write(await self.cluster.update_secret(
                        namespace, str(meta.get("name")), {"data": {c.CA_CRT: b64text(bundle_pem)}},
                        str(meta.get("resourceVersion"))))
                except KubernetesAPIError as exc:
                    logger.warning("could not refresh the trust bundle of Secret %s/%s: %s", namespace,
                                   meta.get("name"), exc)

    async def cleanup(self, key: IdentityKey) -> int:
        """Delete every Secret this identity manages (the identity is being deleted)."""
        namespace, name = key
        deleted = 0
        for secret in await self.cluster.list_secrets(namespace, secrets_query(name)):
            if is_pod_secret_of(secret, name):
                meta = secret.get("metadata") or {}
                await self.cluster.delete_secret(namespace, str(meta.get("name")), str(meta.get("uid")),
                                                 str(meta.get("resourceVersion")))
                deleted += 1
        self.served.pop(key, None)
        self._specs.pop(key, None)
        self._first_issued.pop(key, None)
        self._last_warning.pop(key, None)
        self._problem_streak.pop(key, None)
        self._keystores.pop(key, None)
        self.metrics.identity_removed(namespace, name)
        return deleted

    def _urgency(self, secret: JSON | None, now: datetime) -> IssuePriority:
        if secret is None:
            return IssuePriority.STARTING
        state = self._read(secret).state
        if state is None:
            return IssuePriority.STARTING
        return IssuePriority.OVERDUE if now >= state.renew_at else IssuePriority.BACKGROUND

    def _chain_problem(self, secret: JSON, reading: SecretReading, bundle_pem: bytes) -> str | None:
        """Whether the Secret's certificate chains to the current trust bundle (a hand-edited Secret may
        not); remembered per Secret version and bundle (``_read_all`` checks it in a worker thread)."""
        key = _chain_key(secret, bundle_pem)
        if key not in self._chain_checks:
            self._remember_chain(key, self._check_chain(secret, reading, bundle_pem, self.clock()))
        return self._chain_checks[key]

    def _check_chain(self, secret: JSON, reading: SecretReading, bundle_pem: bytes, now: datetime) -> str | None:
        try:
            anchors = self._trust_anchors(bundle_pem)
        except PKIError as exc:
            return f"tls.crt does not chain to the trust bundle: {exc}"
        return _chain_problem(secret, reading, anchors, now)

    def _remember_chain(self, key: tuple[str, str, bytes], problem: str | None) -> None:
        if len(self._chain_checks) >= READING_CACHE_SIZE:
            self._chain_checks.clear()
        self._chain_checks[key] = problem

    def _trust_anchors(self, bundle_pem: bytes) -> list[Any]:
        """The bundle's certificates; the bundle is the operator's own, but parsed off the loop all the same
        (``_read_all`` calls this in its worker thread: the tuple is replaced whole, never mutated)."""
        anchors = self._anchors
        if anchors is None or anchors[0] != bundle_pem:
            anchors = self._anchors = (bundle_pem, parse_pem_certificates(bundle_pem, BUNDLE_LIMITS))
        return anchors[1]

    def _read(self, secret: JSON) -> SecretReading:
        """``read_secret``, remembered per Secret version: an unchanged Secret is parsed once, not per pass.

        ``_read_all`` has parsed it already, in a worker thread; parsing here, on the loop, happens only
        when the cache was cleared in between."""
        version = _reading_key(secret)
        reading = self._readings.get(version)
        if reading is None:
            reading = read_secret(secret)
            self._remember_reading(version, reading)
        return reading

    def _remember_reading(self, version: tuple[str, str], reading: SecretReading) -> None:
        if len(self._readings) >= READING_CACHE_SIZE:
            self._readings.clear()
        self._readings[version] = reading

    async def _read_all(self, secrets: list[JSON], bundle_pem: bytes) -> None:
        """Read (``read_secret``) and chain-check every Secret not seen in this version yet, in one
        worker thread for all of them.

        Their data is the tenants' to write (up to 1 MiB a Secret): parsing it on the event loop would
        hold up the webhooks, the Lease and the health endpoint. One thread hop per pass, not one per
        Secret, keeps the CPU per certificate low; each parse step is capped and linear (pki/bundle.py),
        so the worker never holds the GIL for long and the loop keeps its turns.
        """
        pending = [secret for secret in secrets if self._needs_parsing(secret, bundle_pem)]
        if not pending:
            return
        cached = [self._readings.get(_reading_key(secret)) for secret in pending]
        moment = self.clock()

        def parse() -> list[tuple[SecretReading, str | None]]:
            done = []
            for secret, known in zip(pending, cached, strict=True):
                reading = known if known is not None else read_secret(secret)
                checked = reading.state is not None and not reading.problems
                done.append((reading, self._check_chain(secret, reading, bundle_pem, moment) if checked else None))
            return done

        for secret, (reading, problem) in zip(pending, await asyncio.to_thread(parse), strict=True):
            self._remember_reading(_reading_key(secret), reading)
            if reading.state is not None and not reading.problems:
                self._remember_chain(_chain_key(secret, bundle_pem), problem)

    def _needs_parsing(self, secret: JSON, bundle_pem: bytes) -> bool:
        reading = self._readings.get(_reading_key(secret))
        if reading is None:
            return True
        return reading.state is not None and not reading.problems and _chain_key(secret, bundle_pem) not in \
            self._chain_checks

    def wrote(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether this version of a Secret is one the reconciler wrote itself."""
        return self._written.get((namespace, name)) == resource_version

    def _remember_write(self, written: JSON) -> None:
        meta = written.get("metadata") or {}
        if len(self._written) >= READING_CACHE_SIZE:
            self._written.clear()
        self._written[(str(meta.get("namespace")), str(meta.get("name")))] = str(meta.get("resourceVersion"))

    def secret_vanished(self, namespace: str, name: str) -> None:
        """A managed Secret was deleted: if its pod is still served, re-issuing it is a repair."""
        if len(self._vanished) >= READING_CACHE_SIZE:
            self._vanished.clear()
        self._vanished[(namespace, name)] = True

    async def managed_secret_count(self, key: IdentityKey) -> int:
        namespace, name = key
        secrets = await self.cluster.list_secrets(namespace, secrets_query(name))
        return sum(1 for secret in secrets if is_pod_secret_of(secret, name))

    def identities_for_pod(self, pod: PodInfo, identities: Mapping[IdentityKey, IdentityRef]) -> set[IdentityKey]:
        """Identities a pod event concerns: those selecting it now, and those that served it before."""
        keys = {key for key, ref in identities.items() if key[0] == pod.namespace and _could_select(ref, pod)}
        keys.update(key for key, pods in self.served.items() if key[0] == pod.namespace and pod.name in pods)
        return keys

    # The pods of one identity ------------------------------------------------------------------

    async def _reconcile_pods(
        self,
        key: IdentityKey,
        identity: JSON,
        spec: IdentitySpec,
        ca: CertificateAuthority,
        bundle_pem: bytes,
        now: datetime,
    ) -> _PodsResult:
        namespace, name = key
        me = self.identity_ref(identity)
        others = [self.identity_ref(body) for body in await self.cluster.list_identities(namespace)]
        pods = [pod_info(body) for body in await self.cluster.list_pods(namespace, _pod_selector(spec))]
        existing = {
            str((secret.get("metadata") or {}).get("name")): secret
            for secret in await self.cluster.list_secrets(namespace, secrets_query(name))
        }
        result = _PodsResult()
        desired_names: set[str] = set()
        trusted = self.ca_store.trusted_fingerprints
        spec_hash = spec.certificate_hash()
        claims: dict[str, list[PodInfo]] = {}
        for pod in pods:
            if pod.finished:
                continue  # a pod that has finished serves nobody: its Secret goes
            if pod.terminating:
                # Keep a terminating pod's Secret (it may still be serving), but issue nothing new.
                desired_names.update(n for n, body in existing.items() if owner_pod_uid(body) == pod.uid)
                continue
            if spec.service_account_name and pod.service_account != spec.service_account_name:
                continue
            owner = serving_identity(pod, [*others, me])
            if owner is None:
                continue
            if owner.uid != me.uid or owner.name != me.name:
                result.conflicts.append((pod.name, owner.name))
                continue
            result.pods += 1
            try:
                pod_spec(spec, pod, self.settings.cluster_domain)  # a bad headless name fails this pod only
                claims.setdefault(secret_name_for_pod(name, pod), []).append(pod)
            except ValueError as exc:
                result.fail(IssuanceError.INVALID_SPEC, str(exc), pod.name)
        assignments: list[tuple[str, PodInfo]] = []
        for secret_name, claimants in sorted(claims.items()):
            pod = _rightful_claimant(claimants, existing.get(secret_name))
            for other in claimants:
                if other is not pod:
                    result.fail(
                        IssuanceError.SECRET_CONFLICT,
                        f"pod {other.name}: Secret name {secret_name} is already used by pod {pod.name} "
                        f"(check the {c.SECRET_NAME_ANNOTATION} annotations)",
                        other.name,
                    )
            desired_names.add(secret_name)
            result.served.add(pod.name)
            assignments.append((secret_name, pod))

        # Pods are served concurrently (API round trips overlap); the rate limit stays global.
        slots = asyncio.Semaphore(ISSUE_CONCURRENCY)

        async def serve(secret_name: str, pod: PodInfo) -> None:
            slot = (namespace, secret_name)
            async with slots:
                if slot in self._issuing:
                    return  # being issued right now outside this pass; the pass queued after it counts it
                self._issuing.add(slot)
                try:
                    await serve_one(secret_name, pod, existing.get(secret_name))
                finally:
                    self._issuing.discard(slot)

        async def serve_one(secret_name: str, pod: PodInfo, secret: JSON | None) -> None:
            created_uid = self._first_done.pop((namespace, secret_name), None)
            if secret is None and created_uid is not None:
                # Created outside this pass after it listed the Secrets: read it, do not issue again.
                # What is there now may be another Secret under that name (ours deleted, someone
                # else's created since): ``_serve_pod`` checks whose it is before any write.
                secret = await self.cluster.get_secret(namespace, secret_name)
            if secret is None and (namespace, secret_name) in self._clashes:
                # Known to be taken: look before generating a key we could not store.
                secret = await self.cluster.get_secret(namespace, secret_name)
                if secret is None:
                    self._clashes.discard((namespace, secret_name))
            own_spec = pod_spec(spec, pod, self.settings.cluster_domain)
            await self._serve_pod(
                pod=pod,
                secret_name=secret_name,
                secret=secret,
                identity_name=name,
                spec=own_spec,
                ca=ca,
                bundle_pem=bundle_pem,
                trusted=trusted,
                spec_hash=spec_hash if own_spec is spec else own_spec.certificate_hash(),
                now=now,
                result=result,
            )

        # Every uncached Secret of the pass parsed in one worker thread, before anything reads it.
        await self._read_all([existing[n] for n, _ in assignments if n in existing], bundle_pem)
        # Starting pods first, then overdue renewals, then the rest: also the order the rate limit serves.
        assignments.sort(key=lambda item: self._urgency(existing.get(item[0]), now))
        await asyncio.gather(*(serve(secret_name, pod) for secret_name, pod in assignments))
        for secret_name, secret in existing.items():
            if secret_name not in desired_names and is_pod_secret_of(secret, name):
                meta = secret.get("metadata") or {}
                try:
                    await self.cluster.delete_secret(namespace, secret_name, str(meta.get("uid")),
                                                     str(meta.get("resourceVersion")))
                except KubernetesAPIError as exc:
                    result.fail(IssuanceError.API, f"deleting Secret {secret_name} failed: {exc}")
                    continue
                logger.info("deleted Secret %s/%s: pod %s is no longer served by %s", namespace, secret_name,
                            (meta.get("labels") or {}).get(c.POD_LABEL), name)
        return result

    async def issue_first(self, key: IdentityKey, version: tuple[str, object], pod: PodInfo) -> bool:
        """A new pod's first certificate, at once, without a pass over the identity's pods.

        A pod injected by the webhook has its Secret mounted by name, and the kubelet retries the
        mount until the Secret exists: its first certificate is what a starting pod waits for. This
        uses the spec the last pass read (``version``, the identity's (uid, generation) as watched,
        must match it), creates only, and leaves everything else (status, clashes, a Secret that
        exists) to the pass queued after it. Returns whether it issued.
        """
        cached = self._specs.get(key)
        if cached is None or cached[:2] != version or pod.terminating or pod.finished or not pod.opted_in:
            return False
        spec = cached[2]
        if spec.service_account_name and pod.service_account != spec.service_account_name:
            return False
        try:
            spec = pod_spec(spec, pod, self.settings.cluster_domain)
            secret_name = secret_name_for_pod(key[1], pod)
            ca = self.ca_store.current()
            bundle_pem = self.ca_store.bundle_pem
        except (ValueError, CAError):
            return False
        slot = (pod.namespace, secret_name)
        if slot in self._clashes or slot in self._issuing or self._first_in_flight >= FIRST_ISSUE_LIMIT:
            return False
        # Only with a token free right now: in a burst (a scale-up faster than the rate cap) the passes
        # issue in batches, with one status write and one Event per batch, not per pod.
        if not self.limiter.try_acquire():
            return False
        self._issuing.add(slot)
        self._first_in_flight += 1
        try:
            wanted_id = spiffe_id(self.settings.trust_domain, pod.namespace, pod.service_account)
            spec_hash = spec.certificate_hash()
            try:
                content = await self._issue(pod, spec, ca, bundle_pem, wanted_id, spec_hash, None)
            except (PKIError, ChainError):
                return False  # the pass reports it
            try:
                body = secret_body(name=secret_name, identity=key[1], pod=pod, content=content,
                                   template_labels=spec.secret_labels, template_annotations=spec.secret_annotations,
                                   keystore=self._keystores.get(key))
            except PKIError:
                return False  # the pass reports it
            try:
                created = await self.cluster.create_secret(pod.namespace, body)
                self._remember_write(created)
            except (ConflictError, KubernetesAPIError):
                return False  # there already (or the API failed): the pass decides
        finally:
            self._issuing.discard(slot)
            self._first_in_flight -= 1
        self.metrics.certificate_issued(ReissueReason.NEW)
        logger.info("Issuing: first certificate for pod %s/%s: serial %s, %s, expires %s", pod.namespace, pod.name,
                    content.serial, wanted_id, content.not_after.isoformat(),
                    extra=fields(identity=key[1], namespace=pod.namespace, pod=pod.name, reason=str(ReissueReason.NEW)))
        if len(self._first_done) >= READING_CACHE_SIZE:
            self._first_done.clear()
        self._first_done[slot] = str(created["metadata"].get("uid"))
        count, message = self._first_issued.get(key, (0, f"pod {pod.name}: Issuing: no certificate yet"))
        self._first_issued[key] = (count + 1, message)
        return True

    async def _serve_pod(
        self,
        *,
        pod: PodInfo,
        secret_name: str,
        secret: JSON | None,
        identity_name: str,
        spec: IdentitySpec,
        ca: CertificateAuthority,
        bundle_pem: bytes,
        trusted: frozenset[str],
        spec_hash: str,
        now: datetime,
        result: _PodsResult,
    ) -> None:
        wanted_id = spiffe_id(self.settings.trust_domain, pod.namespace, pod.service_account)
        if secret is not None and (problem := ownership_problem(secret, identity_name, pod)) is not None:
            # Never write a Secret we did not create for this pod, whatever labels it carries.
            self._clashes.add((pod.namespace, secret_name))
            result.clash(_clash_message(pod.namespace, secret_name, pod.name, problem), pod.name)
            return
        self._clashes.discard((pod.namespace, secret_name))
        if secret is not None:
            await self._read_all([secret], bundle_pem)  # a no-op for the Secrets the pass listed
        reading = self._read(secret) if secret is not None else None
        desired = DesiredState(
            spiffe_id=wanted_id,
            spec_hash=spec_hash,
            ca_fingerprint=ca.fingerprint,
            trusted_ca_fingerprints=trusted,
            bundle_current=reading is None or reading.bundle_pem == bundle_pem,
        )
        decision: Decision | None
        chain_problem = (self._chain_problem(secret, reading, bundle_pem)
                         if secret is not None and reading is not None and not reading.problems else None)
        if reading is not None and reading.state is None:
            decision = Decision(ReissueReason.REPAIR, f"Repairing: {reading.problems[0]}")
        elif chain_problem is not None:
            decision = Decision(ReissueReason.REPAIR, f"Repairing: {chain_problem}")
        elif secret is None and self._vanished.pop((pod.namespace, secret_name), False):
            decision = Decision(ReissueReason.REPAIR, "Repairing: the Secret was deleted")
        elif secret is not None and owner_pod_uid(secret) != pod.uid:
            # A new pod under an old name (StatefulSet): its own key, and an ownerReference that
            # does not let the garbage collector delete the Secret along with the old pod.
            decision = Decision(ReissueReason.NEW, "Issuing: the pod was re-created")
        else:
            decision = reissue_decision(
                reading.state if reading else None, desired, now, problems=reading.problems if reading else ()
            )
        if decision is None and reading is not None and reading.state is not None:
            decision = _batched_renewal(reading.state, now)

        def keep_held() -> None:
            # Whatever fails below, a certificate the pod still holds keeps its expiry on the
            # status and in the metrics: that is exactly when someone needs to see it.
            state = reading.state if reading is not None else None
            if state is not None and state.not_after > now:
                result.count_held(state.spiffe_id, state.renew_at, state.not_after)

        labels, annotations = secret_metadata(identity_name, pod, spec.secret_labels, spec.secret_annotations)
        if decision is None and reading is not None and reading.state is not None and secret is not None:
            resource_version = str(secret["metadata"].get("resourceVersion"))
            patch = metadata_patch(secret, labels, annotations) or {}
            if not desired.bundle_current:
                patch.setdefault("data", {})[c.CA_CRT] = b64text(bundle_pem)
            stores = keystore_patch(secret, self._keystores.get((pod.namespace, identity_name)), bundle_pem)
            if stores is not None:
                patch = merge_patches(patch, stores)
            if patch:
                try:
                    written = await self.cluster.update_secret(pod.namespace, secret_name, patch, resource_version)
                    self._remember_write(written)
                except KubernetesAPIError as exc:
                    result.fail(IssuanceError.API, f"pod {pod.name}: updating Secret {secret_name} failed: {exc}",
                                pod.name)
                    keep_held()
                    return
            result.count_valid(wanted_id, reading.state.renew_at, reading.state.not_after)
            return
        if decision is None:  # unreachable: no decision implies a readable existing Secret
            decision = Decision(ReissueReason.REPAIR, "Repairing: Secret unreadable")
        priority = _priority(decision, reading.state if reading else None, now)
        if priority is IssuePriority.BACKGROUND and reading is not None and reading.state is not None:
            if result.background >= self._background_per_pass:
                # Short passes: a pod starting meanwhile waits for one pass, not for a whole rotation.
                result.deferred += 1
                result.count_valid(wanted_id, reading.state.renew_at, reading.state.not_after)
                return
            result.background += 1
        try:
            content = await self._issue(pod, spec, ca, bundle_pem, wanted_id, spec_hash, priority)
        except (PKIError, ChainError) as exc:
            result.fail(IssuanceError.PKI, f"pod {pod.name}: issuing failed: {exc}", pod.name)
            keep_held()
            return
        try:
            body = secret_body(
                name=secret_name,
                identity=identity_name,
                pod=pod,
                content=content,
                template_labels=spec.secret_labels,
                template_annotations=spec.secret_annotations,
                keystore=self._keystores.get((pod.namespace, identity_name)),
            )
        except PKIError as exc:
            result.fail(IssuanceError.PKI, f"pod {pod.name}: writing the keystores failed: {exc}", pod.name)
            keep_held()
            return
        try:
            if secret is None:
                # Create first, look only on a clash: one write per new pod, no extra read.
                try:
                    self._remember_write(await self.cluster.create_secret(pod.namespace, body))
                except ConflictError:
                    taken = await self.cluster.get_secret(pod.namespace, secret_name)
                    problem = ownership_problem(taken, identity_name, pod) if taken is not None else None
                    if taken is not None and problem is not None:
                        self._clashes.add((pod.namespace, secret_name))
                        result.clash(_clash_message(pod.namespace, secret_name, pod.name, problem), pod.name)
                        keep_held()
                        return
                    mine = taken is not None and owner_pod_uid(taken) == pod.uid
                    if taken is not None and mine:
                        await self._read_all([taken], bundle_pem)
                    held = self._read(taken).state if taken is not None and mine else None
                    if held is not None:
                        # Issued for this very pod a moment ago (a first issue outside the pass).
                        result.count_valid(held.spiffe_id, held.renew_at, held.not_after)
                        return
                    raise
            else:
                resource_version = str(secret["metadata"].get("resourceVersion"))
                written = await self.cluster.update_secret(pod.namespace, secret_name, reissue_patch(body),
                                                           resource_version)
                self._remember_write(written)
        except ConflictError as exc:
            result.fail(IssuanceError.API,
                        f"pod {pod.name}: Secret {secret_name} changed while writing, retrying ({exc})", pod.name)
            keep_held()
            return
        except KubernetesAPIError as exc:
            result.fail(IssuanceError.API, f"pod {pod.name}: writing Secret {secret_name} failed: {exc}", pod.name)
            keep_held()
            return
        logger.info("%s for pod %s/%s: serial %s, %s, expires %s", decision.message, pod.namespace, pod.name,
                    content.serial, wanted_id, content.not_after.isoformat(),
                    extra=fields(identity=identity_name, namespace=pod.namespace, pod=pod.name,
                                 reason=str(decision.reason)))
        result.issued_by_reason[decision.reason] = result.issued_by_reason.get(decision.reason, 0) + 1
        self.metrics.certificate_issued(decision.reason)
        if result.first_decision is None:
            result.first_decision = f"pod {pod.name}: {decision.message}"
            result.first_reason = decision.reason
        result.count_valid(wanted_id, content.renew_at, content.not_after)

    async def _issue(
        self, pod: PodInfo, spec: IdentitySpec, ca: CertificateAuthority, bundle_pem: bytes, wanted_id: str,
        spec_hash: str,
        priority: IssuePriority | None,
    ) -> SecretContent:
        """Issue a leaf; ``priority`` None when the caller already holds a token of the rate limit."""
        if priority is not None:
            await self.limiter.acquire(priority)
        request = LeafRequest(
            spiffe_id=wanted_id,
            dns_names=spec.dns_names,
            usages=spec.usages,
            key=spec.private_key,
            duration=spec.duration,
        )
        now = self.clock()
        started = time.perf_counter()
        # Key generation (RSA 4096 especially) is CPU work: keep it off the event loop.
        leaf = await run_issuance(issue_leaf, ca, request, now)
        self.metrics.certificate_signed(time.perf_counter() - started)
        renew_at = jittered_renewal_time(
            renewal_time(leaf.not_before, leaf.not_after, spec.renew_before), leaf.not_after, self.jitter()
        )
        # A renewBefore close to the duration (or the backdated notBefore plus jitter) could put the
        # renewal before this very moment and re-issue in a loop: never renew sooner than a margin.
        renew_at = max(renew_at, min(now + MIN_RENEWAL_GAP, leaf.not_after))
        return SecretContent(
            chain_pem=leaf.chain_pem,
            key_pem=leaf.key_pem,
            bundle_pem=bundle_pem,
            spiffe_id=wanted_id,
            serial=leaf.serial_hex,
            not_after=leaf.not_after,
            renew_at=renew_at,
            ca_fingerprint=ca.fingerprint,
            spec_hash=spec_hash,
        )

    # Status, events, trust bundle --------------------------------------------------------------

    async def _report(
        self,
        identity: JSON,
        previous: Mapping[str, Any],
        readiness: Readiness,
        generation: object,
        now: datetime,
        *,
        keep_counts: bool,
    ) -> None:
        """Write a status for an identity we could not reconcile, keeping the last known counts."""
        meta = identity.get("metadata") or {}
        status = identity_status(
            previous=previous,
            readiness=readiness,
            generation=generation if isinstance(generation, int) else None,
            pods=int(previous.get("pods") or 0) if keep_counts else 0,
            issued=int(previous.get("issued") or 0) if keep_counts else 0,
            spiffe_ids=previous.get("spiffeIDs") or [],
            next_renewal=None,
            ca_fingerprint=previous.get("caFingerprint"),
            now=now,
        )
        if previous.get("nextRenewalTime"):
            status["nextRenewalTime"] = previous["nextRenewalTime"]
        if status_changed(previous, status):
            await self.cluster.patch_identity_status(str(meta.get("namespace")), str(meta.get("name")), status)

    async def _warn(self, key: IdentityKey, identity: JSON, reason: str, message: str, now: datetime) -> None:
        if self._last_warning.get(key) == message:
            return
        self._last_warning[key] = message
        logger.warning("identity %s/%s: %s: %s", key[0], key[1], reason, message,
                       extra=fields(identity=key[1], namespace=key[0], reason=reason))
        await self._event(identity, "Warning", reason, message, now)

    async def _event(self, identity: JSON, type_: str, reason: str, message: str, now: datetime) -> None:
        try:
            await self.cluster.post_identity_event(identity, type_=type_, reason=reason, message=message, now=now)
        except KubernetesAPIError as exc:
            # Events are best effort: losing one must never stop a reconcile.
            logger.warning("could not post event %s: %s", reason, exc)

    async def _ensure_trust_bundle(self, namespace: str, bundle_pem: bytes) -> str | None:
        """The ConfigMap ``mtls-trust-bundle`` in every namespace with an identity: created, or repaired
        when it differs from the bundle (whoever edited it). One the operator did not create is never
        written, nor read: the returned problem says so."""
        data = {c.CA_CRT: bundle_pem.decode("ascii")}
        existing = await self.cluster.get_config_map(namespace, c.TRUST_BUNDLE_CONFIGMAP)
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": c.TRUST_BUNDLE_CONFIGMAP,
                    "namespace": namespace,
                    "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME},
                },
                "data": data,
            }
            try:
                await self.cluster.create_config_map(namespace, body)
            except ConflictError:
                return None  # created concurrently; the next reconcile compares contents
        elif not is_managed(existing):
            return (f"ConfigMap {namespace}/{c.TRUST_BUNDLE_CONFIGMAP} exists and was not created by the operator: "
                    "the trust bundle is not published there (delete or rename it); pods can use ca.crt of their "
                    "own Secret")
        elif (existing.get("data") or {}) != data:
            version = str((existing.get("metadata") or {}).get("resourceVersion"))
            await self.cluster.update_config_map(namespace, c.TRUST_BUNDLE_CONFIGMAP, {"data": data}, version)
        return None


@dataclass
class _PodsResult:
    pods: int = 0
    valid: int = 0
    served: set[str] = field(default_factory=set)
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
    last_issuance: dict[str, Any] | None = None
    # Background re-issues started this pass, and those left for the next one.
    background: int = 0
    deferred: int = 0

    def count_valid(self, spiffe: str, renew_at: datetime, not_after: datetime) -> None:
        self.valid += 1
        self.spiffe_ids.add(spiffe)
        if self.next_renewal is None or renew_at < self.next_renewal:
            self.next_renewal = renew_at
        if self.earliest_not_after is None or not_after < self.earliest_not_after:
            self.earliest_not_after = not_after

    def count_held(self, spiffe: str, renew_at: datetime, not_after: datetime) -> None:
        """A certificate still valid though its renewal failed: it keeps expiry and renewal times visible."""
        self.spiffe_ids.add(spiffe)
        if self.next_renewal is None or renew_at < self.next_renewal:
            self.next_renewal = renew_at
        if self.earliest_not_after is None or not_after < self.earliest_not_after:
            self.earliest_not_after = not_after

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


def _reading_key(secret: JSON) -> tuple[str, str]:
    meta = secret.get("metadata") or {}
    return str(meta.get("uid")), str(meta.get("resourceVersion"))


def _chain_key(secret: JSON, bundle_pem: bytes) -> tuple[str, str, bytes]:
    return (*_reading_key(secret), bundle_pem)


def _chain_problem(secret: JSON, reading: SecretReading, anchors: list[Any], now: datetime) -> str | None:
    """Why the Secret's certificate does not chain to ``anchors``, or None (pure: runs in worker threads)."""
    chain_pem = secret_data(secret, c.TLS_CRT, max_bytes=CHAIN_LIMITS.max_bytes)
    if reading.state is None or not chain_pem:
        return None
    try:
        certs = parse_pem_certificates(chain_pem, CHAIN_LIMITS)
        leaf = certs[0]
        # Within the leaf's own validity: expiry is a renewal, not a broken chain.
        latest = leaf.not_valid_after_utc - timedelta(seconds=1)
        moment = max(leaf.not_valid_before_utc, min(now, latest))
        verify_leaf(leaf, certs[1:], anchors, moment)
    except (PKIError, ChainError) as exc:
        return f"tls.crt does not chain to the trust bundle: {exc}"
    return None


def _rightful_claimant(claimants: list[PodInfo], secret: JSON | None) -> PodInfo:
    """Of pods claiming one Secret name, the one that owns the Secret keeps it; else the first by name."""
    owner = owner_pod_uid(secret) if secret is not None else None
    return next((pod for pod in claimants if pod.uid == owner), min(claimants, key=lambda pod: pod.name))


def _priority(decision: Decision, state: IssuedState | None, now: datetime) -> IssuePriority:
    """New pods and repairs first; then renewals at or past their time; then everything else."""
    if decision.reason in (ReissueReason.NEW, ReissueReason.REPAIR):
        return IssuePriority.STARTING
    if decision.reason is ReissueReason.RENEWAL and state is not None and now >= state.renew_at:
        return IssuePriority.OVERDUE
    return IssuePriority.BACKGROUND


def _batched_renewal(state: IssuedState, now: datetime) -> Decision | None:
    """Renew now what falls due within the horizon anyway: one pass instead of a wake-up per pod.

    Never for a certificate younger than the minimum renewal gap (its notBefore is backdated by a
    minute of clock skew): its renewal time may have been held at that gap, and batching it early
    would re-issue it on every pass.
    """
    # Batching must not undo the jitter: for short certificates (1h: a 2-minute jitter window) the
    # horizon shrinks to half the jitter window.
    horizon = min(RENEWAL_HORIZON, (state.not_after - state.renew_at) * JITTER_FRACTION / 2)
    if state.renew_at > now + horizon:
        return None
    if state.not_before is not None and now < state.not_before + MIN_RENEWAL_GAP + CLOCK_SKEW:
        return None
    left = format_duration(max(state.not_after - now, timedelta(0)))
    return Decision(ReissueReason.RENEWAL, f"Renewing: certificate expires in {left} (due within the batch window)")


def _clash_message(namespace: str, secret_name: str, pod_name: str, problem: str) -> str:
    return (
        f"pod {pod_name}: {problem.replace('Secret ' + secret_name, 'Secret ' + namespace + '/' + secret_name, 1)}; "
        f"it was left untouched (delete or rename it, or set the pod annotation {c.SECRET_NAME_ANNOTATION})"
    )


def _pod_selector(spec: IdentitySpec) -> str:
    return pod_query(spec.selector)


def _could_select(ref: IdentityRef, pod: PodInfo) -> bool:
    if ref.selector is None or not pod.opted_in:
        return False
    return ref.selector.matches(pod.labels)

