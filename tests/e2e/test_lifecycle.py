"""helm upgrade and the README's uninstall against the real API server, last in the session.

Upgrade: the changed value reaches the Deployment, and the webhook configurations keep the caBundle
the operator wrote (helm patches only what the chart renders). Uninstall as documented: the
identities first, while the operator runs (it deletes their Secrets and removes its finalizer), then
the release; the CRD, the CA Secret and the Lease stay.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    NAMESPACE,
    RELEASE,
    Cluster,
    OperatorProcess,
    Release,
    core_path,
    managed_secrets,
    wait_for,
    webhook_ca_bundles,
)

pytestmark = pytest.mark.e2e


def _env(cluster: Cluster) -> dict[str, str]:
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", "") for item in container["env"]}


def test_helm_upgrade_keeps_the_operators_ca_bundle(cluster: Cluster, release: Release,
                                                    operator: OperatorProcess) -> None:
    bundles = webhook_ca_bundles(cluster) if release.webhooks else None
    cluster.helm("upgrade", RELEASE, "charts/mtls-operator", "-n", NAMESPACE, "--reuse-values",
                 "--set", "maxIssuancePerSecond=20")
    assert _env(cluster)["MTLS_MAX_ISSUANCE_PER_SECOND"] == "20"
    revision = cluster.helm("history", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    assert '"revision":2' in revision.replace(" ", "")
    if release.webhooks:
        assert webhook_ca_bundles(cluster) == bundles


def test_the_documented_uninstall(cluster: Cluster, release: Release, operator: OperatorProcess) -> None:
    identities = cluster.kubectl("get", "mtlsid", "-A", "-o", "name").stdout.split()
    assert identities, "the session left no identity to uninstall with"
    namespaces = set(cluster.kubectl("get", "mtlsid", "-A", "-o",
                                     "jsonpath={.items[*].metadata.namespace}").stdout.split())
    cluster.kubectl("delete", "mtlsid", "--all", "-A", "--timeout=120s")
    for namespace in namespaces:
        # Secrets of pods that identities served are deleted by the operator with their identity.
        wait_for(lambda ns=namespace: not any(s["metadata"]["labels"].get("mtls.dev/identity")
                                               for s in managed_secrets(cluster, ns).values()),
                 within=60, what=f"the operator deleting the Secrets in {namespace}")
    cluster.helm("uninstall", RELEASE, "-n", NAMESPACE)
    operator.stop()
    assert cluster.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}").status == 404
    assert cluster.api.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{RELEASE}").status == 404
    assert cluster.api.get(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{RELEASE}"
                           ).status == 404
    # What the README says stays.
    assert cluster.api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/mtlsidentities.mtls.dev").ok
    assert cluster.api.get(core_path("secrets", NAMESPACE, "mtls-operator-ca")).ok
    assert cluster.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{RELEASE}").ok
