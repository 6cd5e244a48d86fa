"""A full CA rotation on demand against the real API server, while two apps keep shaking hands with the
files of their Secrets as they are at each moment (an app that reloads per connection, a kubelet that
refreshes at once: the chart's propagation delay is 0s here), and the API server keeps calling the
webhooks through the rotation (their caBundle follows the trust bundle)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mtls_operator.demo.handshake import mutual_tls_handshake
from tests.e2e.conftest import (
    NAMESPACE,
    Cluster,
    OperatorProcess,
    assert_rotation_went_through,
    core_path,
    identities_path,
    identity_body,
    managed_secrets,
    pod_body,
    wait_for,
)
from tests.e2e.test_issuance import files

pytestmark = pytest.mark.e2e
CA_SECRET = "mtls-operator-ca"


def _ca(cluster: Cluster) -> dict[str, str]:
    annotations: dict[str, str] = cluster.api.get(core_path("secrets", NAMESPACE, CA_SECRET))["metadata"].get(
        "annotations") or {}
    return annotations


@pytest.mark.timeout(900)
def test_a_ca_rotation_never_breaks_a_handshake(cluster: Cluster, operator: OperatorProcess, namespace: str) -> None:
    for app in ("server", "client"):
        body = identity_body(app, namespace, dnsNames=[app, f"{app}.{namespace}.svc"])
        assert cluster.api.create(identities_path(namespace), body).status == 201
        assert cluster.api.create(core_path("pods", namespace), pod_body(f"{app}-0", namespace, app)).ok
    wait_for(lambda: {"server-server-0", "client-client-0"} <= set(managed_secrets(cluster, namespace)), within=30,
             what="both Secrets")
    fingerprint = _ca(cluster)["mtls.dev/ca-fingerprint"]
    marked = cluster.api.patch(core_path("secrets", NAMESPACE, CA_SECRET),
                               {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    assert marked.ok, marked.body

    phases: list[str] = []
    during = 0  # handshakes while the CA Secret showed a rotation phase
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        annotations = _ca(cluster)
        phase = annotations.get("mtls.dev/rotation-phase", "Idle")
        if not phases or phases[-1] != phase:
            phases.append(phase)
        secrets: dict[str, Any] = managed_secrets(cluster, namespace)
        result = mutual_tls_handshake(files(secrets["server-server-0"]), files(secrets["client-client-0"]),
                                      server_hostname=f"server.{namespace}.svc")
        assert result.ok, f"handshake failed in phase {phase}: {result.error}"
        during += phase != "Idle"
        if phase == "Idle" and annotations.get("mtls.dev/ca-fingerprint") != fingerprint:
            break
        # Phases move on as soon as their last object carries the bundle: sample as often as a look and a
        # handshake allow, so that the rotation is seen at work (a rotation of two pods takes about a second).
        time.sleep(0.02)
    else:
        raise AssertionError(f"the rotation did not finish within 600s; phases seen: {phases}")
    assert_rotation_went_through(cluster, phases, CA_SECRET)
    assert during >= 3, phases

    # Both pods now hold certificates of the new CA, trusted by a bundle of the new CA alone.
    status = cluster.api.get(identities_path(namespace, "server"))["status"]
    assert status["caFingerprint"] == _ca(cluster)["mtls.dev/ca-fingerprint"]
    if not cluster.local:
        return  # an external cluster runs the chart without webhooks
    # The API server still reaches the webhooks: their caBundle moved to the new CA with them.
    assert cluster.api.create(identities_path(namespace), identity_body("after", namespace)).status == 201
    admitted = cluster.api.create(core_path("pods", namespace), pod_body("after-0", namespace, "after"))
    assert admitted.status == 201, admitted.body
    assert admitted["metadata"]["annotations"]["mtls.dev/secret-name"] == "after-after-0"
