"""The README's first identity, end to end, with kubectl against the real API server: apply, wait,
get (printer columns), describe; the Secrets, their certificates, a mutual-TLS handshake between two
pods' files; and the real garbage collector deleting a pod's Secret with the pod."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from cryptography import x509

from mtls_operator.demo.handshake import TLSFiles, mutual_tls_handshake
from mtls_operator.rules.plan import secret_data
from tests.e2e.conftest import (
    Cluster,
    OperatorProcess,
    core_path,
    identity_status,
    managed_secrets,
    needs_local,
    wait_for,
)

pytestmark = pytest.mark.e2e
SHOP = "shop"


def files(secret: dict[str, Any]) -> TLSFiles:
    return TLSFiles(secret_data(secret, "tls.crt") or b"", secret_data(secret, "tls.key") or b"",
                    secret_data(secret, "ca.crt") or b"")


@pytest.fixture(scope="module")
def payments(cluster: Cluster, operator: OperatorProcess) -> None:
    applied = cluster.kubectl("apply", "-f", "examples/payments.yaml").stdout
    assert "mtlsidentity.mtls.dev/payments created" in applied
    cluster.kubectl("wait", "--for=condition=Ready", "mtlsid/payments", "-n", SHOP, "--timeout=90s")
    # Ready may first be True for the one pod the operator has seen: the identity is applied before
    # its pods, and a pass for payments-0 can end before payments-1 exists. Wait for both.
    cluster.kubectl("wait", "--for=jsonpath={.status.issued}=2", "mtlsid/payments", "-n", SHOP,
                    "--timeout=90s")


def test_kubectl_get_shows_the_printer_columns(cluster: Cluster, payments: None) -> None:
    table = cluster.kubectl("get", "mtlsid", "-n", SHOP).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "PODS", "ISSUED", "NEXT-RENEWAL", "AGE"]
    row = table[1].split()
    assert row[:4] == ["payments", "True", "2", "2"], table
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[4]), row
    wide = cluster.kubectl("get", "mtlsidentities.mtls.dev", "payments", "-n", SHOP, "-o",
                           "jsonpath={.status.pods}/{.status.issued}/{.status.observedGeneration}").stdout
    assert wide == "2/2/1"


def test_kubectl_describe_shows_the_condition_and_events(cluster: Cluster, payments: None) -> None:
    described = cluster.kubectl("describe", "mtlsid", "payments", "-n", SHOP).stdout
    assert "Reason:                Issued" in described or re.search(r"Reason:\s+Issued", described), described
    assert "2/2 pods have valid certificates" in described
    assert re.search(r"Normal\s+Issued", described), described


def test_each_pod_has_its_secret_with_its_spiffe_id(cluster: Cluster, payments: None) -> None:
    secrets = managed_secrets(cluster, SHOP)
    assert set(secrets) >= {"payments-payments-0", "payments-payments-1"}
    for pod in ("payments-0", "payments-1"):
        secret = secrets[f"payments-{pod}"]
        assert secret["type"] == "kubernetes.io/tls"
        owner = secret["metadata"]["ownerReferences"][0]
        live_pod = cluster.api.get(core_path("pods", SHOP, pod))
        assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", pod, live_pod["metadata"]["uid"])
        cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/default"]
        assert "payments.shop.svc" in sans.get_values_for_type(x509.DNSName)
    ids = cluster.kubectl("get", "mtlsid", "payments", "-n", SHOP, "-o", "jsonpath={.status.spiffeIDs}").stdout
    assert "spiffe://cluster.local/ns/shop/sa/default" in ids


def test_the_webhook_mounted_the_secret_into_the_pods(cluster: Cluster, payments: None) -> None:
    needs_local(cluster)
    volume = cluster.kubectl("get", "pod", "payments-0", "-n", SHOP, "-o",
                             'jsonpath={.spec.volumes[?(@.name=="mtls-identity")].secret.secretName}').stdout
    assert volume == "payments-payments-0"
    mounts = cluster.kubectl("get", "pod", "payments-0", "-n", SHOP, "-o",
                             'jsonpath={.spec.containers[0].volumeMounts[?(@.name=="mtls-identity")].mountPath}').stdout
    assert mounts == "/var/run/secrets/mtls.dev"


def test_two_pods_shake_hands_with_their_secrets(cluster: Cluster, payments: None) -> None:
    secrets = managed_secrets(cluster, SHOP)
    result = mutual_tls_handshake(files(secrets["payments-payments-0"]), files(secrets["payments-payments-1"]),
                                  server_hostname="payments.shop.svc")
    assert result.ok, result.error


def test_the_trust_bundle_configmap(cluster: Cluster, payments: None) -> None:
    bundle = cluster.api.get(core_path("configmaps", SHOP, "mtls-trust-bundle"))
    assert bundle.ok, bundle.body
    secret = managed_secrets(cluster, SHOP)["payments-payments-0"]
    assert bundle["data"]["ca.crt"].encode() == secret_data(secret, "ca.crt")


def test_the_garbage_collector_deletes_a_pods_secret_with_the_pod(cluster: Cluster, payments: None) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "payments-gc", "namespace": SHOP, "labels": {
        "app": "payments", "mtls.dev/inject": "true"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    assert cluster.api.create(core_path("pods", SHOP), pod).ok
    wait_for(lambda: "payments-payments-gc" in managed_secrets(cluster, SHOP), within=30, what="the new pod's Secret")
    assert cluster.api.delete(core_path("pods", SHOP, "payments-gc")).ok
    # No kubelet: an unscheduled pod is deleted at once; its Secret goes by the garbage collector
    # (the operator never deletes a pod's Secret itself while its identity exists).
    wait_for(lambda: "payments-payments-gc" not in managed_secrets(cluster, SHOP), within=60,
             what="the garbage collector deleting the Secret")
    wait_for(lambda: identity_status(cluster, SHOP, "payments").get("pods") == 2, within=30,
             what="the status counting 2 pods again")
