"""Certificates for pods: a key and a signed leaf per issue, within the one issuance rate limit."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from mtls_operator.controller.signing import run_issuance
from mtls_operator.controller.workqueue import IssuePriority, RateLimiter
from mtls_operator.observability.metrics import Metrics
from mtls_operator.pki import CertificateAuthority, LeafRequest, issue_leaf
from mtls_operator.rules.plan import PodInfo, SecretContent
from mtls_operator.rules.policy import spiffe_id
from mtls_operator.rules.renewal import MIN_RENEWAL_GAP, jittered_renewal_time, renewal_time
from mtls_operator.rules.spec import IdentitySpec
from mtls_operator.times import Clock

# How many pods of one identity are served at once.
ISSUE_CONCURRENCY = 8


class Issuer:
    def __init__(
        self,
        *,
        trust_domain: str,
        clock: Clock,
        limiter: RateLimiter,
        metrics: Metrics,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.trust_domain = trust_domain
        self.clock = clock
        self.limiter = limiter
        self.metrics = metrics
        self.jitter = jitter
        # Background re-issues (CA rotation, spec change) per pass: about two seconds of the rate limit.
        self.background_per_pass = max(ISSUE_CONCURRENCY, int(limiter.rate * 2))

    def spiffe_id(self, pod: PodInfo) -> str:
        """The pod's identity: from its namespace and service account, never from user input."""
        return spiffe_id(self.trust_domain, pod.namespace, pod.service_account)

    def try_token(self) -> bool:
        """A token of the rate limit, only if one is free right now and nobody waits."""
        return self.limiter.try_acquire()

    async def issue(
        self,
        pod: PodInfo,
        spec: IdentitySpec,
        ca: CertificateAuthority,
        bundle_pem: bytes,
        spec_hash: str,
        priority: IssuePriority | None,
    ) -> SecretContent:
        """A new key and leaf for ``pod``; ``priority`` None when the caller already holds a token."""
        if priority is not None:
            await self.limiter.acquire(priority)
        wanted_id = self.spiffe_id(pod)
        request = LeafRequest(spiffe_id=wanted_id, dns_names=spec.dns_names, usages=spec.usages,
                              key=spec.private_key, duration=spec.duration)
        now = self.clock()
        started = time.perf_counter()
        # Key generation (RSA 4096 especially) is CPU work: off the event loop unless it is quick (signing.py).
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
