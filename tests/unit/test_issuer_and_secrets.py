"""issuer.py, secret_cache.py and writer.py: a certificate issued, its Secret read back once per
version and chain-checked, and the writes the Secret watch must recognise as the operator's own."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from mtls_operator import constants as c
from mtls_operator.controller.issuer import Issuer
from mtls_operator.controller.secret_cache import SecretCache
from mtls_operator.controller.workqueue import IssuePriority, RateLimiter
from mtls_operator.controller.writer import SecretWriter
from mtls_operator.errors import ConflictError
from mtls_operator.k8s.views import SecretView
from mtls_operator.observability.metrics import Metrics
from mtls_operator.pki import CertificateAuthority, certs_to_pem, create_self_signed_ca
from mtls_operator.rules.plan import SecretContent, pod_info, secret_body
from mtls_operator.rules.spec import parse_identity_spec
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, WEB, Clock

NOW = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)
CA = create_self_signed_ca(NOW - timedelta(days=1))
BUNDLE = certs_to_pem(CA.trust)
SPEC = parse_identity_spec({**WEB, "duration": "1h"}, namespace=NS, cluster_domain="cluster.local")
POD = pod_info(FakeCluster().add_pod(NS, "web-0", {"app": "web"}, account="web"))


def issuer(clock: Clock, rate: float = 1000.0) -> Issuer:
    return Issuer(trust_domain="example.org", clock=clock, limiter=RateLimiter(rate), metrics=Metrics(),
                  jitter=lambda: 0.0)


async def issue(ca: CertificateAuthority = CA) -> tuple[SecretContent, SecretView]:
    clock = Clock()
    content = await issuer(clock).issue(POD, SPEC, ca, BUNDLE, "hash", IssuePriority.STARTING)
    body = secret_body(name="web-web-0", identity="web", pod=POD, content=content, template_labels={},
                       template_annotations={})
    body["metadata"].update(uid="uid-1", resourceVersion="7", namespace=NS)
    return content, SecretView.of(body)


async def test_a_leaf_names_the_pod_and_renews_after_the_gap() -> None:
    content, _ = await issue()
    assert content.spiffe_id == "spiffe://example.org/ns/shop/sa/web"
    assert content.ca_fingerprint == CA.fingerprint
    # 1h certificate: renewal at 40 minutes (a third before the end), never sooner than 5 minutes.
    assert content.not_after - content.renew_at == timedelta(minutes=20)


async def test_a_first_issue_takes_a_token_only_when_one_is_free() -> None:
    rated = issuer(Clock(), rate=1.0)
    assert rated.try_token()
    assert not rated.try_token()
    # Background re-issues per pass: about two seconds of the rate, never fewer than the concurrency.
    assert rated.background_per_pass == 8
    assert issuer(Clock(), rate=100.0).background_per_pass == 200


async def test_a_secret_version_is_parsed_once_and_chain_checked_per_bundle() -> None:
    _, secret = await issue()
    cache = SecretCache(Clock())
    await cache.read_all([secret], BUNDLE)
    reading = cache.read(secret)
    assert reading.state is not None
    assert reading.problems == ()
    assert cache.read(secret) is reading
    assert cache.chain_problem(secret, reading, BUNDLE) is None
    other = certs_to_pem(create_self_signed_ca(NOW).trust)
    problem = cache.chain_problem(secret, reading, other)
    assert problem is not None
    assert problem.startswith("tls.crt does not chain to the trust bundle")


async def test_a_damaged_secret_reads_as_problems_and_is_not_chain_checked() -> None:
    _, secret = await issue()
    data = {**secret.data, c.TLS_KEY: base64.b64encode(b"not a key").decode()}
    damaged = SecretView(meta=secret.meta, data=data)
    cache = SecretCache(Clock())
    await cache.read_all([damaged], BUNDLE)
    reading = cache.read(damaged)
    assert reading.problems


async def test_the_writer_remembers_its_own_writes_only() -> None:
    cluster = FakeCluster()
    writer = SecretWriter(cluster)  # type: ignore[arg-type]
    _, secret = await issue()
    created = await writer.create(NS, {"metadata": {"name": "web-web-0"}, "data": dict(secret.data)})
    assert writer.wrote(NS, "web-web-0", created.meta.resource_version)
    updated = await writer.update(created, {"metadata": {"labels": {"a": "b"}}})
    assert not writer.wrote(NS, "web-web-0", created.meta.resource_version)
    assert writer.wrote(NS, "web-web-0", updated.meta.resource_version)
    with pytest.raises(ConflictError):
        await writer.update(created, {"metadata": {"labels": {"a": "c"}}})  # stale: someone wrote since
    with pytest.raises(ConflictError):
        await writer.delete(created)
    await writer.delete(updated)
    assert cluster.secrets == {}
