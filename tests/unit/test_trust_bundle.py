"""trust_bundle.py: the trust ConfigMap created, repaired, or left alone when it is not ours; the
ca.crt of an identity's own Secrets kept on the bundle while its spec is bad."""

from __future__ import annotations

import base64

from mtls_operator import constants as c
from mtls_operator.controller.trust_bundle import TrustBundlePublisher
from mtls_operator.controller.writer import SecretWriter
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import NS, Clock, ca_store

CM = (NS, c.TRUST_BUNDLE_CONFIGMAP)


async def publisher() -> tuple[FakeCluster, TrustBundlePublisher]:
    cluster = FakeCluster()
    store = await ca_store(cluster, Clock())
    return cluster, TrustBundlePublisher(cluster, store, SecretWriter(cluster))  # type: ignore[arg-type]


async def test_created_then_repaired_then_left_as_it_is() -> None:
    cluster, bundles = await publisher()
    assert await bundles.publish(NS, b"BUNDLE") is None
    assert cluster.config_maps[CM]["data"] == {c.CA_CRT: "BUNDLE"}
    cluster.config_maps[CM]["data"] = {c.CA_CRT: "edited"}
    assert await bundles.publish(NS, b"BUNDLE") is None
    assert cluster.config_maps[CM]["data"] == {c.CA_CRT: "BUNDLE"}
    writes = len(cluster.writes)
    await bundles.publish(NS, b"BUNDLE")
    assert len(cluster.writes) == writes


async def test_a_configmap_the_operator_did_not_create_is_never_written() -> None:
    cluster, bundles = await publisher()
    cluster.config_maps[CM] = {"metadata": {"name": c.TRUST_BUNDLE_CONFIGMAP, "namespace": NS,
                                            "resourceVersion": "1"}, "data": {c.CA_CRT: "attacker's"}}
    problem = await bundles.publish(NS, b"BUNDLE")
    assert problem is not None
    assert problem.startswith(f"ConfigMap {NS}/{c.TRUST_BUNDLE_CONFIGMAP} exists and was not created by the operator")
    assert cluster.config_maps[CM]["data"] == {c.CA_CRT: "attacker's"}


async def test_follow_refreshes_ca_crt_of_the_identitys_own_secrets_only() -> None:
    cluster, bundles = await publisher()
    labels = {c.MANAGED_BY_LABEL: c.MANAGER_NAME, c.IDENTITY_LABEL: "web"}
    owner = [{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "pod-1"}]
    stale = {c.CA_CRT: base64.b64encode(b"old").decode(), c.TLS_CRT: "Y2VydA=="}
    cluster.put_secret(NS, {"metadata": {"name": "ours", "labels": labels, "ownerReferences": owner}, "data": stale})
    cluster.put_secret(NS, {"metadata": {"name": "look-alike", "labels": labels}, "data": stale})
    await bundles.follow(NS, "web")
    bundle = bundles.ca_store.bundle_pem
    assert base64.b64decode(cluster.secrets[(NS, "ours")]["data"][c.CA_CRT]) == bundle
    assert cluster.secrets[(NS, "ours")]["data"][c.TLS_CRT] == "Y2VydA=="
    assert cluster.secrets[(NS, "look-alike")]["data"] == stale
