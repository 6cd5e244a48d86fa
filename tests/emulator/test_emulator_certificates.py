"""certificates.k8s.io: PodCertificateRequests and ClusterTrustBundles with kube-apiserver 1.37's rules.

One test per rule ported from pkg/apis/certificates/validation, the registry strategies and the
NodeRestriction plugin's PodCertificateRequest checks (certificates.py says which).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kube_emulator import ApiError, Emulator, certificates

from .conftest import WIDGET_CRD, Http
from .pcr_material import (
    NOW,
    SIGNER,
    b64,
    ca,
    condition,
    ctb,
    issued_status,
    leaf,
    pcr,
    pem,
    proof_of_possession,
    rfc3339,
    spki,
    stub_csr,
)

V1 = "/apis/certificates.k8s.io/v1"
V1BETA1 = "/apis/certificates.k8s.io/v1beta1"
PCRS = f"{V1}/namespaces/default/podcertificaterequests"
BETA_PCRS = f"{V1BETA1}/namespaces/default/podcertificaterequests"
CTBS = f"{V1}/clustertrustbundles"
HOUR = datetime.timedelta(hours=1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emulator(clock: Clock) -> Emulator:
    return Emulator(crds=[WIDGET_CRD], clock=clock)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def issuer() -> Any:
    return ca()


def causes(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c.get("field", ""), c["reason"], c["message"]) for c in body["details"]["causes"]]


async def invalid(http: Http, method: str, path: str, body: Any, **kw: Any) -> list[tuple[str, str, str]]:
    status, answer = await http.request(method, path, body, **kw)
    assert status == 422, answer
    assert answer["reason"] == "Invalid"
    return causes(answer)


async def create_pcr(http: Http, body: dict[str, Any]) -> dict[str, Any]:
    status, created = await http.post(PCRS, body)
    assert status == 201, created
    return dict(created)


async def write_status(http: Http, created: dict[str, Any], status: dict[str, Any]) -> tuple[int, Any]:
    return await http.put(f"{PCRS}/{created['metadata']['name']}/status", {**created, "status": status})


# ------------------------------------------------------------------------------ discovery
async def test_group_serves_v1_preferred_and_v1beta1(http: Http) -> None:
    _, group = await http.get("/apis/certificates.k8s.io")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    for path in (V1, V1BETA1):
        _, resources = await http.get(path)
        by_name = {r["name"]: r for r in resources["resources"]}
        assert by_name["podcertificaterequests"]["namespaced"] is True
        assert by_name["podcertificaterequests"]["kind"] == "PodCertificateRequest"
        assert by_name["podcertificaterequests/status"]["verbs"] == ["get", "patch", "update"]
        assert by_name["clustertrustbundles"]["namespaced"] is False
        assert "clustertrustbundles/status" not in by_name


async def test_nodes_are_served(http: Http) -> None:
    status, node = await http.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                     "metadata": {"name": "node-a"}})
    assert status == 201
    assert node["metadata"]["uid"]
    _, resources = await http.get("/api/v1")
    assert {"nodes", "nodes/status"} <= {r["name"] for r in resources["resources"]}


# ------------------------------------------------------------------------ create / read
async def test_create_resets_the_status_and_every_verb_works(http: Http, key: Any) -> None:
    body = pcr(key)
    body["status"] = {"certificateChain": "forged"}
    created = await create_pcr(http, body)
    assert created["status"] == {}
    assert created["apiVersion"] == "certificates.k8s.io/v1"
    status, beta = await http.get(f"{BETA_PCRS}/req")
    assert status == 200
    assert beta["apiVersion"] == "certificates.k8s.io/v1beta1"
    assert beta["spec"] == created["spec"]
    _, listed = await http.get(PCRS, fieldSelector=f"spec.signerName={SIGNER},spec.nodeName=node-a")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["req"]
    events = await http.watch(PCRS, count=1)
    assert events[0]["type"] == "ADDED"
    status, patched = await http.patch(f"{PCRS}/req", {"metadata": {"labels": {"a": "b"}}})
    assert status == 200
    assert patched["metadata"]["labels"] == {"a": "b"}
    status, _ = await http.delete(f"{PCRS}/req")
    assert status == 200
    status, _ = await http.get(f"{PCRS}/req")
    assert status == 404


async def test_v1_neither_shows_nor_takes_the_v1beta1_key_fields(http: Http, key: Any) -> None:
    body = pcr(None, version="v1beta1", pkixPublicKey=b64(spki(key)),
               proofOfPossession=b64(proof_of_possession(key, "pod-uid")))
    status, created = await http.post(BETA_PCRS, body)
    assert status == 201, created
    assert created["spec"]["pkixPublicKey"] == b64(spki(key))
    _, shown = await http.get(f"{PCRS}/req")
    assert "pkixPublicKey" not in shown["spec"]
    assert "proofOfPossession" not in shown["spec"]
    found = await invalid(http, "POST", PCRS, pcr(None, name="v1", pkixPublicKey=b64(spki(key)),
                                                   proofOfPossession=b64(proof_of_possession(key, "pod-uid"))))
    assert found == [("spec", "FieldValueInvalid", "Invalid value: exactly one of (stubPKCS10Request) or "
                                                   "(pkixPublicKey, proofOfPossession) must be set")]


async def test_bytes_that_are_not_base64_are_a_400(http: Http) -> None:
    status, body = await http.post(PCRS, pcr(None, stubPKCS10Request="not base64!"))
    assert status == 400
    assert body["message"].startswith('PodCertificateRequest in version "v1" cannot be handled as a '
                                      "PodCertificateRequest")


# ---------------------------------------------------------------------- create validation
@pytest.mark.parametrize(("signer", "expected"), [
    pytest.param("", [("spec.signerName", "FieldValueRequired", "Required value")], id="required"),
    pytest.param("mtls.dev", [("spec.signerName", "FieldValueInvalid", 'Invalid value: "mtls.dev": must be a fully '
                                                                       "qualified domain and path of the form "
                                                                       "'example.com/signer-name'")], id="no-path"),
    pytest.param("mtls/spiffe", [("spec.signerName", "FieldValueInvalid", 'Invalid value: "mtls": should be a '
                                                                          "domain with at least two segments "
                                                                          "separated by dots")], id="one-label"),
    pytest.param("MTLS.dev/spiffe", [("spec.signerName", "FieldValueInvalid", 'Invalid value: "MTLS.dev": '
                                      'validating label "MTLS": a lowercase RFC 1123 label must consist of lower '
                                      "case alphanumeric characters or '-', and must start and end with an "
                                      "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                                      "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")], id="bad-domain-label"),
    pytest.param("mtls.dev/Spiffe", None, id="bad-path-label"),
    pytest.param("mtls.dev/" + ".".join(["a" * 60] * 10), None, id="too-long"),
])
async def test_signer_name_format(http: Http, key: Any, signer: str, expected: Any) -> None:
    found = await invalid(http, "POST", PCRS, pcr(key, signer=signer))
    if expected is not None:
        assert found == expected
    else:
        assert [f for f, _, _ in found]
        assert all(f == "spec.signerName" for f, _, _ in found)
    if len(signer) > 571:
        assert ("spec.signerName", "FieldValueTooLong", "Too long: may not be more than 571 bytes") in found


@pytest.mark.parametrize("field", ["podName", "serviceAccountName", "nodeName"])
async def test_names_are_dns_subdomains(http: Http, key: Any, field: str) -> None:
    found = await invalid(http, "POST", PCRS, pcr(key, **{field: "Not_A_Name"}))
    assert [(f, r) for f, r, _ in found] == [(f"spec.{field}", "FieldValueInvalid")]
    assert found[0][2].startswith('Invalid value: "Not_A_Name": a lowercase RFC 1123 subdomain')


@pytest.mark.parametrize("field", ["podUID", "serviceAccountUID", "nodeUID"])
async def test_uids_are_set_and_at_most_128_bytes(http: Http, key: Any, field: str) -> None:
    assert await invalid(http, "POST", PCRS, pcr(key, **{field: ""})) == [
        (f"spec.{field}", "FieldValueInvalid", 'Invalid value: "": must not be empty')]
    assert await invalid(http, "POST", PCRS, pcr(key, **{field: "u" * 129})) == [
        (f"spec.{field}", "FieldValueTooLong", "Too long: may not be more than 128 bytes")]


async def test_max_expiration_seconds_defaults_to_a_day(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key, maxExpirationSeconds=None))
    assert created["spec"]["maxExpirationSeconds"] == 86400


def test_max_expiration_seconds_is_required_after_defaulting(key: Any) -> None:
    # Unreachable through the API (defaulting sets it first); the validation itself still requires it.
    body = pcr(key)
    del body["spec"]["maxExpirationSeconds"]
    assert [str(p) for p in certificates.validate_create(body)] == [
        "spec.maxExpirationSeconds: Required value: must be set"]


@pytest.mark.parametrize(("signer", "seconds", "bounds"), [
    ("mtls.dev/spiffe", 3599, "[3600, 7862400]"),
    ("mtls.dev/spiffe", 7862401, "[3600, 7862400]"),
    ("kubernetes.io/kube-apiserver-client-pod", 86401, "[3600, 86400]"),
    ("foo.kubernetes.io/signer", 86401, "[3600, 86400]"),
])
async def test_max_expiration_seconds_bounds(http: Http, key: Any, signer: str, seconds: int, bounds: str) -> None:
    assert await invalid(http, "POST", PCRS, pcr(key, signer=signer, maxExpirationSeconds=seconds)) == [
        ("spec.maxExpirationSeconds", "FieldValueInvalid", f"Invalid value: {seconds}: must be in the range {bounds}")]


async def test_max_expiration_seconds_upper_bounds_are_accepted(http: Http, key: Any) -> None:
    status, _ = await http.post(PCRS, pcr(key, name="a", maxExpirationSeconds=7862400))
    assert status == 201
    status, _ = await http.post(PCRS, pcr(key, name="b", signer="kubernetes.io/x", maxExpirationSeconds=86400))
    assert status == 201


async def test_unverified_user_annotations_keys_are_domain_prefixed(http: Http, key: Any) -> None:
    found = await invalid(http, "POST", PCRS, pcr(key, unverifiedUserAnnotations={"plain": "x"}))
    assert found == [("spec.unverifiedUserAnnotations", "FieldValueInvalid",
                      'Invalid value: "plain": must be a domain-prefixed key (such as "acme.io/foo")')]
    status, _ = await http.post(PCRS, pcr(key, unverifiedUserAnnotations={"Acme.io/Foo": "x"}))
    assert status == 201


async def test_exactly_one_way_of_naming_the_key(http: Http, key: Any) -> None:
    message = ("Invalid value: exactly one of (stubPKCS10Request) or (pkixPublicKey, proofOfPossession) must be set")
    assert await invalid(http, "POST", BETA_PCRS, pcr(None, version="v1beta1")) == [
        ("spec", "FieldValueInvalid", message)]
    both = pcr(key, version="v1beta1", pkixPublicKey=b64(spki(key)))
    assert await invalid(http, "POST", BETA_PCRS, both) == [("spec", "FieldValueInvalid", message)]


async def test_stub_request_at_most_10_kib(http: Http) -> None:
    assert await invalid(http, "POST", PCRS, pcr(None, stubPKCS10Request=b64(b"x" * 10241))) == [
        ("spec.stubPKCS10Request", "FieldValueTooLong", "Too long: may not be more than 10240 bytes")]


async def test_stub_request_must_parse(http: Http) -> None:
    assert await invalid(http, "POST", PCRS, pcr(None, stubPKCS10Request=b64(b"garbage"))) == [
        ("spec.stubPKCS10Request", "FieldValueInvalid", "Invalid value: must be a valid PKCS#10 CSR")]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: rsa.generate_private_key(65537, 2048), 'Invalid value: "2048-bit modulus": RSA keys must have modulus '
                                                     "size 3072 or 4096"),
    (lambda: ec.generate_private_key(ec.SECP224R1()), 'Invalid value: "curve P-224": elliptic public keys must use '
                                                       "curve P256, P384, or P521"),
])
async def test_stub_request_key_types(http: Http, make: Any, message: str) -> None:
    assert await invalid(http, "POST", PCRS, pcr(make())) == [("spec.stubPKCS10Request", "FieldValueInvalid", message)]


@pytest.mark.parametrize("make", [lambda: ed25519.Ed25519PrivateKey.generate(),
                                  lambda: ec.generate_private_key(ec.SECP384R1()),
                                  lambda: ec.generate_private_key(ec.SECP521R1())],
                         ids=["ed25519", "p384", "p521"])
async def test_stub_request_accepted_key_types(http: Http, make: Any) -> None:
    status, body = await http.post(PCRS, pcr(make()))
    assert status == 201, body


async def test_stub_request_signature_must_verify(http: Http, key: Any) -> None:
    der = bytearray(stub_csr(key))
    der[-3] ^= 0x55  # inside the signature
    assert await invalid(http, "POST", PCRS, pcr(None, stubPKCS10Request=b64(bytes(der)))) == [
        ("spec.stubPKCS10Request", "FieldValueInvalid", "Invalid value: invalid signature")]


def _beta(key: Any, **spec: Any) -> dict[str, Any]:
    fields = {"pkixPublicKey": b64(spki(key)), "proofOfPossession": b64(proof_of_possession(key, "pod-uid"))}
    fields.update(spec)
    return pcr(None, version="v1beta1", **fields)


@pytest.mark.parametrize("make", [lambda: ed25519.Ed25519PrivateKey.generate(),
                                  lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: rsa.generate_private_key(65537, 3072)], ids=["ed25519", "p256", "rsa3072"])
async def test_proof_of_possession_accepted(http: Http, make: Any) -> None:
    status, body = await http.post(BETA_PCRS, _beta(make()))
    assert status == 201, body


async def test_proof_of_possession_must_verify(http: Http, key: Any) -> None:
    other = proof_of_possession(key, "another-pod")
    assert await invalid(http, "POST", BETA_PCRS, _beta(key, proofOfPossession=b64(other))) == [
        ("spec.proofOfPossession", "FieldValueInvalid", "Invalid value: could not verify proof-of-possession "
                                                        "signature")]


async def test_pkix_key_and_proof_sizes(http: Http, key: Any) -> None:
    assert await invalid(http, "POST", BETA_PCRS, _beta(key, pkixPublicKey=b64(b"k" * 10241))) == [
        ("spec.pkixPublicKey", "FieldValueTooLong", "Too long: may not be more than 10240 bytes")]
    assert await invalid(http, "POST", BETA_PCRS, _beta(key, proofOfPossession=b64(b"p" * 10241))) == [
        ("spec.proofOfPossession", "FieldValueTooLong", "Too long: may not be more than 10240 bytes")]


async def test_pkix_key_must_parse(http: Http, key: Any) -> None:
    assert await invalid(http, "POST", BETA_PCRS, _beta(key, pkixPublicKey=b64(b"junk"))) == [
        ("spec.pkixPublicKey", "FieldValueInvalid", 'Invalid value: "anVuaw==": must be a valid PKIX-serialized '
                                                    "public key")]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ec.generate_private_key(ec.SECP224R1()), 'Invalid value: "curve P-224": elliptic public keys must use '
                                                       "curve P256 or P384"),
    (lambda: rsa.generate_private_key(65537, 2048), 'Invalid value: "2048-bit modulus": RSA keys must have modulus '
                                                     "size 3072 or 4096"),
])
async def test_pkix_key_types(http: Http, make: Any, message: str) -> None:
    assert await invalid(http, "POST", BETA_PCRS, _beta(make())) == [("spec.pkixPublicKey", "FieldValueInvalid",
                                                                      message)]


# ------------------------------------------------------------------------ update (spec)
async def test_spec_is_immutable(http: Http, key: Any) -> None:
    await create_pcr(http, pcr(key))
    found = await invalid(http, "PATCH", f"{PCRS}/req", {"spec": {"podName": "other"}},
                          content_type="application/merge-patch+json")
    assert len(found) == 1
    field, reason, message = found[0]
    assert (field, reason) == ("spec", "FieldValueInvalid")
    assert message.startswith('Invalid value: {"SignerName":"mtls.dev/spiffe","PodName":"other",')
    assert message.endswith("}: field is immutable")


async def test_update_keeps_the_status(http: Http, key: Any, issuer: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, updated = await http.put(f"{PCRS}/req", {**created, "status": issued_status(leaf(issuer, key))})
    assert status == 200, updated
    assert updated["status"] == {}


async def test_put_needs_a_resource_version(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    del created["metadata"]["resourceVersion"]
    assert await invalid(http, "PUT", f"{PCRS}/req", created) == [
        ("metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0: must be specified for an update")]


# ------------------------------------------------------------------------- status updates
async def test_issued_status_is_accepted_with_times_normalised(http: Http, key: Any, issuer: Any) -> None:
    created = await create_pcr(http, pcr(key))
    cert = leaf(issuer, key)
    written = issued_status(cert, notBefore=rfc3339(NOW).replace("Z", "+00:00"))
    status, body = await write_status(http, created, written)
    assert status == 200, body
    assert body["status"]["notBefore"] == rfc3339(NOW)
    assert body["status"]["certificateChain"] == pem(cert)
    assert body["spec"] == created["spec"]


async def test_status_write_changes_neither_spec_nor_metadata(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    changed = {**created, "metadata": {**created["metadata"], "labels": {"x": "y"}},
               "spec": {**created["spec"], "podName": "other"}, "status": {"conditions": [condition("Denied")]}}
    status, body = await http.put(f"{PCRS}/req/status", changed)
    assert status == 200, body
    assert body["spec"] == created["spec"]
    assert "labels" not in body["metadata"]


async def test_condition_types_are_issued_denied_or_failed(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, body = await write_status(http, created, {"conditions": [condition("Ready")]})
    assert status == 422
    assert causes(body) == [("status.conditions.[0].type", "FieldValueNotSupported",
                             'Unsupported value: "Ready": supported values: "Issued", "Denied", "Failed"')]


async def test_at_most_one_terminal_condition(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, body = await write_status(http, created, {"conditions": [condition("Denied"), condition("Failed")]})
    assert status == 422
    assert causes(body) == [("status.conditions.[1].type", "FieldValueInvalid",
                             'Invalid value: "Failed": There may be at most one condition with type "Issued", '
                             '"Denied", or "Failed"')]


async def test_terminal_condition_status_is_true(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, body = await write_status(http, created, {"conditions": [condition("Denied", status="False")]})
    assert status == 422
    assert causes(body) == [("status.conditions.[0].status", "FieldValueNotSupported",
                             'Unsupported value: "False": supported values: "True"')]


async def test_conditions_are_valid_metav1_conditions(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    bad = condition("Denied", reason="")
    del bad["lastTransitionTime"]
    status, body = await write_status(http, created, {"conditions": [bad]})
    assert status == 422
    assert causes(body) == [("status.conditions[0].lastTransitionTime", "FieldValueRequired", "Required value"),
                            ("status.conditions[0].reason", "FieldValueRequired", "Required value")]
    status, body = await write_status(http, created, {"conditions": [condition("Denied", reason="no spaces")]})
    assert status == 422
    assert causes(body)[0][:2] == ("status.conditions[0].reason", "FieldValueInvalid")
    assert causes(body)[0][2].startswith('Invalid value: "no spaces": a condition reason must start with')
    long_message = condition("Denied", message="m" * (32 * 1024 + 1))
    status, body = await write_status(http, created, {"conditions": [long_message]})
    assert causes(body) == [("status.conditions[0].message", "FieldValueTooLong",
                             "Too long: may not be more than 32768 bytes")]


async def test_duplicate_condition_types(http: Http, key: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, body = await write_status(http, created, {"conditions": [condition("Denied"), condition("Denied")]})
    assert status == 422
    assert ("status.conditions[1]", "FieldValueDuplicate", 'Duplicate value: "Denied"') in causes(body)


async def test_denied_or_failed_carry_only_conditions(http: Http, key: Any, issuer: Any) -> None:
    created = await create_pcr(http, pcr(key))
    for kind in ("Denied", "Failed"):
        status, body = await write_status(http, created, {"conditions": [condition(kind)],
                                                          "certificateChain": pem(leaf(issuer, key))})
        assert status == 422
        assert causes(body) == [("status", "FieldValueInvalid", "Invalid value: non-condition status fields must be "
                                                                "empty when denying or failing the "
                                                                "PodCertificateRequest")]


async def test_terminal_status_never_changes(http: Http, key: Any, issuer: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, denied = await write_status(http, created, {"conditions": [condition("Denied", "NoIdentity")]})
    assert status == 200, denied
    status, body = await write_status(http, denied, issued_status(leaf(issuer, key)))
    assert status == 422
    assert causes(body) == [("status", "FieldValueInvalid", "Invalid value: immutable after PodCertificateRequest is "
                                                            "issued, denied, or failed")]
    status, same = await write_status(http, denied, denied["status"])
    assert status == 200
    assert same["metadata"]["resourceVersion"] == denied["metadata"]["resourceVersion"]


async def test_status_is_immutable_unless_terminal(http: Http, key: Any, issuer: Any) -> None:
    created = await create_pcr(http, pcr(key))
    status, body = await write_status(http, created, {"certificateChain": pem(leaf(issuer, key))})
    assert status == 422
    assert causes(body) == [("status", "FieldValueInvalid", 'Invalid value: status is immutable unless transitioning '
                                                            'to "Issued", "Denied", or "Failed"')]


async def _issue(http: Http, key: Any, status: dict[str, Any], name: str = "req",
                 **spec: Any) -> list[tuple[str, str, str]]:
    created = await create_pcr(http, pcr(key, name=name, **spec))
    code, body = await write_status(http, created, status)
    assert code == 422, body
    return causes(body)


async def test_chain_at_most_100_kib(http: Http, key: Any, issuer: Any) -> None:
    chain = pem(leaf(issuer, key)) + "x" * 100 * 1024
    assert await _issue(http, key, issued_status(leaf(issuer, key), chain=chain)) == [
        ("status.certificateChain", "FieldValueTooLong", "Too long: may not be more than 102400 bytes")]


async def test_chain_has_a_certificate(http: Http, key: Any, issuer: Any) -> None:
    found = await _issue(http, key, issued_status(leaf(issuer, key), chain="no PEM here"))
    assert found == [("status.certificateChain", "FieldValueInvalid", 'Invalid value: "no PEM here": issued '
                                                                      "certificate chain must contain at least one "
                                                                      "certificate")]


async def test_chain_leaf_is_a_certificate_block(http: Http, key: Any, issuer: Any) -> None:
    chain = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    found = await _issue(http, key, issued_status(leaf(issuer, key), chain=chain))
    assert [(f, m.rpartition(": ")[2]) for f, _, m in found] == [
        ("status.certificateChain", "issued certificate chain must consist entirely of CERTIFICATE PEM blocks")]


async def test_chain_leaf_parses(http: Http, key: Any, issuer: Any) -> None:
    chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    found = await _issue(http, key, issued_status(leaf(issuer, key), chain=chain))
    assert found[0][2].endswith(": leaf certificate does not parse as valid X.509")


async def test_leaf_is_issued_to_the_requested_key(http: Http, key: Any, issuer: Any) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    found = await _issue(http, key, issued_status(leaf(issuer, other)))
    assert found[0][2].endswith(": leaf certificate was not issued to the requested public key")


async def test_leaf_dns_names_are_sane(http: Http, key: Any, issuer: Any) -> None:
    found = await _issue(http, key, issued_status(leaf(issuer, key, dns_names=("a..b", "c."))))
    assert found[:2] == [
        ("status.certificateChain", "FieldValueInvalid", "Invalid value: \"a..b\": leaf certificate's DNSName should "
                                                         "not contain '..'"),
        ("status.certificateChain", "FieldValueInvalid", "Invalid value: \"c.\": leaf certificate's DNSName should "
                                                         "not start or end with '.'"),
    ]


async def test_times_are_required(http: Http, key: Any, issuer: Any) -> None:
    status = issued_status(leaf(issuer, key), notBefore=None, notAfter=None, beginRefreshAt=None)
    assert await _issue(http, key, status) == [
        ("status.notBefore", "FieldValueRequired", "Required value: must be present and consistent with the issued "
                                                   "certificate"),
        ("status.notAfter", "FieldValueRequired", "Required value: must be present and consistent with the issued "
                                                  "certificate"),
        ("status.beginRefreshAt", "FieldValueRequired", "Required value: must be present and in the range "
                                                        "[notbefore+10min, notafter-10min]"),
    ]


async def test_not_before_equals_the_leaf(http: Http, key: Any, issuer: Any) -> None:
    moved = rfc3339(NOW + datetime.timedelta(seconds=1))
    assert await _issue(http, key, issued_status(leaf(issuer, key), notBefore=moved)) == [
        ("status.notBefore", "FieldValueInvalid", f'Invalid value: "{moved}": must be set to the NotBefore time '
                                                  "encoded in the leaf certificate")]


async def test_not_before_within_5_minutes_of_the_clock(http: Http, key: Any, issuer: Any, clock: Clock) -> None:
    clock.now = NOW + datetime.timedelta(minutes=5)
    assert await _issue(http, key, issued_status(leaf(issuer, key))) == [
        ("status.notBefore", "FieldValueInvalid", f'Invalid value: "{rfc3339(NOW)}": must be set to within 5 minutes '
                                                  "of kube-apiserver's current time")]
    clock.now = NOW + datetime.timedelta(minutes=4, seconds=59)
    created = await create_pcr(http, pcr(key, name="ok"))
    status, _ = await write_status(http, created, issued_status(leaf(issuer, key)))
    assert status == 200


async def test_not_after_equals_the_leaf(http: Http, key: Any, issuer: Any) -> None:
    moved = rfc3339(NOW + datetime.timedelta(hours=23))
    assert await _issue(http, key, issued_status(leaf(issuer, key), notAfter=moved)) == [
        ("status.notAfter", "FieldValueInvalid", f'Invalid value: "{moved}": must be set to the NotAfter time encoded '
                                                 "in the leaf certificate")]


async def test_lifetime_at_least_an_hour(http: Http, key: Any, issuer: Any) -> None:
    cert = leaf(issuer, key, lifetime=datetime.timedelta(minutes=59))
    assert await _issue(http, key, issued_status(cert)) == [
        ("status.certificateChain", "FieldValueInvalid", "Invalid value: 3540000000000: leaf certificate lifetime must "
                                                         "be >= 1 hour")]


async def test_lifetime_at_most_max_expiration_seconds(http: Http, key: Any, issuer: Any) -> None:
    cert = leaf(issuer, key, lifetime=2 * HOUR + datetime.timedelta(seconds=1))
    assert await _issue(http, key, issued_status(cert), maxExpirationSeconds=7200) == [
        ("status.certificateChain", "FieldValueInvalid", "Invalid value: 7201000000000: leaf certificate lifetime must "
                                                         "be <= spec.maxExpirationSeconds (7200)")]


async def test_begin_refresh_at_range(http: Http, key: Any, issuer: Any) -> None:
    cert = leaf(issuer, key)
    early = rfc3339(NOW + datetime.timedelta(minutes=9, seconds=59))
    assert await _issue(http, key, issued_status(cert, beginRefreshAt=early)) == [
        ("status.beginRefreshAt", "FieldValueInvalid", f'Invalid value: "{early}": must be at least 10 minutes after '
                                                       "status.notBefore")]
    late = rfc3339(NOW + datetime.timedelta(hours=24) - datetime.timedelta(minutes=9, seconds=59))
    found = await _issue(http, key, issued_status(cert, beginRefreshAt=late), name="late")
    assert found == [("status.beginRefreshAt", "FieldValueInvalid", f'Invalid value: "{late}": must be at least 10 '
                                                                    "minutes before status.notAfter")]


async def test_begin_refresh_at_bounds_are_inclusive(http: Http, key: Any, issuer: Any) -> None:
    cert = leaf(issuer, key)
    for name, moment in (("a", NOW + datetime.timedelta(minutes=10)),
                         ("b", NOW + datetime.timedelta(hours=24) - datetime.timedelta(minutes=10))):
        created = await create_pcr(http, pcr(key, name=name))
        status, body = await write_status(http, created, issued_status(cert, beginRefreshAt=rfc3339(moment)))
        assert status == 200, body


async def test_rest_of_the_chain_are_certificates(http: Http, key: Any, issuer: Any) -> None:
    cert = leaf(issuer, key)
    chain = pem(cert) + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    found = await _issue(http, key, issued_status(cert, chain=chain))
    assert found[0][2].endswith(": issued certificate chain must consist entirely of CERTFICATE PEM blocks")
    chain = pem(cert) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    found = await _issue(http, key, issued_status(cert, chain=chain), name="second")
    assert found[0][2].endswith(": intermediate certificate does not parse as valid X.509")
    created = await create_pcr(http, pcr(key, name="full"))
    status, _ = await write_status(http, created, issued_status(cert, chain=pem(cert, issuer[0])))
    assert status == 200


async def test_issued_status_for_a_v1beta1_pkix_key(http: Http, key: Any, issuer: Any) -> None:
    status, created = await http.post(BETA_PCRS, _beta(key))
    assert status == 201
    code, body = await http.put(f"{BETA_PCRS}/req/status", {**created, "status": issued_status(leaf(issuer, key))})
    assert code == 200, body


# ------------------------------------------------------------------------ ClusterTrustBundles
async def test_ctb_created_at_v1_read_at_v1beta1(http: Http, issuer: Any) -> None:
    status, body = await http.post(CTBS, ctb("mtls.dev:spiffe:bundle", pem(issuer[0])))
    assert status == 201, body
    status, beta = await http.get(f"{V1BETA1}/clustertrustbundles/mtls.dev:spiffe:bundle")
    assert status == 200
    assert beta["apiVersion"] == "certificates.k8s.io/v1beta1"
    _, listed = await http.get(CTBS, fieldSelector=f"spec.signerName={SIGNER}")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["mtls.dev:spiffe:bundle"]


async def test_ctb_name_has_the_signer_prefix(http: Http, issuer: Any) -> None:
    assert await invalid(http, "POST", CTBS, ctb("bundle", pem(issuer[0]))) == [
        ("metadata.name", "FieldValueInvalid", 'Invalid value: "bundle": ClusterTrustBundle for signerName '
                                               "mtls.dev/spiffe must be named with prefix mtls.dev:spiffe:")]
    found = await invalid(http, "POST", CTBS, ctb("mtls.dev:spiffe:Bad_Suffix", pem(issuer[0])))
    assert found[0][:2] == ("metadata.name", "FieldValueInvalid")


async def test_ctb_without_signer_has_no_colon(http: Http, issuer: Any) -> None:
    assert await invalid(http, "POST", CTBS, ctb("a:b", pem(issuer[0]), signer=None)) == [
        ("metadata.name", "FieldValueInvalid", 'Invalid value: "a:b": ClusterTrustBundle without signer name must not '
                                               'have ":" in its name')]
    status, _ = await http.post(CTBS, ctb("plain", pem(issuer[0]), signer=None))
    assert status == 201


async def test_ctb_signer_name_format(http: Http, issuer: Any) -> None:
    found = await invalid(http, "POST", CTBS, ctb("nodomain:bundle", pem(issuer[0]), signer="nodomain"))
    assert found == [("spec.signerName", "FieldValueInvalid", 'Invalid value: "nodomain": must be a fully qualified '
                                                              "domain and path of the form 'example.com/signer-name'")]


@pytest.mark.parametrize(("bundle", "message"), [
    pytest.param("", "at least one trust anchor must be provided", id="empty"),
    pytest.param("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                 "entry 0 has bad block type: PRIVATE KEY", id="block-type"),
    pytest.param("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                 "entry 0 does not parse as X.509", id="not-x509"),
])
async def test_trust_bundle_entries(http: Http, bundle: str, message: str) -> None:
    assert await invalid(http, "POST", CTBS, ctb("mtls.dev:spiffe:b", bundle)) == [
        ("spec.trustBundle", "FieldValueInvalid", f'Invalid value: "<value omitted>": {message}')]


async def test_trust_bundle_blocks_have_no_headers(http: Http, issuer: Any) -> None:
    lines = pem(issuer[0]).split("\n")
    with_headers = "\n".join([lines[0], "Proc-Type: 4,ENCRYPTED", "", *lines[1:]])
    assert await invalid(http, "POST", CTBS, ctb("mtls.dev:spiffe:b", with_headers)) == [
        ("spec.trustBundle", "FieldValueInvalid", 'Invalid value: "<value omitted>": entry 0 has PEM block headers')]


@pytest.mark.parametrize("kwargs", [{"is_ca": False}, {"basic_constraints": False}], ids=["ca-false", "no-extension"])
async def test_trust_bundle_entries_are_cas(http: Http, kwargs: dict[str, bool]) -> None:
    not_ca, _ = ca("not a CA", **kwargs)
    assert await invalid(http, "POST", CTBS, ctb("mtls.dev:spiffe:b", pem(not_ca))) == [
        ("spec.trustBundle", "FieldValueInvalid", 'Invalid value: "<value omitted>": entry 0 does not have the CA bit '
                                                  "set")]


async def test_trust_bundle_without_duplicates(http: Http, issuer: Any) -> None:
    other, _ = ca("other")
    bundle = pem(issuer[0], other, issuer[0])
    assert await invalid(http, "POST", CTBS, ctb("mtls.dev:spiffe:b", bundle)) == [
        ("spec.trustBundle", "FieldValueInvalid", 'Invalid value: "<value omitted>": duplicate trust anchor (indices '
                                                  "[0 2])")]


def test_trust_bundle_at_most_1_mib(emulator: Emulator, issuer: Any) -> None:
    with pytest.raises(ApiError) as caught:
        emulator.create(ctb("mtls.dev:spiffe:b", pem(issuer[0]) + "x" * 1024 * 1024))
    assert causes(caught.value.status) == [
        ("spec.trustBundle", "FieldValueTooLong", "Too long: may not be more than 1048576 bytes")]


async def test_ctb_signer_name_is_immutable(http: Http, issuer: Any) -> None:
    _, created = await http.post(CTBS, ctb("mtls.dev:spiffe:b", pem(issuer[0])))
    created["spec"]["signerName"] = "mtls.dev/other"
    found = await invalid(http, "PUT", f"{CTBS}/mtls.dev:spiffe:b", created)
    assert ("spec.signerName", "FieldValueInvalid", 'Invalid value: "mtls.dev/other": field is immutable') in found


async def test_ctb_bundle_update_is_validated(http: Http, issuer: Any) -> None:
    _, _created = await http.post(CTBS, ctb("mtls.dev:spiffe:b", pem(issuer[0])))
    other, _ = ca("next CA")
    status, updated = await http.patch(f"{CTBS}/mtls.dev:spiffe:b", {"spec": {"trustBundle": pem(issuer[0], other)}})
    assert status == 200
    assert updated["spec"]["trustBundle"] == pem(issuer[0], other)
    found = await invalid(http, "PATCH", f"{CTBS}/mtls.dev:spiffe:b", {"spec": {"trustBundle": ""}},
                          content_type="application/merge-patch+json")
    assert found == [("spec.trustBundle", "FieldValueInvalid", 'Invalid value: "<value omitted>": at least one trust '
                                                               "anchor must be provided")]


# --------------------------------------------------------------------------- node restriction
def _cluster(emulator: Emulator, *, volume_signer: str = SIGNER, mirror: bool = False) -> dict[str, str]:
    node = emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}})
    annotations = {"kubernetes.io/config.mirror": "x"} if mirror else {}
    pod = emulator.create({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": "default",
                                                        "annotations": annotations},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "i"}],
                 "volumes": [{"name": "mtls", "projected": {"sources": [
                     {"podCertificate": {"signerName": volume_signer, "keyType": "ECDSAP256",
                                         "credentialBundlePath": "credentialbundle.pem"}}]}}]},
    })
    sa = emulator.get("v1", "serviceaccounts", "default", "default")
    assert sa is not None
    return {"podUID": pod["metadata"]["uid"], "nodeUID": node["metadata"]["uid"],
            "serviceAccountUID": sa["metadata"]["uid"]}


def _as_node_error(emulator: Emulator, body: dict[str, Any], node: str = "node-a") -> ApiError:
    with pytest.raises(ApiError) as caught:
        emulator.create(body, as_node=node)
    return caught.value


def test_node_creates_a_request_for_its_pod(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator)
    created = emulator.create(pcr(key, **uids), as_node="node-a")
    assert created["metadata"]["name"] == "req"


def test_node_may_only_name_itself(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator)
    error = _as_node_error(emulator, pcr(key, **uids), node="node-b")
    assert (error.code, error.reason) == (403, "Forbidden")
    assert error.message == ('podcertificaterequests.certificates.k8s.io "req" is forbidden: '
                             'PodCertificateRequest.Spec.NodeName="node-a", which is not the requesting node "node-b"')


def test_node_must_exist_with_its_uid(emulator: Emulator, key: Any) -> None:
    error = _as_node_error(emulator, pcr(key))
    assert error.code == 500
    assert error.message == ('while retrieving node "node-a" named in the PodCertificateRequest: nodes "node-a" '
                             "not found")
    uids = _cluster(emulator)
    error = _as_node_error(emulator, pcr(key, **{**uids, "nodeUID": "stale"}))
    assert error.code == 500
    assert "inconsistent with the running node" in error.message


def test_pod_must_exist_with_its_uid(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator)
    error = _as_node_error(emulator, pcr(key, **{**uids, "podName": "ghost"}))
    assert error.code == 500
    assert error.message.startswith('while retrieving pod "default/ghost" named in the PodCertificateRequest')
    error = _as_node_error(emulator, pcr(key, **{**uids, "podUID": "stale"}))
    assert error.code == 500
    assert "which differs from running pod" in error.message


def test_pod_must_run_on_the_node(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator)
    emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}})
    node_b = emulator.get("v1", "nodes", "node-b")
    assert node_b is not None
    error = _as_node_error(emulator, pcr(key, **{**uids, "nodeName": "node-b", "nodeUID": node_b["metadata"]["uid"]}),
                           node="node-b")
    assert error.code == 403
    assert error.message.endswith('pod "default/app" is not running on node "node-b" named in the '
                                  "PodCertificateRequest")


def test_mirror_pods_get_no_certificates(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator, mirror=True)
    error = _as_node_error(emulator, pcr(key, **uids))
    assert error.code == 403
    assert error.message.endswith('pod "default/app" is a mirror pod')


def test_service_account_is_the_pods(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator)
    error = _as_node_error(emulator, pcr(key, **{**uids, "serviceAccountName": "other"}))
    assert error.code == 403
    assert error.message.endswith('contains serviceAccountName ("other") that differs from running pod ("default")')
    error = _as_node_error(emulator, pcr(key, **{**uids, "serviceAccountUID": "stale"}))
    assert error.code == 500
    assert "which differs from the running service account" in error.message


def test_pod_mounts_a_volume_for_the_signer(emulator: Emulator, key: Any) -> None:
    uids = _cluster(emulator, volume_signer="other.dev/signer")
    error = _as_node_error(emulator, pcr(key, **uids))
    assert error.code == 403
    assert error.message.endswith('pod "default/app" does not mount a podCertificate projected volume for signer '
                                  '"mtls.dev/spiffe"')


def test_as_node_is_modelled_for_requests_only(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="not modelled"):
        emulator.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, as_node="node-a")
