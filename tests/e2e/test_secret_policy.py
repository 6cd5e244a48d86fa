"""The chart's ValidatingAdmissionPolicy (README: "Secret write policy"), enforced by the real API
server: with the operator's own ServiceAccount token, only Secrets carrying the operator's labels (and
its CA Secrets) may be created, updated and deleted; everybody else's requests are not matched.

The requests here are the test's, made with the operator's token; their User-Agent keeps them out of
the audit comparison of tests/e2e/test_rbac_audit.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.client import Client
from tests.e2e.conftest import RELEASE, Cluster, Release, core_path

pytestmark = pytest.mark.e2e
MANAGED = {"app.kubernetes.io/managed-by": "mtls-operator", "mtls.dev/identity": "payments"}


@pytest.fixture
def as_operator(release: Release) -> Iterator[Client]:
    client = Client(str(release.operator_kubeconfig))
    yield client
    client.close()


def _secret(name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels or {}},
            "data": {"x": "eA=="}}


def test_the_policy_is_installed(cluster: Cluster, release: Release) -> None:
    policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    policy = cluster.api.get(f"{policies}/{RELEASE}-secret-writes")
    assert policy.ok, policy.body
    # The API server type-checked its CEL expressions: no warnings on the policy's status.
    assert not (policy.body.get("status") or {}).get("typeChecking", {}).get("expressionWarnings")


def test_the_operator_account_writes_only_managed_secrets(cluster: Cluster, as_operator: Client,
                                                          namespace: str) -> None:
    secrets = core_path("secrets", namespace)
    refused = as_operator.create(secrets, _secret("not-ours"))
    assert refused.status == 403, refused.body
    assert refused["reason"] == "Forbidden"
    assert "refused by ValidatingAdmissionPolicy" in refused["message"]
    assert f"CREATE of Secret {namespace}/not-ours" in refused["message"]

    created = as_operator.create(secrets, _secret("ours", MANAGED))
    assert created.status == 201, created.body

    # Someone else's Secret: the operator may neither take it over nor delete it.
    assert cluster.api.create(secrets, _secret("theirs")).status == 201
    takeover = as_operator.patch(core_path("secrets", namespace, "theirs"), {"metadata": {"labels": MANAGED}})
    assert takeover.status == 403, takeover.body
    assert "UPDATE of Secret" in takeover["message"]
    deleted = as_operator.delete(core_path("secrets", namespace, "theirs"))
    assert deleted.status == 403, deleted.body

    # Its own, managed Secret: updates and deletes pass; dropping the labels does not.
    dropped = as_operator.patch(core_path("secrets", namespace, "ours"),
                                {"metadata": {"labels": {"mtls.dev/identity": None}}})
    assert dropped.status == 403, dropped.body
    assert as_operator.delete(core_path("secrets", namespace, "ours")).ok
    # Requests of anyone else are not matched.
    assert cluster.api.delete(core_path("secrets", namespace, "theirs")).ok
