"""rules/podcert.py and pki/request.py: judging a PodCertificateRequest and the status it gets (pure, table-tested)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mtls_operator import constants as c
from mtls_operator.errors import SpecError
from mtls_operator.pki import create_self_signed_ca, sign_public_key
from mtls_operator.rules import podcert as pc
from mtls_operator.rules.plan import identity_ref, pod_info
from mtls_operator.rules.spec import parse_identity_spec
from mtls_operator.times import parse_time
from tests.unit.pcr_cases import (
    NODE_UID,
    POD_UID,
    SA_UID,
    SIGNER,
    b64,
    certificate_volume,
    identity_body,
    kubelet_key,
    node_body,
    pcr_body,
    pod_body,
    proof_of_possession,
    service_account_body,
    stub_pkcs10,
)

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
CA = create_self_signed_ca(NOW - timedelta(days=1))
P256 = kubelet_key("ECDSAP256")


def candidates(*bodies: dict[str, Any]) -> list[pc.Candidate]:
    result = []
    for body in bodies:
        try:
            spec = parse_identity_spec(body["spec"], namespace="shop")
        except SpecError:
            result.append(pc.Candidate(identity_ref(body, valid=False), None))
        else:
            result.append(pc.Candidate(identity_ref(body), spec))
    return result


def facts(pod: dict[str, Any] | None = None, *, account: dict[str, Any] | None = None,
          node: dict[str, Any] | None = None, no_account: bool = False, no_node: bool = False) -> pc.PodFacts:
    return pc.pod_facts(pod or pod_body(), SIGNER,
                        service_account=None if no_account else account or service_account_body(),
                        node=None if no_node else node or node_body())


def decide(request: dict[str, Any] | None = None, pod_facts: pc.PodFacts | None = None,
           identities: list[pc.Candidate] | None = None, *, pod_missing: bool = False) -> pc.Grant | pc.Refusal:
    return pc.decide(pc.parse_request(request or pcr_body(P256)), None if pod_missing else pod_facts or facts(),
                     candidates(identity_body()) if identities is None else identities,
                     trust_domain="cluster.local", cluster_domain="cluster.local")


# --- the signer's name --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "problem"), [
    ("mtls.dev/spiffe", None),
    ("example.com/my-signer", None),
    ("example.com/team.signer-1", None),
    ("spiffe", "must be a domain and a path"),
    ("mtls.dev/a/b", "must be a domain and a path"),
    ("dev/spiffe", "at least two labels"),
    ("Example.com/x", "lower-case DNS domain"),
    ("kubernetes.io/kube-apiserver-client-pod", "reserved for the Kubernetes project"),
    ("x.kubernetes.io/mine", "reserved for the Kubernetes project"),
    ("mtls.dev/Spiffe", "the path 'Spiffe'"),
    ("mtls.dev/", "the path ''"),
    ("mtls.dev/" + "a" * 600, "at most"),
])
def test_signer_names(name: str, problem: str | None) -> None:
    found = pc.signer_name_problem(name)
    assert (found is None) if problem is None else (found is not None and problem in found)


# --- reading a request -------------------------------------------------------------------------------------


def test_a_v1_request_reads_back() -> None:
    request = pc.parse_request(pcr_body(P256))
    assert (request.namespace, request.name, request.pod_name, request.pod_uid) == ("shop", "req-abc12", "web-0",
                                                                                     POD_UID)
    assert (request.service_account_uid, request.node_name, request.node_uid) == (SA_UID, "node-1", NODE_UID)
    assert request.max_expiration == timedelta(hours=24)
    assert request.stub_pkcs10 is not None
    assert x509.load_der_x509_csr(request.stub_pkcs10).is_signature_valid
    assert request.problems == ()
    assert not request.terminal


def test_a_missing_max_expiration_is_the_apis_default() -> None:
    assert pc.parse_request(pcr_body(P256, max_expiration=None)).max_expiration == timedelta(seconds=86400)


@pytest.mark.parametrize(("change", "problem"), [
    ({"stubPKCS10Request": "not base64!"}, "spec.stubPKCS10Request is not valid base64"),
    ({"stubPKCS10Request": "A" * 20000}, "over the API's 10 KiB limit"),
    ({"stubPKCS10Request": 12}, "must be base64 text"),
    ({"podUID": ""}, "spec.podUID is required"),
    ({"nodeUID": "x" * 129}, "spec.nodeUID is longer than 128"),
    ({"maxExpirationSeconds": 60}, "must be in [3600, 7862400]"),
    ({"maxExpirationSeconds": 7862401}, "must be in [3600, 7862400]"),
    ({"maxExpirationSeconds": "3600"}, "whole number of seconds"),
    ({"maxExpirationSeconds": True}, "whole number of seconds"),
    ({"pkixPublicKey": b64(b"key")}, "exactly one of"),
    ({"stubPKCS10Request": None}, "exactly one of"),
])
def test_malformed_requests_are_problems_never_exceptions(change: dict[str, Any], problem: str) -> None:
    body = pcr_body(P256)
    body["spec"].update(change)
    request = pc.parse_request(body)
    assert any(problem in found for found in request.problems), request.problems
    refusal = decide(body)
    assert isinstance(refusal, pc.Refusal)
    assert (refusal.condition, refusal.reason) == (pc.DENIED, pc.INVALID_REQUEST)


@pytest.mark.parametrize("body", [{}, {"spec": None, "metadata": []}, {"spec": {"podName": 3}, "status": "x"},
                                  {"status": {"conditions": ["x", {"type": 1}]}}])
def test_garbage_reads_as_problems(body: dict[str, Any]) -> None:
    assert pc.parse_request(body).problems


@pytest.mark.parametrize(("conditions", "terminal"), [
    ([], False),
    ([{"type": "Issued", "status": "True"}], True),
    ([{"type": "Denied", "status": "True"}], True),
    ([{"type": "Failed", "status": "True"}], True),
    ([{"type": "Progressing", "status": "True"}], False),
])
def test_terminal_requests(conditions: list[dict[str, str]], terminal: bool) -> None:
    body = pcr_body(P256)
    body["status"] = {"conditions": conditions}
    assert pc.parse_request(body).terminal is terminal


# --- the decision --------------------------------------------------------------------------------------------


def test_a_kubelets_request_is_granted_as_the_secret_path_would_issue() -> None:
    identity = identity_body(dnsNames=["web.shop.svc"], duration="12h", renewBefore="2h", usages=["server"])
    grant = decide(identities=candidates(identity))
    assert isinstance(grant, pc.Grant)
    assert grant.identity.name == "web"
    assert grant.leaf.spiffe_id == "spiffe://cluster.local/ns/shop/sa/web"
    assert grant.leaf.dns_names == ("web.shop.svc",)
    assert grant.leaf.duration == timedelta(hours=12)
    assert grant.renew_before == timedelta(hours=2)
    assert {u.value for u in grant.leaf.usages} == {"server"}


def test_a_headless_pod_gets_its_own_names() -> None:
    grant = decide(pod_facts=facts(pod_body(hostname="web-0", subdomain="web")))
    assert isinstance(grant, pc.Grant)
    assert grant.leaf.dns_names == ("web-0.web.shop.svc", "web-0.web.shop.svc.cluster.local")


@pytest.mark.parametrize(("duration", "max_expiration", "lifetime"), [
    ("24h", 86400, timedelta(hours=24)),
    ("24h", 3600, timedelta(hours=1)),
    ("2h", 86400, timedelta(hours=2)),
    ("8760h", 7862400, timedelta(days=91)),
])
def test_lifetime_is_the_identitys_capped_by_the_request(duration: str, max_expiration: int,
                                                          lifetime: timedelta) -> None:
    grant = decide(pcr_body(P256, max_expiration=max_expiration),
                   identities=candidates(identity_body(duration=duration)))
    assert isinstance(grant, pc.Grant)
    assert grant.leaf.duration == lifetime


def test_the_older_identity_serves_as_for_secrets() -> None:
    older = identity_body("old", created="2025-01-01T00:00:00Z", duration="2h")
    grant = decide(identities=candidates(identity_body(), older))
    assert isinstance(grant, pc.Grant)
    assert (grant.identity.name, grant.leaf.duration) == ("old", timedelta(hours=2))


def test_an_invalid_older_identity_does_not_take_the_pod() -> None:
    broken = identity_body("old", created="2025-01-01T00:00:00Z", duration="forever")
    grant = decide(identities=candidates(identity_body(), broken))
    assert isinstance(grant, pc.Grant)
    assert grant.identity.name == "web"


def test_a_v1beta1_proof_of_possession_is_verified() -> None:
    for key_type in ("ECDSAP256", "ED25519", "RSA3072"):
        key = kubelet_key(key_type)
        spec = {"ECDSAP256": {}, "ED25519": {"algorithm": "Ed25519"}, "RSA3072": {"algorithm": "RSA", "size": 3072}}
        grant = decide(pcr_body(key, legacy_proof=True, version="v1beta1"),
                       identities=candidates(identity_body(privateKey={"algorithm": "ECDSA"} | spec[key_type])))
        assert isinstance(grant, pc.Grant), (key_type, grant)


def _refusal(result: pc.Grant | pc.Refusal) -> tuple[str, str, str]:
    assert isinstance(result, pc.Refusal), result
    return result.condition, result.reason, result.message


OTHER_KEY = kubelet_key()


@pytest.mark.parametrize(("request_body", "pod_facts", "reason", "message"), [
    pytest.param(pcr_body(P256, unverifiedUserAnnotations={"example.com/x": "1"}), None,
                 pc.INVALID_USER_ANNOTATIONS, "'example.com/x'", id="user-annotations"),
    pytest.param(pcr_body(P256, pod_uid="1111"), None, pc.POD_MISMATCH, "earlier pod", id="pod-uid"),
    pytest.param(None, facts(pod_body() | {"status": {"phase": "Succeeded"}}),
                 pc.POD_NOT_RUNNING, "has finished", id="finished"),
    pytest.param(pcr_body(P256, account="admin"), None, pc.SERVICE_ACCOUNT_MISMATCH, "runs as web",
                 id="service-account-name"),
    pytest.param(pcr_body(P256, account_uid="2222"), None, pc.SERVICE_ACCOUNT_MISMATCH, "has UID", id="sa-uid"),
    pytest.param(None, facts(no_account=True), pc.SERVICE_ACCOUNT_MISMATCH, "does not exist", id="sa-gone"),
    pytest.param(pcr_body(P256, node="node-2"), None, pc.NODE_MISMATCH, "runs on node node-1", id="node-name"),
    pytest.param(None, facts(pod_body(node=None)), pc.NODE_MISMATCH, "not scheduled", id="unscheduled"),
    pytest.param(pcr_body(P256, node_uid="3333"), None, pc.NODE_MISMATCH, "has UID", id="node-uid"),
    pytest.param(None, facts(no_node=True), pc.NODE_MISMATCH, "does not exist", id="node-gone"),
    pytest.param(None, facts(pod_body(volumes=[])), pc.NO_VOLUME, "it is served by Secret", id="no-volume"),
    pytest.param(None, facts(pod_body(volumes=[certificate_volume("other.dev/signer")])), pc.NO_VOLUME,
                 "with a podCertificate source for signer", id="volume-for-another-signer"),
    pytest.param(pcr_body(P256, stubPKCS10Request=b64(b"\x30\x03\x02\x01\x00")), None, pc.INVALID_PROOF,
                 "not a valid DER PKCS#10", id="not-a-csr"),
    pytest.param(pcr_body(P256, legacy_proof=True, proofOfPossession=b64(proof_of_possession(P256, "someone"))),
                 None, pc.INVALID_PROOF, "over the pod's UID", id="proof-for-another-pod"),
    pytest.param(pcr_body(P256, legacy_proof=True, proofOfPossession=b64(proof_of_possession(OTHER_KEY, POD_UID))),
                 None, pc.INVALID_PROOF, "over the pod's UID", id="proof-by-another-key"),
    pytest.param(None, facts(pod_body(labels={"app": "web"})), pc.NO_IDENTITY, "mtls.dev/inject=true",
                 id="not-opted-in"),
    pytest.param(None, facts(pod_body(labels={c.INJECT_LABEL: "true", "app": "api"})), pc.NO_IDENTITY,
                 "no MTLSIdentity in namespace shop serves pod web-0", id="not-selected"),
])
def test_denials(request_body: dict[str, Any] | None, pod_facts: pc.PodFacts | None, reason: str,
                 message: str) -> None:
    condition, found_reason, found_message = _refusal(decide(request_body, pod_facts))
    assert (condition, found_reason) == (pc.DENIED, reason)
    assert message in found_message


def test_a_tampered_stub_request_is_denied() -> None:
    der = bytearray(stub_pkcs10(P256))
    der[-5] ^= 0x01  # inside the signature
    condition, reason, message = _refusal(decide(pcr_body(P256, stubPKCS10Request=b64(bytes(der)))))
    assert (condition, reason) == (pc.DENIED, pc.INVALID_PROOF)
    assert "signature" in message or "not a valid" in message


def test_a_missing_pod_is_denied() -> None:
    assert _refusal(decide(pod_missing=True))[:2] == (pc.DENIED, pc.POD_NOT_FOUND)


def test_a_terminating_pod_is_denied() -> None:
    pod = pod_body()
    pod["metadata"]["deletionTimestamp"] = "2026-11-27T07:00:00Z"
    assert _refusal(decide(pod_facts=facts(pod)))[1] == pc.POD_NOT_RUNNING


def test_an_identity_for_another_service_account_does_not_serve() -> None:
    identity = identity_body(serviceAccountName="payments")
    assert _refusal(decide(identities=candidates(identity)))[1] == pc.NO_IDENTITY


@pytest.mark.parametrize(("key_type", "private_key", "granted", "hint"), [
    ("ECDSAP256", {}, True, ""),
    ("ECDSAP384", {"algorithm": "ECDSA", "size": 384}, True, ""),
    ("ED25519", {"algorithm": "Ed25519"}, True, ""),
    ("RSA3072", {"algorithm": "RSA", "size": 3072}, True, ""),
    ("ECDSAP384", {}, False, "set keyType: ECDSAP256"),
    ("ECDSAP521", {"algorithm": "ECDSA", "size": 384}, False, "set keyType: ECDSAP384"),
    ("RSA4096", {"algorithm": "RSA", "size": 3072}, False, "set keyType: RSA3072"),
    ("ED25519", {"algorithm": "RSA", "size": 2048}, False, "which the kubelet cannot generate"),
])
def test_key_types(key_type: str, private_key: dict[str, Any], granted: bool, hint: str) -> None:
    result = decide(pcr_body(kubelet_key(key_type)),
                    identities=candidates(identity_body(privateKey=private_key) if private_key else identity_body()))
    if granted:
        assert isinstance(result, pc.Grant)
        return
    condition, reason, message = _refusal(result)
    assert (condition, reason) == (pc.DENIED, pc.UNSUPPORTED_KEY_TYPE)
    assert hint in message


def test_a_bad_headless_name_is_denied() -> None:
    condition, reason, _message = _refusal(decide(pod_facts=facts(pod_body(hostname="Web_0", subdomain="web"))))
    assert (condition, reason) == (pc.DENIED, pc.INVALID_POD)


# --- beginRefreshAt ---------------------------------------------------------------------------------------------

NB = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("lifetime", "renew_before", "jitter", "expected"), [
    (timedelta(hours=24), timedelta(hours=8), 0.0, NB + timedelta(hours=16)),
    (timedelta(hours=24), None, 0.0, NB + timedelta(hours=16)),
    (timedelta(hours=24), timedelta(hours=8), 0.5, NB + timedelta(hours=16) - timedelta(minutes=24)),
    # renewBefore longer than the capped lifetime: a third of the lifetime, as cert-manager does.
    (timedelta(hours=1), timedelta(hours=8), 0.0, NB + timedelta(minutes=40)),
    # A renewBefore of a minute would refresh later than the API allows: 10 minutes before notAfter.
    (timedelta(hours=2), timedelta(minutes=1), 0.0, NB + timedelta(hours=2) - timedelta(minutes=10)),
    # Almost all of the lifetime: never sooner than 10 minutes after notBefore.
    (timedelta(hours=1), timedelta(minutes=59), 0.0, NB + timedelta(minutes=10)),
])
def test_begin_refresh_at(lifetime: timedelta, renew_before: timedelta | None, jitter: float,
                          expected: datetime) -> None:
    assert pc.begin_refresh_at(NB, NB + lifetime, renew_before, jitter) == expected


# --- the status, against the API server's validation -------------------------------------------------------------


def _issue(body: dict[str, Any] | None = None, ca: Any = CA,
           identities: list[pc.Candidate] | None = None) -> tuple[dict[str, Any], pc.PodCertificateRequest, pc.Grant]:
    request = pc.parse_request(body or pcr_body(P256))
    grant = pc.decide(request, facts(), identities or candidates(identity_body(dnsNames=["web.shop.svc"])),
                      trust_domain="cluster.local", cluster_domain="cluster.local")
    assert isinstance(grant, pc.Grant)
    leaf = sign_public_key(ca, grant.leaf, grant.public_key, NOW)
    refresh = pc.begin_refresh_at(leaf.not_before, leaf.not_after, grant.renew_before, 0.3)
    status = pc.issued_status(leaf.chain_pem, leaf.not_before, leaf.not_after, refresh, message="ok", now=NOW)
    return status, request, grant


def test_an_issued_status_passes_the_apis_validation() -> None:
    status, request, grant = _issue()
    assert pc.issued_status_problem(status, request, grant.public_key, NOW) is None
    leaf = x509.load_pem_x509_certificate(status["certificateChain"].encode())
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=24)
    assert status["notBefore"] == "2026-11-27T07:59:00Z"
    assert status["notAfter"] == "2026-11-28T07:59:00Z"
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://cluster.local/ns/shop/sa/web"]
    assert names.get_values_for_type(x509.DNSName) == ["web.shop.svc"]
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert status["conditions"][0]["type"] == pc.ISSUED


def test_a_short_maximum_gives_a_leaf_of_exactly_that_lifetime() -> None:
    status, request, grant = _issue(pcr_body(P256, max_expiration=3600))
    assert pc.issued_status_problem(status, request, grant.public_key, NOW) is None
    assert status["notAfter"] == "2026-11-27T08:59:00Z"


def _broken(change: dict[str, Any]) -> str | None:
    status, request, grant = _issue()
    return pc.issued_status_problem({**status, **change}, request, grant.public_key, NOW)


@pytest.mark.parametrize(("change", "problem"), [
    ({"notBefore": "2026-11-27T07:58:00Z"}, "must be the leaf certificate's"),
    ({"notAfter": "2026-11-28T08:00:00Z"}, "must be the leaf certificate's"),
    ({"beginRefreshAt": "2026-11-27T08:00:00Z"}, "beginRefreshAt must be within"),
    ({"beginRefreshAt": "2026-11-28T07:50:01Z"}, "beginRefreshAt must be within"),
    ({"beginRefreshAt": None}, "must all be set"),
    ({"certificateChain": "junk"}, "not a chain of certificates"),
    ({"conditions": []}, "exactly one terminal condition"),
    ({"conditions": [{"type": "Issued", "reason": "not camel"}]}, "CamelCase"),
])
def test_a_status_the_api_would_refuse_is_caught(change: dict[str, Any], problem: str) -> None:
    found = _broken(change)
    assert found is not None
    assert problem in found


def test_a_leaf_for_another_key_is_caught() -> None:
    status, request, _grant = _issue()
    assert "not issued to the requested public key" in str(
        pc.issued_status_problem(status, request, OTHER_KEY.public_key(), NOW))


def test_a_late_write_is_caught() -> None:
    status, request, grant = _issue()
    assert "within 5 minutes" in str(pc.issued_status_problem(status, request, grant.public_key,
                                                               NOW + timedelta(minutes=6)))


def test_a_ca_about_to_expire_gives_a_too_short_certificate() -> None:
    dying = create_self_signed_ca(NOW - timedelta(days=1), validity=timedelta(days=1, minutes=30))
    status, request, grant = _issue(ca=dying)
    assert "under the API's minimum of 1h" in str(pc.issued_status_problem(status, request, grant.public_key, NOW))


def test_a_longer_lifetime_than_asked_is_caught() -> None:
    status, request, grant = _issue()
    shorter = replace(request, max_expiration=timedelta(hours=2))
    assert "over spec.maxExpirationSeconds" in str(pc.issued_status_problem(status, shorter, grant.public_key, NOW))


def test_refused_status_is_only_the_condition() -> None:
    refusal = pc.Refusal(pc.DENIED, pc.NO_IDENTITY, "x" * 40000)
    status = pc.refused_status(refusal, NOW)
    assert list(status) == ["conditions"]
    (condition,) = status["conditions"]
    assert condition["type"] == "Denied"
    assert condition["status"] == "True"
    assert condition["reason"] == "NoIdentity"
    assert len(condition["message"]) <= 32768
    assert condition["lastTransitionTime"] == "2026-11-27T08:00:00Z"


@pytest.mark.parametrize("reason", pc.REASONS)
def test_every_reason_is_a_condition_reason(reason: str) -> None:
    assert pc._CONDITION_REASON_RE.fullmatch(reason)


def test_base64_of_request_fields_is_standard() -> None:
    body = pcr_body(P256)
    assert base64.b64decode(body["spec"]["stubPKCS10Request"]) == pc.parse_request(body).stub_pkcs10


# --- a CA rotation and the certificates kubelets hold -------------------------------------------------------------


def _issued_request(ca: Any, created: str, *, pod_uid: str = POD_UID) -> dict[str, Any]:
    status, _, _ = _issue(ca=ca)
    body = pcr_body(P256)
    body["metadata"]["creationTimestamp"] = created
    body["spec"]["podUID"] = pod_uid
    body["status"] = status
    return body


def _live_pod(uid: str = POD_UID, **changes: Any) -> Any:
    return replace(pod_info(pod_body(uid=uid)), **changes)


def test_the_pod_certificates_of_another_ca_that_live_pods_hold_are_counted() -> None:
    new = create_self_signed_ca(NOW - timedelta(hours=1))
    old_leaf = _issued_request(CA, "2026-11-27T07:00:00Z")
    held = pc.held_by_kubelets([old_leaf], [_live_pod()], SIGNER, new.cert, NOW)
    assert (held.count, held.pods) == (1, ("shop/web-0",))
    # Due at the leaf's beginRefreshAt, when the kubelet asks again.
    assert held.refresh_by == parse_time(old_leaf["status"]["beginRefreshAt"])
    # Its kubelet asked again and the new CA answered: the newest Issued request is what the pod holds.
    renewed = _issued_request(new, "2026-11-27T07:30:00Z")
    assert pc.held_by_kubelets([old_leaf, renewed], [_live_pod()], SIGNER, new.cert, NOW).count == 0
    # Answered across the switch within one second: the current CA's is taken as the newer.
    same_second = _issued_request(new, "2026-11-27T07:00:00Z")
    assert pc.held_by_kubelets([same_second, old_leaf], [_live_pod()], SIGNER, new.cert, NOW).count == 0


def test_what_no_live_pod_holds_or_has_expired_is_not_waited_for() -> None:
    new = create_self_signed_ca(NOW - timedelta(hours=1))
    old_leaf = _issued_request(CA, "2026-11-27T07:00:00Z")
    finished = _live_pod(finished=True)
    assert pc.held_by_kubelets([old_leaf], [finished], SIGNER, new.cert, NOW).count == 0
    assert pc.held_by_kubelets([old_leaf], [_live_pod(uid="another-pod")], SIGNER, new.cert, NOW).count == 0
    # Another signer's pods and requests are not ours.
    assert pc.held_by_kubelets([old_leaf], [_live_pod()], "example.com/other", new.cert, NOW).count == 0
    # Past the leaf's notAfter nobody presents it: a rotation never waits longer than the last expiry.
    expires = x509.load_pem_x509_certificate(old_leaf["status"]["certificateChain"].encode()).not_valid_after_utc
    assert pc.held_by_kubelets([old_leaf], [_live_pod()], SIGNER, new.cert, expires).count == 0
    # Denied, pending and unreadable answers hold nothing.
    denied = {**pcr_body(P256), "status": pc.refused_status(pc.Refusal(pc.DENIED, "NoIdentity", "no"), NOW)}
    garbled = {**old_leaf, "status": {**old_leaf["status"], "certificateChain": "not PEM"}}
    assert pc.held_by_kubelets([denied, pcr_body(P256), garbled], [_live_pod()], SIGNER, new.cert, NOW).count == 0
