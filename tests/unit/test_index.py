"""index.py: which identities a pod concerns, which specs can be served, the spec a first issue uses."""

from __future__ import annotations

from mtls_operator.controller.index import IdentityIndex
from mtls_operator.k8s.views import IdentityView
from mtls_operator.rules.delivery import PodCertificateSource
from mtls_operator.rules.plan import pod_info
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, SETTINGS, WEB


def test_an_invalid_spec_selects_nothing_and_a_policy_violation_still_selects() -> None:
    cluster = FakeCluster()
    good = cluster.add_identity(NS, "web", WEB)
    bad = cluster.add_identity(NS, "old", {"selector": {"matchLabels": {"app": "web"}}, "duration": "1s"})
    foreign = cluster.add_identity(NS, "wide", {**WEB, "dnsNames": ["example.com"]})
    index = IdentityIndex(SETTINGS)
    assert index.identity_ref(good).selector is not None
    assert index.identity_ref(bad).selector is None
    assert index.identity_ref(foreign).selector is not None


def test_validity_is_remembered_per_generation() -> None:
    cluster = FakeCluster()
    body = cluster.add_identity(NS, "web", WEB)
    index = IdentityIndex(SETTINGS)
    assert index.spec_valid(IdentityView.of(body))
    body["spec"] = {"selector": {"matchLabels": {"app": "web"}}, "duration": "1s"}
    assert index.spec_valid(IdentityView.of(body)), "same generation: the answer is remembered"
    body["metadata"]["generation"] = 2
    assert not index.spec_valid(IdentityView.of(body))


def test_a_pod_event_goes_to_identities_selecting_it_and_to_those_that_served_it() -> None:
    cluster = FakeCluster()
    web = cluster.add_identity(NS, "web", WEB)
    index = IdentityIndex(SETTINGS)
    refs = {(NS, "web"): index.identity_ref(web)}
    pod = pod_info(cluster.add_pod(NS, "web-0", {"app": "web"}))
    moved = pod_info(cluster.add_pod(NS, "api-0", {"app": "api"}))
    elsewhere = pod_info(cluster.add_pod("other", "web-0", {"app": "web"}))
    assert index.identities_for_pod(pod, refs) == {(NS, "web")}
    assert index.identities_for_pod(moved, refs) == set()
    index.served[(NS, "web")] = {"api-0"}
    assert index.identities_for_pod(moved, refs) == {(NS, "web")}
    assert index.identities_for_pod(elsewhere, refs) == set()


def test_a_first_issue_uses_the_spec_of_the_version_it_was_read_at() -> None:
    cluster = FakeCluster()
    view = IdentityView.of(cluster.add_identity(NS, "web", WEB))
    index = IdentityIndex(SETTINGS)
    spec = index.parse_spec(view)
    index.remember_spec((NS, "web"), view, spec)
    assert index.spec_for((NS, "web"), (view.meta.uid, 1)) is spec
    assert index.spec_for((NS, "web"), (view.meta.uid, 2)) is None
    index.remember_spec((NS, "web"), view, None)
    assert index.spec_for((NS, "web"), (view.meta.uid, 1)) is None
    index.remember_spec((NS, "web"), view, spec)
    index.forget((NS, "web"))
    assert index.spec_for((NS, "web"), (view.meta.uid, 1)) is None


def test_a_pod_certificate_identity_carries_what_the_kubelet_is_asked_for() -> None:
    cluster = FakeCluster()
    index = IdentityIndex(SETTINGS)
    pcr = cluster.add_identity(NS, "pcr", {**WEB, "delivery": "PodCertificate", "privateKey": {"algorithm": "Ed25519"},
                                           "duration": "2h"})
    assert index.identity_ref(pcr).pod_certificate == PodCertificateSource("ED25519", 7200)
    assert index.identity_ref(cluster.add_identity(NS, "web", WEB)).pod_certificate is None
    # A policy violation is served as the policy allows it, so is its pod certificate.
    wide = cluster.add_identity(NS, "wide", {**WEB, "delivery": "PodCertificate", "dnsNames": ["example.com"]})
    assert index.identity_ref(wide).pod_certificate == PodCertificateSource("ECDSAP256", 86400)
    bad = cluster.add_identity(NS, "bad", {**WEB, "delivery": "PodCertificate", "privateKey": {"algorithm": "RSA"}})
    assert index.identity_ref(bad).selector is None
    assert index.identity_ref(bad).pod_certificate is None
