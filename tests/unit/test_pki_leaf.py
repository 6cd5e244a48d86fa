"""Leaf issuance: X.509-SVID properties, every CA key type signing every leaf key type, and facts."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtls_operator.errors import CAError, ChainError, PKIError
from mtls_operator.models import KeyAlgorithm, KeySpec, Usage
from mtls_operator.pki import (
    CertificateAuthority,
    LeafRequest,
    create_intermediate_ca,
    create_self_signed_ca,
    fingerprint,
    issue_leaf,
    key_matches_certificate,
    load_private_key_pem,
    parse_pem_certificates,
    validate_spiffe_id,
    verify_leaf,
)

from .pki_cases import ALL_SPECS, NOW

SPIFFE_ID = "spiffe://cluster.local/ns/shop/sa/payments"
REQUEST = LeafRequest(
    spiffe_id=SPIFFE_ID,
    dns_names=("payments", "payments.shop.svc", "*.payments.shop.svc.cluster.local"),
    usages=frozenset({Usage.SERVER, Usage.CLIENT}),
    key=KeySpec(),
    duration=timedelta(hours=24),
)
KEY_TYPES = {
    KeyAlgorithm.ECDSA: ec.EllipticCurvePrivateKey,
    KeyAlgorithm.RSA: rsa.RSAPrivateKey,
    KeyAlgorithm.ED25519: ed25519.Ed25519PrivateKey,
}
# The digest each CA key signs with.
HASHES = {
    "ECDSA-256": "sha256",
    "ECDSA-384": "sha384",
    "RSA-2048": "sha256",
    "RSA-3072": "sha256",
    "RSA-4096": "sha256",
    "Ed25519": None,
}


@functools.cache
def root(spec: KeySpec = KeySpec()) -> CertificateAuthority:  # noqa: B008
    return create_self_signed_ca(NOW, key=spec, path_length=1)


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


@pytest.mark.parametrize("leaf_spec", ALL_SPECS, ids=str)
@pytest.mark.parametrize("ca_spec", ALL_SPECS, ids=lambda spec: f"CA-{spec}")
def test_every_ca_key_signs_every_leaf_key(ca_spec: KeySpec, leaf_spec: KeySpec) -> None:
    ca = root(ca_spec)
    leaf = issue_leaf(ca, dataclasses.replace(REQUEST, key=leaf_spec), NOW)
    assert isinstance(leaf.key, KEY_TYPES[leaf_spec.algorithm])
    if isinstance(leaf.key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        size = leaf.key.curve.key_size if isinstance(leaf.key, ec.EllipticCurvePrivateKey) else leaf.key.key_size
        assert size == leaf_spec.size
    assert key_matches_certificate(leaf.key, leaf.cert)
    leaf.cert.verify_directly_issued_by(ca.cert)
    algorithm = leaf.cert.signature_hash_algorithm
    assert (algorithm.name if algorithm else None) == HASHES[str(ca_spec)]
    verify_leaf(leaf.cert, [], ca.trust, NOW)


@pytest.mark.parametrize("leaf_spec", ALL_SPECS, ids=str)
def test_svid_properties(leaf_spec: KeySpec) -> None:
    ca = root()
    leaf = issue_leaf(ca, dataclasses.replace(REQUEST, key=leaf_spec), NOW)
    cert = leaf.cert

    san = ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [SPIFFE_ID]
    assert san.get_values_for_type(x509.DNSName) == list(REQUEST.dns_names)
    assert len(san) == 1 + len(REQUEST.dns_names)
    assert cert.subject.rfc4514_string() == "O=mtls-operator"
    assert cert.issuer == ca.cert.subject

    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    assert usage.value.key_encipherment == (leaf_spec.algorithm is KeyAlgorithm.RSA)
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    assert not usage.value.key_agreement
    assert not ext(cert, x509.ExtendedKeyUsage).critical

    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.key.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    ca_ski = ext(ca.cert, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest

    assert leaf.serial_hex == format(cert.serial_number, "x")
    assert cert.serial_number > 0
    assert 0 < cert.serial_number < 2**128
    assert leaf.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key_matches_certificate(load_private_key_pem(leaf.key_pem), cert)
    assert "PRIVATE KEY" not in repr(leaf)


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        ({Usage.SERVER}, [ExtendedKeyUsageOID.SERVER_AUTH]),
        ({Usage.CLIENT}, [ExtendedKeyUsageOID.CLIENT_AUTH]),
        ({Usage.SERVER, Usage.CLIENT}, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
    ids=["server", "client", "server+client"],
)
def test_extended_key_usages(usages: set[Usage], expected: list[x509.ObjectIdentifier]) -> None:
    leaf = issue_leaf(root(), dataclasses.replace(REQUEST, usages=frozenset(usages)), NOW)
    assert list(ext(leaf.cert, x509.ExtendedKeyUsage).value) == expected  # type: ignore[call-overload]


def test_no_dns_names() -> None:
    leaf = issue_leaf(root(), dataclasses.replace(REQUEST, dns_names=()), NOW)
    san = ext(leaf.cert, x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(SPIFFE_ID)]  # type: ignore[call-overload]


def test_every_issue_has_a_new_key_and_serial() -> None:
    leaves = [issue_leaf(root(), REQUEST, NOW) for _ in range(20)]
    assert len({leaf.serial_hex for leaf in leaves}) == 20
    assert len({leaf.key_pem for leaf in leaves}) == 20
    assert all(len(leaf.serial_hex) <= 32 for leaf in leaves)


@pytest.mark.parametrize(
    ("now", "duration", "ca_validity", "not_before", "not_after"),
    [
        pytest.param(
            NOW,
            timedelta(hours=24),
            timedelta(days=365),
            NOW - timedelta(minutes=1),
            NOW + timedelta(hours=24),
            id="plain",
        ),
        pytest.param(
            datetime(2026, 11, 27, 10, 30, 15, 987654, tzinfo=UTC),
            timedelta(hours=1, microseconds=600000),
            timedelta(days=365),
            datetime(2026, 11, 27, 10, 29, 15, tzinfo=UTC),
            datetime(2026, 11, 27, 11, 30, 16, tzinfo=UTC),
            id="whole-seconds",
        ),
        pytest.param(
            NOW,
            timedelta(days=30),
            timedelta(days=10),
            NOW - timedelta(minutes=1),
            NOW + timedelta(days=10),
            id="clamped-to-ca",
        ),
        pytest.param(
            NOW + timedelta(days=10),
            timedelta(hours=1),
            timedelta(days=10),
            NOW + timedelta(days=10, minutes=-1),
            NOW + timedelta(days=10),
            id="ca-expires-now",
        ),
    ],
)
def test_validity_window(
    now: datetime, duration: timedelta, ca_validity: timedelta, not_before: datetime, not_after: datetime
) -> None:
    ca = create_self_signed_ca(NOW, validity=ca_validity)
    leaf = issue_leaf(ca, dataclasses.replace(REQUEST, duration=duration), now)
    assert (leaf.not_before, leaf.not_after) == (not_before, not_after)
    assert (leaf.cert.not_valid_before_utc, leaf.cert.not_valid_after_utc) == (not_before, not_after)
    assert leaf.not_after <= ca.not_after
    assert leaf.not_before.microsecond == leaf.not_after.microsecond == 0


def test_not_before_never_precedes_the_ca() -> None:
    ca = create_self_signed_ca(NOW)  # valid from NOW - 1 minute
    leaf = issue_leaf(ca, REQUEST, NOW - timedelta(seconds=30))
    assert leaf.not_before == ca.cert.not_valid_before_utc


@pytest.mark.parametrize(
    ("make_ca", "chain_length"),
    [
        pytest.param(lambda: root(), 1, id="root"),
        pytest.param(lambda: create_intermediate_ca(root(), NOW), 2, id="intermediate"),
        pytest.param(
            lambda: create_intermediate_ca(
                create_intermediate_ca(create_self_signed_ca(NOW, path_length=2), NOW, path_length=1), NOW
            ),
            3,
            id="two-intermediates",
        ),
    ],
)
def test_chain_pem_is_leaf_then_intermediates(make_ca: object, chain_length: int) -> None:
    assert callable(make_ca)
    ca: CertificateAuthority = make_ca()
    leaf = issue_leaf(ca, REQUEST, NOW)
    chain = parse_pem_certificates(leaf.chain_pem)
    assert chain == [leaf.cert, *ca.issuing_chain]
    assert len(chain) == chain_length
    assert not set(map(fingerprint, chain)) & set(map(fingerprint, ca.trust))
    verify_leaf(leaf.cert, chain[1:], ca.trust, NOW)


@pytest.mark.parametrize(
    "spiffe_id",
    [
        SPIFFE_ID,
        "spiffe://td/x",
        "spiffe://example.org/a.b-c_d/E/0",
        "spiffe://my_domain-1.example/ns/a/sa/b",
        "spiffe://td/" + "a" * 2000,
    ],
)
def test_valid_spiffe_ids(spiffe_id: str) -> None:
    validate_spiffe_id(spiffe_id)


@pytest.mark.parametrize(
    ("spiffe_id", "reason"),
    [
        ("", "must start with 'spiffe://'"),
        ("payments", "must start with 'spiffe://'"),
        ("https://td/x", "must start with 'spiffe://'"),
        ("SPIFFE://td/x", "must start with 'spiffe://'"),
        ("spiffe://", "expected spiffe://<trust domain>/<path>"),
        ("spiffe://td", "expected spiffe://"),
        ("spiffe://td/", "expected spiffe://"),
        ("spiffe:///x", "expected spiffe://"),
        ("spiffe://TD/x", "expected spiffe://"),
        ("spiffe://td//x", "expected spiffe://"),
        ("spiffe://td/x/", "expected spiffe://"),
        ("spiffe://td:8080/x", "expected spiffe://"),
        ("spiffe://user@td/x", "expected spiffe://"),
        ("spiffe://td/x?query=1", "expected spiffe://"),
        ("spiffe://td/x#fragment", "expected spiffe://"),
        ("spiffe://td/a b", "expected spiffe://"),
        ("spiffe://td/%41", "expected spiffe://"),
        ("spiffe://td/./x", "may not be '.' or '..'"),
        ("spiffe://td/x/..", "may not be '.' or '..'"),
        ("spiffe://td/" + "a" * 2040, "longer than 2048 characters"),
    ],
)
def test_invalid_spiffe_ids(spiffe_id: str, reason: str) -> None:
    with pytest.raises(PKIError, match="invalid SPIFFE ID") as caught:
        validate_spiffe_id(spiffe_id)
    assert reason in str(caught.value)
    with pytest.raises(PKIError, match="invalid SPIFFE ID"):
        issue_leaf(root(), dataclasses.replace(REQUEST, spiffe_id=spiffe_id), NOW)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        pytest.param({"usages": frozenset()}, PKIError, "at least one usage", id="no-usage"),
        pytest.param({"duration": timedelta(0)}, PKIError, "duration must be positive", id="zero-duration"),
        pytest.param({"duration": -timedelta(hours=1)}, PKIError, "duration must be positive", id="negative"),
        pytest.param({"dns_names": ("bücher.example",)}, PKIError, "invalid DNS name", id="non-ascii-dns"),
    ],
)
def test_bad_requests_are_refused(changes: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        issue_leaf(root(), dataclasses.replace(REQUEST, **changes), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "message"),
    [
        pytest.param(NOW - timedelta(days=1), "the CA is not valid before 2026-11-26T23:59:00Z", id="before"),
        pytest.param(NOW + timedelta(days=366), "the CA expired at 2027-11-27T00:00:00Z", id="after"),
    ],
)
def test_ca_outside_its_validity_refuses_to_issue(now: datetime, message: str) -> None:
    with pytest.raises(CAError, match=message):
        issue_leaf(root(), REQUEST, now)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_leaf(root(), REQUEST, datetime(2026, 11, 27))


def test_an_unverifiable_leaf_is_never_returned() -> None:
    ca = root()
    foreign = create_self_signed_ca(NOW, common_name="foreign")
    mistrusting = dataclasses.replace(ca, trust=(foreign.cert,))
    with pytest.raises(ChainError, match="CN=foreign"):
        issue_leaf(mistrusting, REQUEST, NOW)

    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)


# A leaf the operator just signed: the CA's path checked in full once, then one signature and the facts -------


def _signed(ca: CertificateAuthority,
            request: LeafRequest = REQUEST) -> tuple[x509.Certificate, ec.EllipticCurvePublicKey]:
    from mtls_operator.pki.leaf import _sign

    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return _sign(ca, request, public_key, NOW), public_key


def test_every_later_leaf_of_a_checked_ca_still_has_its_signature_checked() -> None:
    from mtls_operator.pki.leaf import check_own_leaf

    ca = create_self_signed_ca(NOW, common_name="checked once")
    issue_leaf(ca, REQUEST, NOW)  # the CA's path is checked in full with this one
    # The same certificate and trust, but a key that is not the certificate's: its leaves do not verify.
    wrong_key = dataclasses.replace(ca, key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ChainError, match="does not verify with the key of CA"):
        issue_leaf(wrong_key, REQUEST, NOW)
    cert, public_key = _signed(wrong_key)
    with pytest.raises(ChainError, match="does not verify with the key of CA"):
        check_own_leaf(ca, REQUEST, cert, public_key, NOW)


def test_a_checked_path_is_valid_only_within_its_certificates_validity() -> None:
    from mtls_operator.pki.leaf import check_own_leaf

    ca = create_self_signed_ca(NOW, common_name="window")
    issue_leaf(ca, REQUEST, NOW)
    cert, public_key = _signed(ca)
    check_own_leaf(ca, REQUEST, cert, public_key, NOW)
    with pytest.raises(ChainError, match="to its trust anchors is not valid at"):
        check_own_leaf(ca, REQUEST, cert, public_key, ca.not_after + timedelta(seconds=1))
    with pytest.raises(ChainError, match="is not valid at"):
        check_own_leaf(ca, REQUEST, cert, public_key, NOW + timedelta(days=2))  # past the leaf's 24 hours


@pytest.mark.parametrize("first", [True, False], ids=["first-leaf", "later-leaf"])
def test_a_leaf_that_does_not_say_what_was_asked_is_refused(first: bool) -> None:
    from mtls_operator.pki.leaf import check_own_leaf

    ca = create_self_signed_ca(NOW, common_name=f"facts {first}")
    if not first:
        issue_leaf(ca, REQUEST, NOW)
    cert, public_key = _signed(ca)
    other_id = dataclasses.replace(REQUEST, spiffe_id="spiffe://cluster.local/ns/shop/sa/other")
    with pytest.raises(ChainError, match="subjectAltName"):
        check_own_leaf(ca, other_id, cert, public_key, NOW)
    fewer_names = dataclasses.replace(REQUEST, dns_names=REQUEST.dns_names[:1])
    with pytest.raises(ChainError, match="subjectAltName"):
        check_own_leaf(ca, fewer_names, cert, public_key, NOW)
    server_only = dataclasses.replace(REQUEST, usages=frozenset({Usage.SERVER}))
    with pytest.raises(ChainError, match="extended key usages"):
        check_own_leaf(ca, server_only, cert, public_key, NOW)
    with pytest.raises(ChainError, match="does not carry the key it was signed for"):
        check_own_leaf(ca, REQUEST, cert, ec.generate_private_key(ec.SECP256R1()).public_key(), NOW)
    check_own_leaf(ca, REQUEST, cert, public_key, NOW)


def test_a_leaf_of_an_intermediate_ca_chains_through_it_on_every_leaf() -> None:
    intermediate = create_intermediate_ca(root(), NOW, common_name="issuing intermediate")
    for _ in range(3):
        leaf = issue_leaf(intermediate, REQUEST, NOW)
        chain = parse_pem_certificates(leaf.chain_pem)
        assert chain[1] == intermediate.cert
        verify_leaf(leaf.cert, chain[1:], intermediate.trust, NOW)


@pytest.mark.parametrize("ca_spec", ALL_SPECS, ids=lambda spec: f"CA-{spec}")
def test_a_later_leaf_of_every_ca_key_verifies_and_a_tampered_one_does_not(ca_spec: KeySpec) -> None:
    from cryptography.hazmat.primitives import serialization

    from mtls_operator.pki.leaf import _signed_by, check_own_leaf

    ca = create_self_signed_ca(NOW, key=ca_spec, common_name=f"later leaves {ca_spec}")
    issue_leaf(ca, REQUEST, NOW)  # the path in full; the next leaves have their signature checked alone
    for _ in range(3):
        leaf = issue_leaf(ca, REQUEST, NOW)
        leaf.cert.verify_directly_issued_by(ca.cert)
        assert _signed_by(ca, leaf.cert)
    cert, public_key = _signed(ca)
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the signature's last byte (for ECDSA, the low byte of s: still a well-formed signature)
    tampered = x509.load_der_x509_certificate(bytes(der))
    assert not _signed_by(ca, tampered)
    with pytest.raises(ChainError, match="does not verify with the key of CA"):
        check_own_leaf(ca, REQUEST, tampered, public_key, NOW)
    other = create_self_signed_ca(NOW, key=ca_spec, common_name=f"later leaves {ca_spec}")  # same name, other key
    assert not _signed_by(other, cert)
    assert not _signed_by(dataclasses.replace(ca, cert=other.cert), cert)


def test_the_subject_key_identifier_is_the_usual_one() -> None:
    from mtls_operator.pki.leaf import _subject_key_identifier

    for key in (ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
                ed25519.Ed25519PrivateKey.generate()):
        assert _subject_key_identifier(key.public_key()) == x509.SubjectKeyIdentifier.from_public_key(key.public_key())


@pytest.mark.parametrize("leaf_spec", ALL_SPECS, ids=str)
@pytest.mark.parametrize("ca_spec", [KeySpec(KeyAlgorithm.ECDSA, 256), KeySpec(KeyAlgorithm.ECDSA, 384)], ids=str)
@pytest.mark.parametrize("dns_names", [(), REQUEST.dns_names], ids=["no-dns", "dns"])
def test_a_leaf_put_together_from_its_parts_is_what_the_builder_makes(
        ca_spec: KeySpec, leaf_spec: KeySpec, dns_names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    from mtls_operator.pki import leaf as leaf_module
    from mtls_operator.pki.keys import generate_private_key

    ca = root(ca_spec)
    request = dataclasses.replace(REQUEST, key=leaf_spec, dns_names=dns_names)
    public_key = generate_private_key(leaf_spec).public_key()
    for serial in (1, 0x7F, 0x80, 2**127, 2**128 - 1):
        monkeypatch.setattr(leaf_module, "random_serial", lambda serial=serial: serial)
        parts = leaf_module._sign(ca, request, public_key, NOW)
        built = leaf_module._build(ca, request, public_key, NOW, False)
        assert parts.tbs_certificate_bytes == built.tbs_certificate_bytes  # byte for byte
        assert parts.signature_algorithm_oid == built.signature_algorithm_oid
        parts.verify_directly_issued_by(ca.cert)


def test_leaf_times_after_2049_are_generalized_times() -> None:
    from mtls_operator.pki import der

    late = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert der.time(late) == b"\x17\x0d491231235959Z"
    assert der.time(late + timedelta(seconds=1)) == b"\x18\x0f20500101000000Z"
    ca = create_self_signed_ca(late - timedelta(days=1), validity=timedelta(days=30), common_name="late")
    for _ in range(2):  # the full check, then the later-leaf one
        leaf = issue_leaf(ca, dataclasses.replace(REQUEST, duration=timedelta(days=2)), late)
        assert leaf.not_after == late + timedelta(days=2)
        verify_leaf(leaf.cert, [], ca.trust, late)
    with pytest.raises(ValueError, match="UTC"):
        der.time(datetime(2030, 1, 1))


def test_der_lengths_and_object_identifiers() -> None:
    from mtls_operator.pki import der

    assert der.tlv(0x04, b"x" * 127)[:2] == b"\x04\x7f"
    assert der.tlv(0x04, b"x" * 128)[:3] == b"\x04\x81\x80"
    assert der.tlv(0x04, b"x" * 300)[:4] == b"\x04\x82\x01\x2c"
    assert der.oid("1.2.840.10045.4.3.2") == bytes.fromhex("06082a8648ce3d040302")
    assert der.oid("2.5.29.14") == bytes.fromhex("0603551d0e")
    assert der.integer(0) == b"\x02\x01\x00"
    assert der.integer(0x80) == b"\x02\x02\x00\x80"
    with pytest.raises(ValueError, match="object identifier"):
        der.oid("3.1")


def test_the_facts_of_each_set_of_parts_are_read_back_once_then_compared_byte_for_byte(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from mtls_operator.pki import leaf as leaf_module

    checked: list[str] = []
    check_facts = leaf_module._check_facts

    def counting(cert: x509.Certificate, request: LeafRequest, public_key: object) -> None:
        checked.append(request.spiffe_id)
        check_facts(cert, request, public_key)  # type: ignore[arg-type]

    monkeypatch.setattr(leaf_module, "_check_facts", counting)
    ca = create_self_signed_ca(NOW, common_name="parts")
    other = dataclasses.replace(REQUEST, spiffe_id="spiffe://cluster.local/ns/shop/sa/other")
    for request in (REQUEST, REQUEST, REQUEST, other, other):
        issue_leaf(ca, request, NOW)
    assert checked == [SPIFFE_ID, other.spiffe_id]  # the first leaf of each, read back; the others compared
    # A leaf whose bytes are not what was assembled, or whose parts were never read back, is read back.
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    assembled = leaf_module._assemble(ca, REQUEST, key, NOW)
    leaf_module.check_own_leaf(ca, REQUEST, assembled.cert, key, NOW, assembled=assembled._replace(tbs=b"other"))
    fewer = dataclasses.replace(REQUEST, dns_names=REQUEST.dns_names[:1])
    with pytest.raises(ChainError, match="subjectAltName"):  # the same bytes, other asked-for names: read back
        leaf_module.check_own_leaf(ca, fewer, assembled.cert, key, NOW, assembled=assembled._replace(
            parts=(fewer.spiffe_id, fewer.dns_names, *(assembled.parts or ())[2:])))
    assert checked[2:] == [SPIFFE_ID, SPIFFE_ID]
