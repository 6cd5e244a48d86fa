"""Two operator processes and the Lease, judged by the real API server: a follower takes over at once
when the leader stops cleanly (it releases the Lease), and after a lease duration when the leader is
killed; only the Lease holder issues."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import (
    NAMESPACE,
    RELEASE,
    Cluster,
    OperatorProcess,
    Release,
    core_path,
    identities_path,
    identity_body,
    managed_secrets,
    pod_body,
    wait_for,
)

pytestmark = pytest.mark.e2e
LEASE_DURATION = 6.0  # the suite's chart value (conftest.VALUES)


def _holder(cluster: Cluster) -> str | None:
    answer = cluster.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{RELEASE}")
    holder: str | None = answer.body.get("spec", {}).get("holderIdentity") if answer.ok else None
    return holder


@pytest.fixture
def second(release: Release, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    process = OperatorProcess(release, "mtls-operator-1")
    yield process
    process.stop()
    if not operator.running:
        operator.start()


def _serials(cluster: Cluster, namespace: str) -> dict[str, str]:
    return {name: secret["metadata"]["annotations"]["mtls.dev/serial"]
            for name, secret in managed_secrets(cluster, namespace).items()}


def _role(process: OperatorProcess) -> Any:
    answer = process.healthy() or {}
    return answer.get("role")


@pytest.mark.timeout(300)
def test_hand_over_and_takeover(cluster: Cluster, operator: OperatorProcess, second: OperatorProcess,
                                namespace: str) -> None:
    wait_for(lambda: _holder(cluster) == operator.name, within=30, what="the first operator holding the Lease")
    second.start()
    wait_for(lambda: _role(second) == "follower", within=30, what="the second operator as a follower")
    assert cluster.api.create(identities_path(namespace), identity_body("ha", namespace)).status == 201
    assert cluster.api.create(core_path("pods", namespace), pod_body("ha-0", namespace, "ha")).ok
    wait_for(lambda: "ha-ha-0" in managed_secrets(cluster, namespace), within=30, what="the Secret")

    # A clean stop releases the Lease: the follower takes over within a retry period or two.
    stopped = time.monotonic()
    operator.stop()
    wait_for(lambda: _holder(cluster) == second.name, within=10, what="the follower taking the Lease over")
    handed_over = time.monotonic() - stopped
    assert handed_over < 5, f"hand-over took {handed_over:.1f}s"
    # The new leader issues: a spec change re-issues (the validating webhook is down with the first
    # operator, whose address the Service routes to; failurePolicy Ignore admits the change).
    before = _serials(cluster, namespace)
    assert cluster.api.patch(identities_path(namespace, "ha"), {"spec": {"dnsNames": ["ha"]}}).ok
    wait_for(lambda: _serials(cluster, namespace) != before, within=30, what="the new leader re-issuing")

    # A killed leader keeps the Lease for a lease duration; then the follower takes it.
    operator.start()
    wait_for(lambda: _role(operator) == "follower", within=30, what="the restarted operator as a follower")
    killed = time.monotonic()
    second.stop(kill=True)
    wait_for(lambda: _holder(cluster) == operator.name, within=LEASE_DURATION * 4, interval=0.2,
             what="the follower taking over from a killed leader")
    took_over = time.monotonic() - killed
    assert LEASE_DURATION * 0.5 <= took_over <= LEASE_DURATION * 3, f"takeover after {took_over:.1f}s"
