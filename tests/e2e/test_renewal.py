"""Renewal and restart against the real API server: a certificate whose renewal time has come is
renewed with a new key (the time is moved onto the Secret, as the renewal benchmark does: a real one
is hours away), and a restarted operator rewrites nothing that is still valid."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mtls_operator.rules.plan import secret_data
from tests.e2e.conftest import (
    Cluster,
    OperatorProcess,
    core_path,
    identities_path,
    identity_body,
    identity_status,
    managed_secrets,
    pod_body,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _annotations(secret: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = secret["metadata"]["annotations"]
    return annotations


def test_a_due_certificate_is_renewed_with_a_new_key(cluster: Cluster, operator: OperatorProcess,
                                                     namespace: str) -> None:
    assert cluster.api.create(identities_path(namespace), identity_body("api", namespace, duration="2h")).status == 201
    assert cluster.api.create(core_path("pods", namespace), pod_body("api-0", namespace, "api")).ok
    first = wait_for(lambda: managed_secrets(cluster, namespace).get("api-api-0"), within=30, what="the Secret")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    moved = cluster.api.patch(core_path("secrets", namespace, "api-api-0"),
                              {"metadata": {"annotations": {"mtls.dev/renew-at": stamp}}})
    assert moved.ok, moved.body
    renewed = wait_for(lambda: (s := managed_secrets(cluster, namespace).get("api-api-0")) and
                       _annotations(s)["mtls.dev/serial"] != _annotations(first)["mtls.dev/serial"] and s,
                       within=60, what="the renewal")
    assert secret_data(renewed, "tls.key") != secret_data(first, "tls.key")
    assert _annotations(renewed)["mtls.dev/renew-at"] > stamp
    status = wait_for(lambda: (s := identity_status(cluster, namespace, "api")) and
                      (s.get("lastIssuance") or {}).get("reason") == "renewal" and s,
                      within=30, what="status.lastIssuance naming the renewal")
    assert status["issued"] == 1


def test_a_restart_rewrites_nothing_valid(cluster: Cluster, operator: OperatorProcess, namespace: str) -> None:
    assert cluster.api.create(identities_path(namespace), identity_body("db", namespace)).status == 201
    for index in range(3):
        assert cluster.api.create(core_path("pods", namespace), pod_body(f"db-{index}", namespace, "db")).ok
    wait_for(lambda: len(managed_secrets(cluster, namespace)) == 3, within=30, what="three Secrets")
    wait_for(lambda: identity_status(cluster, namespace, "db").get("issued") == 3, within=30,
             what="the status")
    before = {name: s["metadata"]["resourceVersion"] for name, s in managed_secrets(cluster, namespace).items()}
    identity_version = cluster.api.get(identities_path(namespace, "db"))["metadata"]["resourceVersion"]
    operator.stop()
    operator.start()
    time.sleep(8)  # the restarted operator lists, watches and reconciles every identity at start
    after = {name: s["metadata"]["resourceVersion"] for name, s in managed_secrets(cluster, namespace).items()}
    assert after == before, "a restart rewrote Secrets that were still valid"
    identity = cluster.api.get(identities_path(namespace, "db"))
    assert identity["status"]["issued"] == 3
    assert identity["metadata"]["resourceVersion"] == identity_version, "a restart rewrote the identity's status"
