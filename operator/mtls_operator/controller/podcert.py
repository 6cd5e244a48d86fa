"""The PodCertificateRequest signer: the leader answers every request addressed to its signer name.

Runs only with ``MTLS_POD_CERTIFICATES=true``, only on the leader (it is part of the leader's work and
cancelled with it). At start it asks discovery which of certificates.k8s.io v1 or v1beta1 serves
podcertificaterequests and uses the newest; when neither does it logs one warning and stays off.

A watch (one thread, ``spec.signerName`` field selector) hands each request to a few workers. Each
request costs one token of the issuance rate limit, the one Secret issuance uses, before any lookup:
a flood of requests, forged or not, is paced like any burst of issuance. A worker reads what the
request is judged against (the pod, its service account and node, the namespace's identities),
lets ``rules/podcert.py`` decide off the event loop, signs with the CA that signs Secrets now, checks
the chain and the status as the API server will, and writes the answer through the ``status``
subresource. A request already issued, denied or failed is never looked at again (its status is
immutable); after a restart the listing brings back only those still waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.index import IdentityIndex
from mtls_operator.controller.workqueue import IssuePriority, RateLimiter
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError, NotFoundError, PKIError, SpecError
from mtls_operator.k8s import JSON, Cluster, group_path
from mtls_operator.k8s.views import IdentityView
from mtls_operator.k8s.watch import ResourceWatch
from mtls_operator.observability.logs import fields
from mtls_operator.observability.metrics import IssuanceError, Metrics
from mtls_operator.pki import sign_public_key
from mtls_operator.rules import podcert as rules
from mtls_operator.rules.plan import IdentityRef, identity_ref
from mtls_operator.rules.spec import IdentitySpec, PolicyRefusal
from mtls_operator.times import Clock, format_time

logger = logging.getLogger(__name__)

RequestKey = tuple[str, str]  # (namespace, name)

# Requests waiting for a worker whose bodies are kept (the API caps a body at about 40 KiB).
MAX_PENDING_BODIES: Final = 1000
# Requests judged at once; each waits for its token of the rate limit first.
WORKERS: Final = 4
# A write that failed for a reason a retry may fix is tried again after this long (doubling, capped).
RETRY_DELAY: Final = 2.0
MAX_RETRY_DELAY: Final = 60.0
# Attempts per request before it waits for the next resync (a worker is never held for long).
MAX_ATTEMPTS: Final = 5
# How often every request still waiting is listed again (see _resync_periodically).
RESYNC_INTERVAL: Final = 300.0
# The version that still has v1beta1's pkixPublicKey and proofOfPossession.
LEGACY_VERSION: Final = "v1beta1"
# Discovery failures (the API server restarting) are retried this often.
DISCOVERY_RETRY: Final = 10.0


class PodCertificateSigner:
    def __init__(
        self,
        cluster: Cluster,
        settings: Settings,
        ca_store: CAStore,
        index: IdentityIndex,
        *,
        limiter: RateLimiter,
        metrics: Metrics,
        clock: Clock,
        jitter: Callable[[], float] = random.random,
        watch_timeout: int = 60,
        retry_delay: float = RETRY_DELAY,
        resync_interval: float = RESYNC_INTERVAL,
    ) -> None:
        self.cluster = cluster
        self.settings = settings
        self.signer_name = settings.pod_certificate_signer
        self.ca_store = ca_store
        self.index = index
        self.limiter = limiter
        self.metrics = metrics
        self.clock = clock
        self.jitter = jitter
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.resync_interval = resync_interval
        # The API versions served, and the newest, in use, once discovery found one.
        self.served: list[str] = []
        self.version: str | None = None
        # Requests waiting for a worker, with the latest body seen; a key is queued at most once.
        self._pending: dict[RequestKey, JSON | None] = {}
        self._queue: asyncio.Queue[RequestKey] = asyncio.Queue()
        # Requests a worker is answering now, and the listings under way after the watch (re)started.
        self._active: set[RequestKey] = set()
        self._listings: set[asyncio.Task[None]] = set()

    # Discovery and the watch ----------------------------------------------------------------------

    async def discover(self) -> list[str]:
        """The certificates.k8s.io versions serving podcertificaterequests, newest first."""
        while True:
            try:
                return [version for version in rules.VERSIONS
                        if await self.cluster.serves_resource(rules.GROUP, version, rules.RESOURCE)]
            except KubernetesAPIError as exc:
                logger.warning("discovery of %s failed, retrying in %.0fs: %s", rules.GROUP, DISCOVERY_RETRY, exc)
                await asyncio.sleep(DISCOVERY_RETRY)

    async def run(self) -> None:
        """Serve requests until cancelled (leadership lost, or the operator stops)."""
        self.served = await self.discover()
        self.version = self.served[0] if self.served else None
        if self.version is None:
            logger.warning(
                "MTLS_POD_CERTIFICATES is true, but the API server serves no podcertificaterequests in %s %s: "
                "the PodCertificateRequest signer stays off (Kubernetes 1.37, or 1.35/1.36 with the "
                "PodCertificateRequest feature gate and --runtime-config=%s/v1beta1=true, is needed)",
                rules.GROUP, "/".join(rules.VERSIONS), rules.GROUP)
            return
        logger.info("signing PodCertificateRequests for %s (%s/%s)", self.signer_name, rules.GROUP, self.version)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._watch(self.version).run(), name="pod certificate watch")
                for number in range(WORKERS):
                    group.create_task(self._work(), name=f"pod certificate signer {number}")
                group.create_task(self._resync_periodically(), name="pod certificate resync")
        finally:
            for task in list(self._listings):
                task.cancel()

    def _watch(self, version: str) -> ResourceWatch:
        """The requests addressed to this signer (a field selector), whole bodies, on the operator's session."""
        return ResourceWatch(
            self.cluster.api, group_path(rules.GROUP, version, rules.RESOURCE), "", self._seen,
            types=("ADDED", "MODIFIED"), timeout_seconds=self.watch_timeout,
            field_selector=f"spec.signerName={self.signer_name}",
        )

    def _seen(self, kind: str, body: Mapping[str, Any] | None) -> None:
        if body is None:  # the watch (re)started: what it missed comes from a listing
            task = asyncio.get_running_loop().create_task(self._resync())
            self._listings.add(task)
            task.add_done_callback(self._listings.discard)
            return
        self.offer(body)

    async def _resync_periodically(self) -> None:
        """A request whose answer could not be written (the API refused a read or a write for a reason a
        retry does not fix at once) is not lost: every so often, every request still waiting is offered."""
        while True:
            await asyncio.sleep(self.resync_interval)
            await self._resync()

    async def _resync(self) -> None:
        assert self.version is not None
        try:
            listing = await self.cluster.list_pod_certificate_requests(self.version, self.signer_name)
        except KubernetesAPIError as exc:
            logger.warning("listing PodCertificateRequests failed (the watch will bring them): %s", exc)
            return
        for item in listing.get("items") or []:
            if isinstance(item, dict):
                self.offer(item)

    def offer(self, body: Mapping[str, Any]) -> bool:
        """Queue a request if it is ours and still waiting for an answer; whether it was queued."""
        request = rules.parse_request(body)
        if request.signer_name != self.signer_name or request.terminal or not request.namespace or not request.name:
            return False
        key = (request.namespace, request.name)
        if key in self._active:
            return False  # being answered now: that answer is final
        fresh = key not in self._pending
        # Past a cap only the name is kept (a worker reads the request again): a flood of requests
        # costs memory by their number, never by their size.
        self._pending[key] = dict(body) if len(self._pending) < MAX_PENDING_BODIES else None
        if fresh:
            self._queue.put_nowait(key)
        return True

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            if key not in self._pending:
                continue
            body = self._pending.pop(key)
            self._active.add(key)
            try:
                if body is None:
                    assert self.version is not None
                    body = await self.cluster.get_pod_certificate_request(self.version, *key)
                if body is not None:
                    await self.answer(body)
            except KubernetesAPIError as exc:
                logger.warning("PodCertificateRequest %s/%s: %s (tried again at the next resync)", *key, exc)
            except Exception:  # one request's trouble never stops the signer
                logger.exception("PodCertificateRequest %s/%s: unexpected error", *key)
            finally:
                self._active.discard(key)

    # One request -------------------------------------------------------------------------------------

    async def answer(self, body: Mapping[str, Any]) -> str | None:
        """Judge, sign and write one request; the condition written (None: nothing written)."""
        await self.limiter.acquire(IssuePriority.STARTING)
        delay = self.retry_delay
        for _ in range(MAX_ATTEMPTS):
            try:
                return await self._answer(body)
            except ConflictError:
                # Changed since it was read: read it again; an answer there is final.
                fresh = await self._reread(body)
                if fresh is None:
                    return None
                body = fresh
            except KubernetesAPIError as exc:
                if not exc.retryable:
                    logger.warning("PodCertificateRequest %s: %s", _where(body), exc)
                    return None
                self.metrics.issuance_error(IssuanceError.API)
                logger.warning("PodCertificateRequest %s: %s; retrying in %.0fs", _where(body), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
        logger.warning("PodCertificateRequest %s: no answer written after %d attempts; tried again at the next "
                       "resync", _where(body), MAX_ATTEMPTS)
        return None

    async def _reread(self, body: Mapping[str, Any]) -> JSON | None:
        assert self.version is not None
        request = rules.parse_request(body)
        fresh = await self.cluster.get_pod_certificate_request(self.version, request.namespace, request.name)
        if fresh is None or rules.parse_request(fresh).terminal:
            return None
        return fresh

    async def _answer(self, body: Mapping[str, Any]) -> str | None:
        request = await self._readable(rules.parse_request(body))
        if request.signer_name != self.signer_name or request.terminal:
            return None
        # A malformed request is denied on its own: no lookup is spent on it.
        facts = None if request.problems else await self._facts(request)
        candidates = await self._candidates(request.namespace) if facts is not None else []
        decision = await asyncio.to_thread(
            rules.decide, request, facts, candidates, trust_domain=self.settings.trust_domain,
            cluster_domain=self.settings.cluster_domain,
        )
        if isinstance(decision, rules.Refusal):
            return await self._refuse(body, request, decision)
        return await self._issue(body, request, decision)

    async def _readable(self, request: rules.PodCertificateRequest) -> rules.PodCertificateRequest:
        """A request as v1beta1 shows it when v1 shows no key: a kubelet older than the API server (1.35)
        proves its key with pkixPublicKey and proofOfPossession, fields v1 does not have."""
        if request.stub_pkcs10 is not None or self.version == LEGACY_VERSION or LEGACY_VERSION not in self.served:
            return request
        legacy = await self.cluster.get_pod_certificate_request(LEGACY_VERSION, request.namespace, request.name)
        return request if legacy is None else rules.parse_request(legacy)

    async def _facts(self, request: rules.PodCertificateRequest) -> rules.PodFacts | None:
        """The pod the request names, with its service account and node (None: the pod does not exist)."""
        pod = await self.cluster.get_pod(request.namespace, request.pod_name)
        if pod is None:
            return None
        account = await self.cluster.get_service_account(request.namespace, request.service_account_name) \
            if request.service_account_name else None
        node = await self.cluster.get_node(request.node_name) if request.node_name else None
        return rules.pod_facts(pod, self.signer_name, service_account=account, node=node)

    async def _candidates(self, namespace: str) -> list[rules.Candidate]:
        """The namespace's identities as the reconciler judges them (an invalid spec selects nothing; a
        policy violation serves what the policy allows)."""
        candidates = []
        for body in await self.cluster.list_identities(namespace):
            view = IdentityView.of(body)
            if view.meta.deleting:
                continue
            spec: IdentitySpec | None
            try:
                try:
                    spec = self.index.parse_spec(view)
                except PolicyRefusal as exc:
                    spec = exc.allowed
            except SpecError:
                spec = None
            candidates.append(rules.Candidate(identity_ref(body, valid=spec is not None), spec))
        return candidates

    async def _issue(self, body: Mapping[str, Any], request: rules.PodCertificateRequest,
                     grant: rules.Grant) -> str | None:
        try:
            await self.ca_store.ensure_fresh()
            ca = self.ca_store.current()
        except CAError as exc:
            self.metrics.issuance_error(IssuanceError.CA_UNAVAILABLE)
            return await self._refuse(body, request, rules.Refusal(
                rules.FAILED, rules.CA_UNAVAILABLE, f"no CA to sign with: {exc}", grant.identity))
        now = self.clock()
        started = time.perf_counter()
        try:
            leaf = await asyncio.to_thread(sign_public_key, ca, grant.leaf, grant.public_key, now)
        except PKIError as exc:
            self.metrics.issuance_error(IssuanceError.PKI)
            return await self._refuse(body, request, rules.Refusal(
                rules.FAILED, rules.SIGNING_FAILED, f"signing failed: {exc}", grant.identity))
        self.metrics.certificate_signed(time.perf_counter() - started)
        refresh = rules.begin_refresh_at(leaf.not_before, leaf.not_after, grant.renew_before, self.jitter())
        message = (f"serial {leaf.serial_hex}, {grant.leaf.spiffe_id}, identity {grant.identity.name}, "
                   f"expires {format_time(leaf.not_after)}")
        status = rules.issued_status(leaf.chain_pem, leaf.not_before, leaf.not_after, refresh, message=message,
                                     now=self.clock())
        problem = rules.issued_status_problem(status, request, grant.public_key, self.clock())
        if problem is not None:
            self.metrics.issuance_error(IssuanceError.PKI)
            return await self._refuse(body, request, rules.Refusal(
                rules.FAILED, rules.SIGNING_FAILED, f"the certificate cannot be delivered: {problem}",
                grant.identity))
        try:
            await self._write(body, status)
        except KubernetesAPIError as exc:
            if exc.status != 422:
                raise
            # The API server judged the status invalid where our own check did not: say so, never loop.
            self.metrics.issuance_error(IssuanceError.PKI)
            return await self._refuse(body, request, rules.Refusal(
                rules.FAILED, rules.SIGNING_FAILED, f"the API server refused the certificate: {exc}",
                grant.identity))
        logger.info("Issued a pod certificate for pod %s/%s (PodCertificateRequest %s): %s", request.namespace,
                    request.pod_name, request.name, message,
                    extra=fields(identity=grant.identity.name, namespace=request.namespace, pod=request.pod_name,
                                 reason=rules.ISSUED))
        self.metrics.pod_certificate_request(request.namespace, grant.identity.name, "issued", rules.ISSUED)
        await self._event(grant.identity, "Normal", rules.ISSUED,
                          f"pod {request.pod_name} (PodCertificateRequest {request.name}): {message}")
        return rules.ISSUED

    async def _refuse(self, body: Mapping[str, Any], request: rules.PodCertificateRequest,
                      refusal: rules.Refusal) -> str:
        await self._write(body, rules.refused_status(refusal, self.clock()))
        identity = refusal.identity.name if refusal.identity is not None else ""
        logger.warning("PodCertificateRequest %s for pod %s: %s, %s: %s", request.where, request.pod_name,
                       refusal.condition, refusal.reason, refusal.message,
                       extra=fields(identity=identity or None, namespace=request.namespace,
                                    pod=request.pod_name or None, reason=refusal.reason))
        self.metrics.pod_certificate_request(request.namespace, identity, refusal.condition.lower(), refusal.reason)
        if refusal.identity is not None:
            await self._event(refusal.identity, "Warning", refusal.reason,
                              f"{refusal.condition} PodCertificateRequest {request.name} of pod {request.pod_name}: "
                              f"{refusal.message}")
        return refusal.condition

    async def _write(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        assert self.version is not None
        try:
            await self.cluster.update_pod_certificate_request_status(self.version, body, status)
        except NotFoundError:
            logger.info("PodCertificateRequest %s is gone before its answer was written", _where(body))

    async def _event(self, identity: IdentityRef, type_: str, reason: str, message: str) -> None:
        involved = {"metadata": {"namespace": identity.namespace, "name": identity.name, "uid": identity.uid}}
        try:
            await self.cluster.post_identity_event(involved, type_=type_, reason=reason, message=message,
                                                   now=self.clock())
        except KubernetesAPIError as exc:
            logger.warning("could not post event %s: %s", reason, exc)  # Events are best effort


def _where(body: Mapping[str, Any]) -> str:
    return rules.parse_request(body).where
