"""cluster_trust_bundle.py: the signer's ClusterTrustBundle created at the newest served version, kept on
the CA store's bundle, never written when someone else made it; the CA rotation waits for it."""

from __future__ import annotations

import pytest

from mtls_operator import constants as c
from mtls_operator.controller.cluster_trust_bundle import FOREIGN_REASON, ClusterTrustBundlePublisher
from mtls_operator.controller.rotation import RotationController
from tests.unit.fake_cluster import FakeCluster
from tests.unit.parts import SETTINGS, Clock, ca_store

SIGNER = "mtls.dev/spiffe"
NAME = "mtls.dev:spiffe:bundle"
LABELS = {c.MANAGED_BY_LABEL: c.MANAGER_NAME, "mtls.dev/trust-bundle": "true"}


async def publisher(*versions: str) -> tuple[FakeCluster, ClusterTrustBundlePublisher]:
    cluster = FakeCluster()
    cluster.served = {("certificates.k8s.io", version, "clustertrustbundles") for version in versions}
    store = await ca_store(cluster, Clock())
    return cluster, ClusterTrustBundlePublisher(cluster, store, SIGNER, clock=Clock())  # type: ignore[arg-type]


@pytest.mark.parametrize(("served", "expected"), [(("v1", "v1beta1"), "v1"), (("v1beta1",), "v1beta1")])
async def test_created_at_the_newest_served_version_with_the_bundle(served: tuple[str, ...], expected: str) -> None:
    cluster, bundles = await publisher(*served)
    assert await bundles.publish() is True
    stored = cluster.cluster_trust_bundles[NAME]
    assert stored["apiVersion"] == f"certificates.k8s.io/{expected}"
    assert stored["metadata"]["labels"] == LABELS
    assert stored["spec"] == {"signerName": SIGNER, "trustBundle": bundles.ca_store.bundle_pem.decode()}
    assert await bundles.carries(bundles.ca_store.bundle_pem) is True
    writes = len(cluster.writes)
    assert await bundles.publish() is True
    assert len(cluster.writes) == writes, "a bundle already carried is not written again"


async def test_repaired_when_edited_and_follows_the_bundle() -> None:
    cluster, bundles = await publisher("v1")
    await bundles.publish()
    cluster.cluster_trust_bundles[NAME]["spec"]["trustBundle"] = "edited"
    assert await bundles.carries(bundles.ca_store.bundle_pem) is False
    assert await bundles.publish() is True
    assert cluster.cluster_trust_bundles[NAME]["spec"]["trustBundle"] == bundles.ca_store.bundle_pem.decode()
    assert cluster.writes[-1] == ("update", "ClusterTrustBundle", "", NAME)


async def test_nothing_published_where_no_cluster_trust_bundles_are_served(caplog: pytest.LogCaptureFixture) -> None:
    cluster, bundles = await publisher()
    assert await bundles.publish() is None
    assert await bundles.carries(b"anything") is None
    assert cluster.cluster_trust_bundles == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, "discovery is asked once, and said once"
    assert "serves ClusterTrustBundles at none of certificates.k8s.io/v1 or v1beta1" in warnings[0]


async def test_a_bundle_the_operator_did_not_create_is_never_written_and_reported_once() -> None:
    cluster, bundles = await publisher("v1")
    foreign = {"apiVersion": "certificates.k8s.io/v1", "kind": "ClusterTrustBundle",
               "metadata": {"name": NAME, "labels": {"mtls.dev/trust-bundle": "true"}},
               "spec": {"signerName": SIGNER, "trustBundle": "someone else's"}}
    cluster.cluster_trust_bundles[NAME] = cluster._stamp(foreign, "")
    assert await bundles.publish() is False
    assert await bundles.publish() is False
    assert cluster.cluster_trust_bundles[NAME]["spec"]["trustBundle"] == "someone else's"
    assert [w for w in cluster.writes if w[1] == "ClusterTrustBundle"] == []
    (event,) = cluster.events
    assert (event["name"], event["kind"], event["type"], event["reason"]) == (
        SETTINGS.ca_secret, "Secret", "Warning", FOREIGN_REASON)
    assert "was not created by the operator" in event["message"]
    assert await bundles.carries(bundles.ca_store.bundle_pem) is False


async def test_the_ca_rotation_counts_the_bundle_like_a_trust_configmap() -> None:
    cluster, bundles = await publisher("v1")
    rotation = RotationController(cluster, bundles.ca_store, SETTINGS, clock=Clock(),  # type: ignore[arg-type]
                                  on_change=lambda: None)
    fleet, laggards = await rotation._fleet(bundles.ca_store.bundle_pem, None)
    assert (fleet.objects, fleet.stale_bundle) == (0, 0), "without the publisher nothing is waited for"
    rotation.cluster_trust_bundle = bundles
    fleet, laggards = await rotation._fleet(bundles.ca_store.bundle_pem, None)
    assert (fleet.objects, fleet.stale_bundle, laggards) == (1, 1, [f"ClusterTrustBundle {NAME}: 1"])
    await bundles.publish()
    fleet, laggards = await rotation._fleet(bundles.ca_store.bundle_pem, None)
    assert (fleet.objects, fleet.stale_bundle, laggards) == (1, 0, [])
    fleet, _ = await rotation._fleet(b"the next phase's bundle", None)
    assert fleet.stale_bundle == 1
