"""reporter.py: Events before the status, a standing warning posted once, counts kept when a pass
cannot run, the trust ConfigMap problem reported once per namespace."""

from __future__ import annotations

import pytest

from mtls_operator.controller.reporter import Reporter
from mtls_operator.controller.tally import PassTally
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.k8s.views import IdentityView
from mtls_operator.observability.metrics import IssuanceError, Metrics
from mtls_operator.rules.plan import Readiness
from mtls_operator.rules.renewal import Decision, ReissueReason
from mtls_operator.rules.spec import parse_identity_spec
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, WEB, Clock, ca_store

SPEC = parse_identity_spec(WEB, namespace=NS, cluster_domain="cluster.local")


async def reporter() -> tuple[FakeCluster, Reporter, IdentityView]:
    cluster, clock = FakeCluster(), Clock()
    store = await ca_store(cluster, clock)
    view = IdentityView.of(cluster.add_identity(NS, "web", WEB))
    return cluster, Reporter(cluster, store, Metrics(), clock), view  # type: ignore[arg-type]


async def test_a_standing_warning_is_posted_once() -> None:
    cluster, report, view = await reporter()
    for _ in range(3):
        await report.warn(view, "IssuanceFailed", "pod web-0: broken", report.clock())
    await report.warn(view, "IssuanceFailed", "pod web-0: broken again", report.clock())
    assert [e["message"] for e in cluster.events] == ["pod web-0: broken", "pod web-0: broken again"]


async def test_a_lost_event_never_stops_the_status() -> None:
    cluster, report, view = await reporter()
    cluster.fail("post_identity_event")
    await report.not_reconciled(view, Readiness(False, "InvalidSpec", "spec.duration: too short"), report.clock())
    assert cluster.identities[(NS, "web")]["status"]["conditions"][0]["reason"] == "InvalidSpec"


async def test_not_reconciled_keeps_the_last_counts() -> None:
    cluster, report, view = await reporter()
    cluster.identities[(NS, "web")]["status"] = {"pods": 3, "issued": 2, "nextRenewalTime": "2026-11-27T00:00:00Z"}
    view = IdentityView.of(cluster.identities[(NS, "web")])
    await report.not_reconciled(view, Readiness(False, "CAUnavailable", "no CA to sign with"), report.clock())
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"], status["nextRenewalTime"]) == (3, 2, "2026-11-27T00:00:00Z")
    assert [e["reason"] for e in cluster.events] == ["CAUnavailable"]


async def test_the_event_goes_before_the_status() -> None:
    cluster, report, view = await reporter()
    tally = PassTally(pods=1)
    tally.issued(Decision(ReissueReason.NEW, "Issuing: no certificate yet"), "web-0")
    tally.count_valid("spiffe://cluster.local/ns/shop/sa/default", report.clock(), report.clock())
    cluster.fail("patch_identity_status", KubernetesAPIError("HTTP 500", status=500))
    with pytest.raises(KubernetesAPIError):
        await report.passed(view, SPEC, tally, "sha256:x", report.clock())
    assert [e["message"] for e in cluster.events] == [
        "issued 1 certificate(s) (new: 1); pod web-0: Issuing: no certificate yet"]


async def test_a_pass_writes_counts_metrics_and_warns_on_failures() -> None:
    cluster, report, view = await reporter()
    tally = PassTally(pods=2)
    tally.count_valid("spiffe://cluster.local/ns/shop/sa/default", report.clock(), report.clock())
    tally.fail(IssuanceError.PKI, "pod web-1: issuing failed: boom", "web-1")
    await report.passed(view, SPEC, tally, "sha256:x", report.clock())
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"]) == (2, 1)
    assert status["conditions"][0]["reason"] == "IssuanceFailed"
    assert [c["type"] for c in status["conditions"]] == ["Ready", "CertificateAuthority"]
    assert [e["reason"] for e in cluster.events] == ["IssuanceFailed"]
    assert report.metrics.registry.get_sample_value("mtls_issuance_errors_total", {"reason": "pki"}) == 1.0
    writes = len(cluster.status_writes)
    await report.passed(IdentityView.of(cluster.identities[(NS, "web")]), SPEC, tally, "sha256:x", report.clock())
    assert len(cluster.status_writes) == writes, "an unchanged status is not written again"


async def test_a_trust_configmap_problem_is_reported_once_per_namespace() -> None:
    cluster, report, view = await reporter()
    for _ in range(2):
        await report.bundle_problem(view, "ConfigMap shop/mtls-trust-bundle exists", report.clock())
    await report.bundle_problem(view, None, report.clock())
    await report.bundle_problem(view, "ConfigMap shop/mtls-trust-bundle exists", report.clock())
    assert [e["reason"] for e in cluster.events] == ["TrustBundleNotPublished"] * 2


async def test_the_ca_condition_says_who_signs() -> None:
    _, report, _ = await reporter()
    condition = report.ca_condition()
    assert (condition.status, condition.reason) == (True, "Valid")
    assert condition.message.startswith(f"{report.ca_store.current().fingerprint} signs, expires ")
