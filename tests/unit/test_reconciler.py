"""The reconciler's orchestration against a fake cluster: read -> assign -> decide -> write -> report."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from mtls_operator import constants as c
from mtls_operator.controller.retry import BackOff
from mtls_operator.errors import KubernetesAPIError
from mtls_operator.rules.delivery import PodCertificateSource, projected_volume
from mtls_operator.rules.plan import pod_info
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, WEB, Clock, reconciler


async def test_a_pass_issues_once_reports_and_a_second_pass_writes_nothing() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", WEB)
    cluster.add_pod(NS, "web-0", {"app": "web"})
    cluster.add_pod(NS, "web-1", {"app": "web"})
    cluster.add_pod(NS, "other", {"app": "other"})
    rec = await reconciler(cluster, clock)
    wait = await rec.reconcile((NS, "web"))
    assert sorted(name for verb, kind, _, name in cluster.writes if kind == "Secret") == ["web-web-0", "web-web-1"]
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"]) == (2, 2)
    assert status["conditions"][0]["reason"] == "Issued"
    assert [e["reason"] for e in cluster.events] == ["Issued"]
    # The first pod done names the batch (pods are served concurrently).
    assert re.fullmatch(r"issued 2 certificate\(s\) \(new: 2\); pod web-[01]: Issuing: no certificate yet",
                        cluster.events[0]["message"])
    assert rec.index.served[(NS, "web")] == {"web-0", "web-1"}
    assert isinstance(wait, float)
    assert wait == 3600.0  # the renewal is 16h away: the longest sleep
    writes = len(cluster.writes)
    await rec.reconcile((NS, "web"))
    assert len(cluster.writes) == writes


async def test_a_foreign_secret_under_the_name_is_never_written_and_backs_off() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", WEB)
    cluster.add_pod(NS, "web-0", {"app": "web"})
    cluster.put_secret(NS, {"metadata": {"name": "web-web-0", "labels": {"team": "x"}}, "data": {"a": "Yg=="}})
    rec = await reconciler(cluster, clock)
    assert await rec.reconcile((NS, "web")) == BackOff(rec.retry_delay)
    assert cluster.secrets[(NS, "web-web-0")]["data"] == {"a": "Yg=="}
    status = cluster.identities[(NS, "web")]["status"]
    assert status["conditions"][0]["reason"] == "SecretConflict"
    assert rec.gate.clashed((NS, "web-web-0"))


async def test_a_deleted_secret_is_repaired_and_a_gone_pod_loses_its_secret() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", WEB)
    cluster.add_pod(NS, "web-0", {"app": "web"})
    cluster.add_pod(NS, "web-1", {"app": "web"})
    rec = await reconciler(cluster, clock)
    await rec.reconcile((NS, "web"))
    del cluster.secrets[(NS, "web-web-0")]
    rec.gate.vanished((NS, "web-web-0"))
    del cluster.pods[(NS, "web-1")]
    clock.advance(timedelta(minutes=1))
    await rec.reconcile((NS, "web"))
    assert (NS, "web-web-0") in cluster.secrets
    assert (NS, "web-web-1") not in cluster.secrets
    last = cluster.identities[(NS, "web")]["status"]["lastIssuance"]
    assert (last["reason"], last["message"]) == ("repair", "pod web-0: Repairing: the Secret was deleted")


async def test_a_bad_spec_touches_no_secret_and_reports_once() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", WEB)
    cluster.add_pod(NS, "web-0", {"app": "web"})
    rec = await reconciler(cluster, clock)
    await rec.reconcile((NS, "web"))
    cluster.identities[(NS, "web")]["spec"] = {"selector": {"matchLabels": {"app": "web"}}, "duration": "1s"}
    cluster.identities[(NS, "web")]["metadata"]["generation"] = 2
    writes = len(cluster.writes)
    assert await rec.reconcile((NS, "web")) is None
    assert await rec.reconcile((NS, "web")) is None
    assert len(cluster.writes) == writes
    assert [e["reason"] for e in cluster.events] == ["Issued", "InvalidSpec"]
    assert cluster.identities[(NS, "web")]["status"]["issued"] == 1  # the last known counts stay


async def test_a_first_issue_is_claimed_by_the_next_pass_and_reported_with_it() -> None:
    cluster, clock = FakeCluster(), Clock()
    identity = cluster.add_identity(NS, "web", WEB)
    rec = await reconciler(cluster, clock)
    await rec.reconcile((NS, "web"))  # learns the spec
    pod = pod_info(cluster.add_pod(NS, "web-0", {"app": "web"}))
    version = (identity["metadata"]["uid"], 1)
    assert await rec.issue_first((NS, "web"), version, pod)
    assert not await rec.issue_first((NS, "web"), ("another-uid", 1), pod)
    writes = len(cluster.writes)
    await rec.reconcile((NS, "web"))
    assert [w for w in cluster.writes[writes:] if w[1] == "Secret"] == []
    assert cluster.identities[(NS, "web")]["status"]["lastIssuance"]["message"] == \
        "pod web-0: Issuing: no certificate yet"


async def test_an_api_failure_reaches_the_queue_and_is_counted() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", WEB)
    rec = await reconciler(cluster, clock)
    cluster.fail("get_identity")
    with pytest.raises(KubernetesAPIError, match="503"):
        await rec.reconcile((NS, "web"))
    assert rec.metrics.registry.get_sample_value("mtls_issuance_errors_total", {"reason": "api"}) == 1.0


async def test_cleanup_deletes_only_pod_secrets_of_the_identity() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", WEB)
    cluster.add_pod(NS, "web-0", {"app": "web"})
    rec = await reconciler(cluster, clock)
    await rec.reconcile((NS, "web"))
    labels = {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "web"}
    cluster.put_secret(NS, {"metadata": {"name": "look-alike", "labels": labels}})
    del cluster.identities[(NS, "web")]
    await rec.reconcile((NS, "web"))
    assert sorted(name for (_, name) in cluster.secrets if name != c.DEFAULT_CA_SECRET) == ["look-alike"]
    assert (NS, "web") not in rec.index.served


def _with_pod_certificate_volume(cluster: FakeCluster, name: str, signer: str = "mtls.dev/spiffe", *,
                                 account: str = "default") -> None:
    body = cluster.add_pod(NS, name, {"app": "web"}, account=account)
    source = PodCertificateSource("ECDSAP256", 86400)
    body["spec"]["volumes"] = [projected_volume(signer, source)]


async def test_a_pod_whose_volume_asks_our_signer_gets_no_secret_and_is_counted_apart() -> None:
    cluster, clock = FakeCluster(), Clock()
    identity = cluster.add_identity(NS, "web", WEB)
    cluster.add_pod(NS, "web-0", {"app": "web"})
    _with_pod_certificate_volume(cluster, "web-1")
    _with_pod_certificate_volume(cluster, "web-2", signer="example.com/other")  # not ours: a Secret as ever
    rec = await reconciler(cluster, clock)
    await rec.reconcile((NS, "web"))
    assert sorted(name for _, kind, _, name in cluster.writes if kind == "Secret") == ["web-web-0", "web-web-2"]
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"], status["podCertificatePods"]) == (3, 2, 1)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Issued")
    assert ready["message"] == ("2/2 pods have valid certificates; 1 pod(s) get theirs from the kubelet "
                                "(delivery PodCertificate)")
    assert rec.index.served[(NS, "web")] == {"web-0", "web-1", "web-2"}
    # Nor does a first issue write one.
    pod = pod_info(cluster.pods[(NS, "web-1")])
    assert not await rec.issue_first((NS, "web"), (identity["metadata"]["uid"], 1), pod)
    assert (NS, "web-web-1") not in cluster.secrets


async def test_only_pod_certificate_pods_make_the_identity_ready_without_secrets() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", {**WEB, "delivery": "PodCertificate"})
    _with_pod_certificate_volume(cluster, "web-0")
    _with_pod_certificate_volume(cluster, "web-1", account="api")
    rec = await reconciler(cluster, clock, pod_certificates=True)
    await rec.reconcile((NS, "web"))
    assert [w for w in cluster.writes if w[1] == "Secret"] == []
    status = cluster.identities[(NS, "web")]["status"]
    assert (status["pods"], status["issued"], status["podCertificatePods"]) == (2, 0, 2)
    # The IDs the signer gives these pods, from their accounts, as for pods served by Secret.
    assert status["spiffeIDs"] == [f"spiffe://cluster.local/ns/{NS}/sa/api", f"spiffe://cluster.local/ns/{NS}/sa/default"]
    assert (status["conditions"][0]["status"], status["conditions"][0]["reason"]) == ("True", "PodCertificates")


async def test_pod_certificates_off_an_identity_asking_for_them_gets_no_secret_and_says_why() -> None:
    cluster, clock = FakeCluster(), Clock()
    cluster.add_identity(NS, "web", {**WEB, "delivery": "PodCertificate"})
    cluster.add_pod(NS, "web-0", {"app": "web"})
    rec = await reconciler(cluster, clock)
    assert await rec.reconcile((NS, "web")) is None
    assert [w for w in cluster.writes if w[1] == "Secret"] == []
    ready = cluster.identities[(NS, "web")]["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "PodCertificatesDisabled")
    assert "podCertificates.enabled=true" in ready["message"]
    assert [(e["type"], e["reason"]) for e in cluster.events] == [("Warning", "PodCertificatesDisabled")]
