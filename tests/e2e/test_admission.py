"""The operator's webhooks called by the real API server through its admission chain: a Deployment's
pods (created by the real ReplicaSet controller, named only when stored) injected; a pod that cannot
work refused; a labelled pod no identity selects admitted with a warning; a spec refused at apply
time; and with no replica answering, opted-in pods refused (failurePolicy Fail) while others pass."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import (
    Cluster,
    OperatorProcess,
    core_path,
    identities_path,
    identity_body,
    managed_secrets,
    needs_local,
    pod_body,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _local(cluster: Cluster) -> None:
    needs_local(cluster)


def _deployment(name: str, ns: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name, "mtls.dev/inject": "true"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "example/orders:1"}]}}}}


def _pods(cluster: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    answer = cluster.api.get(core_path("pods", ns), labelSelector=f"app={app}")
    assert answer.ok, answer.body
    items: list[dict[str, Any]] = answer["items"]
    return items


def test_a_deployments_pods_are_injected_and_issued(cluster: Cluster, operator: OperatorProcess,
                                                    namespace: str) -> None:
    assert cluster.api.create(identities_path(namespace), identity_body("orders", namespace)).status == 201
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    created = cluster.api.create(deployments, _deployment("orders", namespace, 3))
    assert created.ok, created.body
    pods = wait_for(lambda: len(_pods(cluster, namespace, "orders")) == 3 and _pods(cluster, namespace, "orders"),
                    within=60, what="the ReplicaSet controller creating 3 pods")
    for pod in pods:
        secret = pod["metadata"]["annotations"]["mtls.dev/secret-name"]
        generate_name = pod["metadata"]["generateName"]
        assert re.fullmatch(re.escape(f"orders-{generate_name}") + r"[a-z0-9]{8}", secret), (secret, generate_name)
        volume = next(item for item in pod["spec"]["volumes"] if item["name"] == "mtls-identity")
        assert volume["secret"]["secretName"] == secret
        mount = next(item for item in pod["spec"]["containers"][0]["volumeMounts"] if item["name"] == "mtls-identity")
        assert (mount["mountPath"], mount["readOnly"]) == ("/var/run/secrets/mtls.dev", True)
    wanted = {pod["metadata"]["annotations"]["mtls.dev/secret-name"] for pod in pods}
    wait_for(lambda: wanted <= set(managed_secrets(cluster, namespace)), within=60, what="the three Secrets")

    # Scaled to zero: the ReplicaSet controller deletes the pods, the garbage collector their Secrets.
    scaled = cluster.api.patch(f"/apis/apps/v1/namespaces/{namespace}/deployments/orders", {"spec": {"replicas": 0}})
    assert scaled.ok, scaled.body
    wait_for(lambda: not (wanted & set(managed_secrets(cluster, namespace))), within=90,
             what="the Secrets garbage-collected with their pods")


def test_a_pod_that_cannot_work_is_refused(cluster: Cluster, operator: OperatorProcess, namespace: str) -> None:
    assert cluster.api.create(identities_path(namespace), identity_body("web", namespace)).status == 201
    pod = pod_body("web-0", namespace, "web")
    pod["spec"]["volumes"] = [{"name": "mtls-identity", "emptyDir": {}}]
    answer = cluster.api.create(core_path("pods", namespace), pod)
    # The operator's webhook answers 422 (its AdmissionError's code), which the API server passes on.
    assert answer.status == 422, answer.body
    assert answer["message"] == (
        'admission webhook "inject.mtls.dev" denied the request: the pod\'s volume mtls-identity is not a Secret '
        "volume; remove it (the webhook adds it) or give it another name")


def test_a_labelled_pod_no_identity_selects_gets_a_warning(cluster: Cluster, operator: OperatorProcess,
                                                           namespace: str) -> None:
    manifest = (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: lonely, namespace: {namespace}, labels: "
                "{app: lonely, mtls.dev/inject: 'true'}}\nspec: {containers: [{name: app, image: app:1}]}\n")
    result = cluster.kubectl("apply", "-f", "-", stdin=manifest)
    assert "pod/lonely created" in result.stdout
    assert ("Warning: no MTLSIdentity in this namespace selects this pod (labels app=lonely,"
            "mtls.dev/inject=true, service account default): it gets no certificate and no mtls-identity volume"
            ) in result.stderr, result.stderr
    stored = cluster.api.get(core_path("pods", namespace, "lonely"))
    assert not any(volume["name"] == "mtls-identity" for volume in stored["spec"]["volumes"])


def test_a_spec_outside_the_namespace_is_refused_at_apply_time(cluster: Cluster, operator: OperatorProcess,
                                                               namespace: str) -> None:
    manifest = (f"apiVersion: mtls.dev/v1alpha1\nkind: MTLSIdentity\nmetadata: {{name: bad, namespace: {namespace}}}\n"
                "spec: {selector: {matchLabels: {app: bad}}, dnsNames: [db.other.svc]}\n")
    result = cluster.kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode == 1
    assert 'admission webhook "identities.mtls.dev" denied the request: spec.dnsNames[0]:' in result.stderr, \
        result.stderr
    assert cluster.api.get(identities_path(namespace, "bad")).status == 404


def test_with_no_replica_answering_opted_in_pods_are_refused(cluster: Cluster, operator: OperatorProcess,
                                                             namespace: str) -> None:
    operator.stop()
    try:
        refused = cluster.api.create(core_path("pods", namespace), pod_body("opted-in", namespace, "x"))
        assert refused.status == 500, refused.body
        assert 'failed calling webhook "inject.mtls.dev"' in refused["message"]
        plain = cluster.api.create(core_path("pods", namespace), pod_body("plain", namespace, "x", opted_in=False))
        assert plain.status == 201, plain.body
    finally:
        operator.start()
