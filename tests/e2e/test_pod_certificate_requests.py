"""What the real API server enforces around pod certificates, with no signer running: the rules that make
a PodCertificateRequest trustworthy before any signer reads it, and the rules a signer's status and
ClusterTrustBundles must meet (the operator's signer and the emulator are held to them).

- NodeRestriction and the Node authorizer: a node asks only for its own pods, for a signer the pod
  mounts, with the pod's service account; no tenant, not even a namespace admin, can create a request;
  nodes cannot write a status.
- Status validation (registry strategy + validation of certificates.k8s.io): only a user with ``sign``
  on the signer writes a status; an Issued status is accepted only with the chain leaf first, issued
  to the requested key, notBefore/notAfter equal to the leaf's (notBefore within 5 minutes of the API
  server's clock), a lifetime in [1h, maxExpirationSeconds], beginRefreshAt in [notBefore+10m,
  notAfter-10m]; Denied/Failed carry nothing else; a terminal status never changes.
- ClusterTrustBundles: a bundle linked to a signer is named ``<signer with / as :>:…`` and written
  only by a user with ``attest`` on the signer; its anchors are CA certificates, each once.
The kubelet is played by tests/e2e/kubelet.py with real node credentials.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.client import Answer, Client
from tests.e2e.conftest import Cluster, kubelet_for, pod_certificate_api, wait_for
from tests.e2e.kubelet import (
    Kubelet,
    Request,
    ctb_path,
    generate_key,
    pcr_path,
    pod_certificate_volume,
    proof_of_possession,
    stub_pkcs10,
)
from tests.e2e.signing import SigningCA, condition, issued_status, leaf_cert, now, pem, stamp

pytestmark = pytest.mark.e2e
NS = "e2e-pcr"
SIGNER = "e2e.mtls.dev/test-signer"  # not the operator's signer: nothing signs these requests
OTHER_SIGNER = "e2e.mtls.dev/other-signer"
MAX_EXPIRATION = 86400
HOUR = datetime.timedelta(hours=1)


@dataclass
class Setup:
    cluster: Cluster
    version: str
    node_a: Kubelet
    node_b: Kubelet
    pod_a: dict[str, Any]
    pod_b: dict[str, Any]
    signer: Client  # get PCRs, update their status, ``sign`` for SIGNER
    non_signer: Client  # the same without ``sign``
    tenant: Client  # ``admin`` of the namespace
    attester: Client  # write ClusterTrustBundles, ``attest`` for SIGNER

    def pcr(self, name: str = "") -> str:
        return pcr_path(self.version, NS, name)

    def status(self, client: Client, request: Request, status: dict[str, Any]) -> Answer:
        return client.patch(self.pcr(request.name) + "/status", {"status": status})


def _user(cluster: Cluster, name: str, rules: list[dict[str, Any]], *, namespace_role: str | None = None) -> Client:
    """A user with a client certificate, granted ``rules`` cluster-wide (or ``namespace_role`` in NS)."""
    assert cluster.control_plane is not None
    if namespace_role:
        binding = {"metadata": {"name": name, "namespace": NS},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": namespace_role},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]}
        assert cluster.api.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings", binding).ok
    else:
        role = {"metadata": {"name": name}, "rules": rules}
        binding = {"metadata": {"name": name},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]}
        for kind, body in (("clusterroles", role), ("clusterrolebindings", binding)):
            answer = cluster.api.create(f"/apis/rbac.authorization.k8s.io/v1/{kind}", body)
            assert answer.ok or answer.status == 409, answer.body
    return Client(str(cluster.control_plane.client_kubeconfig(name, name)))


def _rule(resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": ["certificates.k8s.io"], "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule


@pytest.fixture(scope="module")
def setup(cluster: Cluster) -> Iterator[Setup]:
    version = pod_certificate_api(cluster)
    assert cluster.api.create("/api/v1/namespaces", {"metadata": {"name": NS}}).ok
    node_a = kubelet_for(cluster, "e2e-node-a", version)
    node_b = kubelet_for(cluster, "e2e-node-b", version)
    # The ServiceAccount controller creates `default`; NodeRestriction wants its UID.
    wait_for(lambda: cluster.api.get(f"/api/v1/namespaces/{NS}/serviceaccounts/default").ok, within=30,
             what="the default ServiceAccount")
    volume = [pod_certificate_volume(SIGNER, "ECDSAP256", max_expiration_seconds=MAX_EXPIRATION)]
    pod_a = node_a.bind_pod(NS, "app-a", volumes=volume)
    pod_b = node_b.bind_pod(NS, "app-b", volumes=volume)
    status_rules = [_rule(["podcertificaterequests"], ["get", "list", "watch"]),
                    _rule(["podcertificaterequests/status"], ["update", "patch"])]
    bundle_rules = [_rule(["clustertrustbundles"], ["get", "list", "create", "update", "patch", "delete"])]
    yield Setup(
        cluster, version, node_a, node_b, pod_a, pod_b,
        signer=_user(cluster, "e2e-pcr-signer", [*status_rules, _rule(["signers"], ["sign"], [SIGNER])]),
        non_signer=_user(cluster, "e2e-pcr-non-signer", [*status_rules, _rule(["signers"], ["sign"], [OTHER_SIGNER])]),
        tenant=_user(cluster, "e2e-pcr-tenant", [], namespace_role="admin"),
        attester=_user(cluster, "e2e-pcr-attester", [*bundle_rules, _rule(["signers"], ["attest"], [SIGNER])]),
    )
    cluster.api.delete(f"/api/v1/namespaces/{NS}")
    for node in ("e2e-node-a", "e2e-node-b"):
        cluster.api.delete(f"/api/v1/nodes/{node}")


def _refused(answer: Answer, status: int, *fragments: str) -> None:
    message = str(answer.body.get("message", ""))
    assert answer.status == status, f"want {status}, got {answer.status}: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# -- NodeRestriction and the Node authorizer ------------------------------------------------------------

def test_a_node_asks_for_its_own_pod_as_the_kubelet_does(setup: Setup) -> None:
    request = setup.node_a.request(setup.pod_a)
    spec, meta = request.body["spec"], request.body["metadata"]
    assert meta["name"].startswith("req-")
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "app-a",
                                        "uid": setup.pod_a["metadata"]["uid"]}]
    assert (spec["signerName"], spec["podName"], spec["nodeName"], spec["maxExpirationSeconds"]) == (
        SIGNER, "app-a", "e2e-node-a", MAX_EXPIRATION)
    assert spec["nodeUID"] == setup.node_a.node_uid
    assert not (request.body.get("status") or {}).get("conditions"), "a new request has no condition"
    # The node may read its pods' requests back, and list its own with a field selector only.
    assert setup.node_a.read(setup.pcr(request.name)).ok
    assert setup.node_a.client.get(setup.pcr(), fieldSelector="spec.nodeName=e2e-node-a").ok
    _refused(setup.node_a.client.get(setup.pcr()), 403, "can only list/watch podcertificaterequests with nodeName")
    _refused(setup.node_b.client.get(setup.pcr(request.name)), 403)
    # Nothing signs for this signer: the request stays pending.
    assert not (setup.cluster.api.get(setup.pcr(request.name)).body.get("status") or {}).get("conditions")


def test_a_node_cannot_ask_for_another_nodes_pod(setup: Setup) -> None:
    source = setup.node_a.pod_sources(setup.pod_b)[0]
    answer, _ = setup.node_a.try_request(setup.pod_b, source)
    _refused(answer, 403, 'pod "e2e-pcr/app-b" is not running on node "e2e-node-a"')
    # Nor can it pose as the node the pod runs on.
    answer, _ = setup.node_a.try_request(setup.pod_b, source, node_name="e2e-node-b")
    _refused(answer, 403, 'PodCertificateRequest.Spec.NodeName="e2e-node-b", which is not the requesting node '
                          '"e2e-node-a"')


def test_a_node_asks_only_for_a_signer_the_pod_mounts_and_its_service_account(setup: Setup) -> None:
    source = {**setup.node_a.pod_sources(setup.pod_a)[0], "signerName": OTHER_SIGNER}
    answer, _ = setup.node_a.try_request(setup.pod_a, source)
    if setup.version == "v1":
        _refused(answer, 403, f'does not mount a podCertificate projected volume for signer "{OTHER_SIGNER}"')
    else:
        # 1.35/1.36's NodeRestriction does not look at the pod's volumes (the check came with v1 in 1.37): the
        # request is stored, and only a signer that checks the volume itself refuses it (the operator's does:
        # test_pod_certificate_signer.py).
        assert answer.status == 201, f"v1beta1 stores it: {answer.status} {answer.body.get('message')}"
    impostor = {**setup.pod_a, "spec": {**setup.pod_a["spec"], "serviceAccountName": "payments"}}
    answer, _ = setup.node_a.try_request(impostor, setup.node_a.pod_sources(setup.pod_a)[0],
                                         service_account_uid="0b5b4d1e-0000-4000-8000-000000000000")
    _refused(answer, 403, 'contains serviceAccountName ("payments") that differs from running pod ("default")')


def test_v1beta1_takes_the_deprecated_key_and_proof_of_possession_and_verifies_it(setup: Setup) -> None:
    if setup.version != "v1beta1":
        pytest.skip(f"certificates.k8s.io/{setup.version} has only stubPKCS10Request (pkixPublicKey and "
                    "proofOfPossession are v1beta1's, Kubernetes 1.35/1.36)")
    source = setup.node_a.pod_sources(setup.pod_a)[0]
    request = setup.node_a.request(setup.pod_a, pkix=True)
    assert not request.body["spec"].get("stubPKCS10Request"), request.body["spec"]
    assert request.body["spec"]["pkixPublicKey"], request.body["spec"]
    assert request.body["spec"]["proofOfPossession"], request.body["spec"]
    # A proof over anything but this pod's UID, or both key forms at once, is refused at create.
    key = generate_key("ECDSAP256")
    uid = setup.pod_a["metadata"]["uid"]
    body = setup.node_a.request_body(setup.pod_a, request.body["spec"]["serviceAccountUID"], source, key, pkix=True)
    _, wrong = proof_of_possession(key, uid + "x")
    body["spec"]["proofOfPossession"] = base64.b64encode(wrong).decode()
    _refused(setup.node_a.client.create(setup.pcr(), body), 422, "spec.proofOfPossession",
             "could not verify proof-of-possession signature")
    body["spec"]["proofOfPossession"] = base64.b64encode(proof_of_possession(key, uid)[1]).decode()
    body["spec"]["stubPKCS10Request"] = base64.b64encode(stub_pkcs10(key)).decode()
    _refused(setup.node_a.client.create(setup.pcr(), body), 422,
             "exactly one of (stubPKCS10Request) or (pkixPublicKey, proofOfPossession) must be set")
    # A signer's status for the deprecated form is judged against pkixPublicKey.
    ca = SigningCA.create()
    _refused(setup.status(setup.signer, request, issued_status([leaf_cert(ca, key)])), 422,
             "leaf certificate was not issued to the requested public key")
    answer = setup.status(setup.signer, request, issued_status([leaf_cert(ca, request.key)]))
    assert answer.status == 200, answer.body


def test_no_tenant_creates_a_request_and_no_node_writes_a_status(setup: Setup) -> None:
    body = setup.node_a.request_body(setup.pod_a, "any-uid", setup.node_a.pod_sources(setup.pod_a)[0],
                                     generate_key("ECDSAP256"))
    _refused(setup.tenant.create(setup.pcr(), body), 403, 'cannot create resource "podcertificaterequests"')
    request = setup.node_a.request(setup.pod_a)
    forged = issued_status([leaf_cert(SigningCA.create(), request.key)])
    _refused(setup.status(setup.node_a.client, request, forged), 403)
    _refused(setup.status(setup.tenant, request, forged), 403)


# -- status validation ----------------------------------------------------------------------------------

def test_a_signer_status_is_accepted_only_when_it_is_right_in_every_way(setup: Setup) -> None:
    ca = SigningCA.create()
    request = setup.node_a.request(setup.pod_a)
    start = now()
    leaf = leaf_cert(ca, request.key, 2 * HOUR, start)
    right = issued_status([leaf, ca.cert])
    wrong: dict[str, tuple[dict[str, Any], str, str]] = {
        "chain not leaf first": (
            issued_status([ca.cert, leaf]) | {"notBefore": right["notBefore"], "notAfter": right["notAfter"],
                                              "beginRefreshAt": right["beginRefreshAt"]},
            "status.certificateChain", "leaf certificate was not issued to the requested public key"),
        "another key": (issued_status([leaf_cert(ca, generate_key("ECDSAP256"), 2 * HOUR, start)]),
                        "status.certificateChain", "leaf certificate was not issued to the requested public key"),
        "notBefore not the leaf's": (right | {"notBefore": stamp(start - datetime.timedelta(seconds=1))},
                                     "status.notBefore", "must be set to the NotBefore time encoded in the leaf"),
        "notAfter not the leaf's": (right | {"notAfter": stamp(start + 3 * HOUR)},
                                    "status.notAfter", "must be set to the NotAfter time encoded in the leaf"),
        "notBefore far from now": (
            issued_status([leaf_cert(ca, request.key, 2 * HOUR, start - datetime.timedelta(minutes=20))]),
            "status.notBefore", "must be set to within 5 minutes of kube-apiserver's current time"),
        "refresh too early": (right | {"beginRefreshAt": stamp(start + datetime.timedelta(minutes=9))},
                              "status.beginRefreshAt", "must be at least 10 minutes after status.notBefore"),
        "refresh too late": (right | {"beginRefreshAt": stamp(start + 2 * HOUR - datetime.timedelta(minutes=9))},
                             "status.beginRefreshAt", "must be at least 10 minutes before status.notAfter"),
        "lifetime under an hour": (issued_status([leaf_cert(ca, request.key, HOUR / 2, start)]),
                                   "status.certificateChain", "leaf certificate lifetime must be >= 1 hour"),
        "lifetime over maxExpirationSeconds": (
            issued_status([leaf_cert(ca, request.key, 25 * HOUR, start)]), "status.certificateChain",
            f"leaf certificate lifetime must be <= spec.maxExpirationSeconds ({MAX_EXPIRATION})"),
        "two terminal conditions": (right | {"conditions": [*right["conditions"], condition(
            "Denied", "Refused", "no")]}, "status.conditions[1].type", "There may be at most one condition"),
        "denied with a chain": (right | {"conditions": [condition("Denied", "Refused", "no")]}, "status",
                                "non-condition status fields must be empty when denying or failing"),
        "unknown condition": ({"conditions": [condition("Approved", "Yes", "yes")]}, "status.conditions[0].type",
                              "Unsupported value"),
    }
    for what, (status, field, message) in wrong.items():
        answer = setup.status(setup.signer, request, status)
        assert answer.status == 422, f"{what}: want 422, got {answer.status}: {answer.body.get('message')}"
        causes = (answer.body.get("details") or {}).get("causes") or []
        assert any(cause.get("field", "").replace(".[", "[") == field and message in cause.get("message", "")
                   for cause in causes), f"{what}: want {field}: {message!r}; got {causes}"
    # A user without `sign` on this signer is refused even a right status.
    answer = setup.status(setup.non_signer, request, right)
    _refused(answer, 422, 'User "e2e-pcr-non-signer" is not permitted to "sign" for signer', SIGNER)

    answer = setup.status(setup.signer, request, right)
    assert answer.status == 200, answer.body
    stored = answer["status"]
    assert stored["certificateChain"] == pem(leaf) + pem(ca.cert)
    assert (stored["notBefore"], stored["notAfter"]) == (stamp(start), stamp(start + 2 * HOUR))
    # Issued is final.
    again = right | {"beginRefreshAt": stamp(start + HOUR / 2)}
    answer = setup.status(setup.signer, request, again)
    _refused(answer, 422, "immutable after PodCertificateRequest is issued, denied, or failed")
    assert setup.node_a.wait(request, within=5)["status"] == stored


def test_a_denial_carries_only_its_condition_and_is_final(setup: Setup) -> None:
    request = setup.node_a.request(setup.pod_a)
    denied = {"conditions": [condition("Denied", "NoIdentity", "no MTLSIdentity selects pod e2e-pcr/app-a")]}
    answer = setup.status(setup.signer, request, denied)
    assert answer.status == 200, answer.body
    issued = setup.node_a.wait(request, within=5)
    assert [(item["type"], item["reason"]) for item in issued["status"]["conditions"]] == [("Denied", "NoIdentity")]
    ca = SigningCA.create()
    _refused(setup.status(setup.signer, request, issued_status([leaf_cert(ca, request.key)])), 422,
             "immutable after PodCertificateRequest is issued, denied, or failed")


def test_a_request_spec_is_immutable_and_validated_at_create(setup: Setup) -> None:
    request = setup.node_a.request(setup.pod_a)
    answer = setup.cluster.api.patch(setup.pcr(request.name), {"spec": {"maxExpirationSeconds": 7200}})
    _refused(answer, 422, "field is immutable")
    source = setup.node_a.pod_sources(setup.pod_a)[0]
    answer, _ = setup.node_a.try_request(setup.pod_a, {**source, "maxExpirationSeconds": 600})
    _refused(answer, 422, "spec.maxExpirationSeconds", "must be in the range [3600, 7862400]")


# -- ClusterTrustBundles --------------------------------------------------------------------------------

def bundle_body(version: str, name: str, anchors: str, signer: str | None = SIGNER) -> dict[str, Any]:
    spec: dict[str, Any] = {"trustBundle": anchors}
    if signer:
        spec["signerName"] = signer
    return {"apiVersion": f"certificates.k8s.io/{version}", "kind": "ClusterTrustBundle",
            "metadata": {"name": name, "labels": {"mtls.dev/e2e": "true"}}, "spec": spec}


def test_a_signer_bundle_is_named_after_the_signer_and_attested(setup: Setup) -> None:
    ca, other = SigningCA.create(), SigningCA.create("another")
    path = ctb_path(setup.version)
    name = "e2e.mtls.dev:test-signer:bundle"

    def body(name: str, anchors: str, signer: str | None = SIGNER) -> dict[str, Any]:
        return bundle_body(setup.version, name, anchors, signer)

    _refused(setup.attester.create(path, body("test-signer-bundle", ca.pem)), 422, "metadata.name",
             f"ClusterTrustBundle for signerName {SIGNER} must be named with prefix e2e.mtls.dev:test-signer:")
    _refused(setup.attester.create(path, body("no:signer", ca.pem, signer=None)), 422,
             'ClusterTrustBundle without signer name must not have ":" in its name')
    leaf = leaf_cert(ca, generate_key("ECDSAP256"))
    _refused(setup.attester.create(path, body(name, pem(leaf))), 422, "entry 0 does not have the CA bit set")
    _refused(setup.attester.create(path, body(name, ca.pem + ca.pem)), 422, "duplicate trust anchor")
    _refused(setup.attester.create(path, body(name, "")), 422, "at least one trust anchor must be provided")
    # `attest` on the signer, by its name, is what lets a user publish its trust.
    _refused(setup.attester.create(path, body("e2e.mtls.dev:other-signer:bundle", ca.pem, signer=OTHER_SIGNER)),
             403, f'user not permitted to attest for signerName "{OTHER_SIGNER}"')
    _refused(setup.tenant.create(path, body(name, ca.pem)), 403, 'cannot create resource "clustertrustbundles"')
    created = setup.attester.create(path, body(name, ca.pem))
    assert created.status == 201, created.body
    try:
        updated = setup.attester.patch(f"{path}/{name}", {"spec": {"trustBundle": ca.pem + other.pem}})
        assert updated.ok, updated.body
        _refused(setup.attester.patch(f"{path}/{name}", {"spec": {"signerName": OTHER_SIGNER}}), 422,
                 "spec.signerName")
        # Every node may read bundles (kubelets project them into pods).
        listed = setup.node_a.client.get(path, labelSelector="mtls.dev/e2e=true")
        assert [item["metadata"]["name"] for item in listed["items"]] == [name]
    finally:
        setup.cluster.api.delete(f"{path}/{name}")
