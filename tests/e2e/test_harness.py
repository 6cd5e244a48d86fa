"""The e2e harness's own pure parts, checked in ``make test`` (no control plane): the API server flags by
release for pod certificates, and the kubelet stand-in's keys, stub requests and v1beta1 proofs of possession."""

from __future__ import annotations

import base64
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mtls_operator.pki.request import RequestKeyError, proven_pkix_key
from tests.e2e.client import Client
from tests.e2e.controlplane import pod_certificate_support
from tests.e2e.kubelet import KEY_TYPES, Kubelet, generate_key, pod_certificate_volume, stub_pkcs10


def test_1_37_serves_pod_certificates_at_v1_with_no_flags() -> None:
    for version in ("1.37.2", "v1.38.0"):
        support = pod_certificate_support(version)
        assert (support.api_version, support.feature_gates, support.runtime_config) == ("v1", (), ())


@pytest.mark.parametrize("version", ["1.35.0", "1.36.4"])
def test_1_35_and_1_36_need_the_gates_and_the_beta_resources(version: str) -> None:
    support = pod_certificate_support(version)
    assert support.api_version == "v1beta1"
    assert support.feature_gates == ("PodCertificateRequest=true", "ClusterTrustBundle=true",
                                     "ClusterTrustBundleProjection=true")
    assert support.runtime_config == ("certificates.k8s.io/v1beta1/podcertificaterequests=true",
                                      "certificates.k8s.io/v1beta1/clustertrustbundles=true")


@pytest.mark.parametrize("version", ["1.30.4", "1.34.1"])
def test_older_releases_say_why_they_cannot(version: str) -> None:
    support = pod_certificate_support(version)
    assert support.api_version is None
    assert not support.feature_gates
    assert f"Kubernetes {version} has no PodCertificateRequest beta" in support.reason


def test_a_version_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes version: 'latest'"):
        pod_certificate_support("latest")


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_the_stub_request_is_empty_and_signed_by_the_key(key_type: str) -> None:
    key = generate_key(key_type)
    request = x509.load_der_x509_csr(stub_pkcs10(key))
    assert request.is_signature_valid
    assert request.subject == x509.Name([])
    assert list(request.extensions) == []
    assert request.public_key() == key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == int(key_type[3:])
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.key_size == int(key_type[6:])
    else:
        assert isinstance(key, ed25519.Ed25519PrivateKey)


def test_an_unknown_key_type_is_named() -> None:
    with pytest.raises(ValueError, match="unknown key type 'DSA1024'"):
        generate_key("DSA1024")


def test_the_request_is_the_kubelets() -> None:
    kubelet = Kubelet(cast(Client, None), cast(Client, None), "node-1", "v1")  # no request is sent here
    kubelet.node_uid = "node-uid"
    pod = {"metadata": {"name": "web-0", "namespace": "shop", "uid": "pod-uid"},
           "spec": {"serviceAccountName": "web", "volumes": [pod_certificate_volume("mtls.dev/spiffe", "ED25519")]}}
    (source,) = kubelet.pod_sources(pod)
    key = generate_key("ED25519")
    body = kubelet.request_body(pod, "sa-uid", source, key)
    assert body["metadata"] == {"generateName": "req-", "namespace": "shop", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "pod-uid"}]}
    stub = body["spec"].pop("stubPKCS10Request")
    assert body["spec"] == {"signerName": "mtls.dev/spiffe", "podName": "web-0", "podUID": "pod-uid",
                            "serviceAccountName": "web", "serviceAccountUID": "sa-uid", "nodeName": "node-1",
                            "nodeUID": "node-uid"}
    assert x509.load_der_x509_csr(base64.b64decode(stub)).public_key() == key.public_key()


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_the_deprecated_v1beta1_key_form_proves_the_key_over_the_pod_uid(key_type: str) -> None:
    kubelet = Kubelet(cast(Client, None), cast(Client, None), "node-1", "v1beta1")  # no request is sent here
    kubelet.node_uid = "node-uid"
    pod = {"metadata": {"name": "web-0", "namespace": "shop", "uid": "4b5b4d1e-0000-4000-8000-00000000000a"},
           "spec": {"volumes": [pod_certificate_volume("mtls.dev/spiffe", key_type)]}}
    (source,) = kubelet.pod_sources(pod)
    key = generate_key(key_type)
    spec = kubelet.request_body(pod, "sa-uid", source, key, pkix=True)["spec"]
    assert "stubPKCS10Request" not in spec
    public, proof = base64.b64decode(spec["pkixPublicKey"]), base64.b64decode(spec["proofOfPossession"])
    assert serialization.load_der_public_key(public) == key.public_key()
    # The operator's port of the API server's check accepts it for this pod, and for no other.
    assert proven_pkix_key(public, proof, pod["metadata"]["uid"]) == key.public_key()
    with pytest.raises(RequestKeyError, match="not a signature by pkixPublicKey over the pod's UID"):
        proven_pkix_key(public, proof, "4b5b4d1e-0000-4000-8000-00000000000b")
