"""The CA: creating a self-signed root or an intermediate, and loading (and refusing) a CA Secret."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from mtls_operator.errors import CAError, PKIError
from mtls_operator.models import KeyAlgorithm, KeySpec
from mtls_operator.pki import (
    CertificateAuthority,
    certs_to_pem,
    create_intermediate_ca,
    create_self_signed_ca,
    fingerprint,
    issue_leaf,
    key_matches_certificate,
    load_ca,
    parse_pem_certificates,
    private_key_to_pem,
    verify_leaf,
)

from .pki_cases import ALL_SPECS, NOW, REQUEST

SecretData = tuple[bytes, bytes, bytes | None]


@functools.cache
def root(spec: KeySpec = KeySpec(), path_length: int | None = 0) -> CertificateAuthority:  # noqa: B008
    return create_self_signed_ca(NOW, key=spec, path_length=path_length, common_name=f"root {spec}", unique_name=False)


@functools.cache
def intermediate(spec: KeySpec = KeySpec()) -> CertificateAuthority:  # noqa: B008
    return create_intermediate_ca(root(spec, path_length=1), NOW, key=spec, common_name=f"intermediate {spec}")


def extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


# --- create_self_signed_ca -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "key_type", "hash_name"),
    [
        (KeySpec(KeyAlgorithm.ECDSA, 256), ec.EllipticCurvePrivateKey, "sha256"),
        (KeySpec(KeyAlgorithm.ECDSA, 384), ec.EllipticCurvePrivateKey, "sha384"),
        (KeySpec(KeyAlgorithm.RSA, 2048), rsa.RSAPrivateKey, "sha256"),
        (KeySpec(KeyAlgorithm.RSA, 3072), rsa.RSAPrivateKey, "sha256"),
        (KeySpec(KeyAlgorithm.RSA, 4096), rsa.RSAPrivateKey, "sha256"),
        (KeySpec(KeyAlgorithm.ED25519, None), ed25519.Ed25519PrivateKey, None),
    ],
    ids=str,
)
def test_self_signed_ca_properties(spec: KeySpec, key_type: type, hash_name: str | None) -> None:
    ca = root(spec)
    cert = ca.cert
    assert isinstance(ca.key, key_type)
    assert key_matches_certificate(ca.key, cert)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "mtls-operator"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"root {spec}"
    cert.verify_directly_issued_by(cert)
    assert (cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else None) == hash_name

    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = extension(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    aki = extension(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest

    assert 0 < cert.serial_number < 2**128
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=1)
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)
    assert ca.not_after == cert.not_valid_after_utc
    assert ca.fingerprint == fingerprint(cert)
    assert ca.chain == ()
    assert ca.trust == (cert,)
    assert ca.issuing_chain == ()


def test_self_signed_ca_options() -> None:
    now = datetime(2026, 11, 27, 10, 30, 15, 987654, tzinfo=UTC)
    ca = create_self_signed_ca(now, validity=timedelta(days=30), common_name="shop CA", path_length=None)
    assert ca.cert.not_valid_before_utc == datetime(2026, 11, 27, 10, 29, 15, tzinfo=UTC)
    assert ca.cert.not_valid_after_utc == datetime(2026, 12, 27, 10, 30, 15, tzinfo=UTC)
    key_id = extension(ca.cert, x509.SubjectKeyIdentifier).value.digest.hex()[:8]
    assert ca.cert.subject.rfc4514_string() == f"CN=shop CA 2026-11-27 {key_id},O=mtls-operator"
    assert extension(ca.cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=None)


def test_self_signed_ca_serials_keys_and_subjects_differ() -> None:
    """Even two CAs made in the same second: stacks that pick an issuer by name must never confuse them."""
    first, second = create_self_signed_ca(NOW), create_self_signed_ca(NOW)
    assert first.cert.serial_number != second.cert.serial_number
    assert not key_matches_certificate(first.key, second.cert)
    assert first.cert.subject != second.cert.subject
    assert first.cert.subject.rfc4514_string().startswith("CN=mtls-operator CA ")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param({"validity": timedelta(0)}, PKIError, "validity must be positive", id="zero-validity"),
        pytest.param({"validity": -timedelta(days=1)}, PKIError, "validity must be positive", id="negative"),
        pytest.param({"common_name": ""}, PKIError, "1 to 44 characters", id="empty-cn"),
        pytest.param({"common_name": "x" * 45}, PKIError, "1 to 44 characters", id="long-cn"),
        pytest.param({"now": datetime(2026, 11, 27)}, ValueError, "timezone-aware", id="naive-now"),
    ],
)
def test_self_signed_ca_refuses(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    now = kwargs.pop("now", NOW)
    with pytest.raises(error, match=message):
        create_self_signed_ca(now, **kwargs)  # type: ignore[arg-type]


def test_non_utc_now_is_converted() -> None:
    from datetime import timezone

    ca = create_self_signed_ca(datetime(2026, 11, 27, 1, 0, tzinfo=timezone(timedelta(hours=1))))
    assert ca.cert.not_valid_before_utc == NOW - timedelta(minutes=1)


def test_secret_data() -> None:
    ca = intermediate()
    data = ca.secret_data()
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    assert parse_pem_certificates(data["tls.crt"]) == [ca.cert]
    assert data["tls.key"] == private_key_to_pem(ca.key)
    assert data["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----")
    assert parse_pem_certificates(data["ca.crt"]) == [root(KeySpec(), path_length=1).cert]


def test_repr_leaves_the_key_out() -> None:
    assert "key=" not in repr(root())


# --- create_intermediate_ca ------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_intermediate_ca(spec: KeySpec) -> None:
    parent, ca = root(spec, path_length=1), intermediate(spec)
    assert ca.cert.issuer == parent.cert.subject
    ca.cert.verify_directly_issued_by(parent.cert)
    assert extension(ca.cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
    aki = extension(ca.cert, x509.AuthorityKeyIdentifier).value
    parent_ski = extension(parent.cert, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(parent_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == parent_ski.digest
    assert ca.chain == ()
    assert ca.trust == (parent.cert,)
    assert ca.issuing_chain == (ca.cert,)


def test_intermediate_ca_validity_is_clamped_to_the_parent() -> None:
    parent = create_self_signed_ca(NOW, validity=timedelta(days=10), path_length=None)
    ca = create_intermediate_ca(parent, NOW + timedelta(days=1), validity=timedelta(days=365))
    assert ca.not_after == parent.not_after
    assert ca.cert.not_valid_before_utc == NOW + timedelta(days=1) - timedelta(minutes=1)


def test_second_level_intermediate_carries_the_first() -> None:
    top = create_self_signed_ca(NOW, path_length=2)
    first = create_intermediate_ca(top, NOW, path_length=1)
    second = create_intermediate_ca(first, NOW)
    assert second.chain == (first.cert,)
    assert second.trust == (top.cert,)
    assert second.issuing_chain == (second.cert, first.cert)


@pytest.mark.parametrize(
    ("parent_length", "child_length", "now", "message"),
    [
        pytest.param(0, 0, NOW, r"allows 0 intermediate CA\(s\) below it", id="parent-leaves-only"),
        pytest.param(1, 1, NOW, "cannot sign an intermediate CA with pathLenConstraint 1", id="child-too-long"),
        pytest.param(1, None, NOW, "with pathLenConstraint None", id="child-unbounded"),
        pytest.param(None, 0, NOW + timedelta(days=400), "the parent CA is not valid at", id="parent-expired"),
    ],
)
def test_intermediate_ca_refuses(
    parent_length: int | None, child_length: int | None, now: datetime, message: str
) -> None:
    parent = root(KeySpec(), path_length=parent_length)
    with pytest.raises(CAError, match=message):
        create_intermediate_ca(parent, now, path_length=child_length)


# --- load_ca: the good cases -----------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
@pytest.mark.parametrize("with_ca_crt", [True, False], ids=["with-ca.crt", "without-ca.crt"])
def test_load_self_signed_root(spec: KeySpec, with_ca_crt: bool) -> None:
    original = root(spec)
    data = original.secret_data()
    ca = load_ca(data["tls.crt"], data["tls.key"], data["ca.crt"] if with_ca_crt else None, NOW)
    assert ca == CertificateAuthority(cert=original.cert, key=ca.key, chain=(), trust=(original.cert,))
    assert private_key_to_pem(ca.key) == private_key_to_pem(original.key)
    leaf = issue_leaf(ca, REQUEST, NOW)
    assert parse_pem_certificates(leaf.chain_pem) == [leaf.cert]


@pytest.mark.parametrize(
    ("tls_key_format", "ca_crt"),
    [
        (serialization.PrivateFormat.PKCS8, b""),
        (serialization.PrivateFormat.TraditionalOpenSSL, b"  \n"),
    ],
    ids=["pkcs8-empty-ca.crt", "traditional-blank-ca.crt"],
)
def test_load_root_key_formats_and_blank_ca_crt(tls_key_format: serialization.PrivateFormat, ca_crt: bytes) -> None:
    original = root()
    key = original.key.private_bytes(serialization.Encoding.PEM, tls_key_format, serialization.NoEncryption())
    ca = load_ca(certs_to_pem([original.cert]), key, ca_crt, NOW)
    assert ca.trust == (original.cert,)


def test_load_root_whose_ca_crt_lists_more_roots() -> None:
    other = create_self_signed_ca(NOW, common_name="other", unique_name=False)
    original = root()
    ca = load_ca(certs_to_pem([original.cert]), private_key_to_pem(original.key), certs_to_pem([other.cert]), NOW)
    assert ca.trust == (other.cert, original.cert)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_load_intermediate(spec: KeySpec) -> None:
    original, top = intermediate(spec), root(spec, path_length=1)
    data = original.secret_data()
    ca = load_ca(data["tls.crt"], data["tls.key"], data["ca.crt"], NOW)
    assert (ca.cert, ca.chain, ca.trust) == (original.cert, (), (top.cert,))
    leaf = issue_leaf(ca, REQUEST, NOW)
    assert parse_pem_certificates(leaf.chain_pem) == [leaf.cert, original.cert]
    verify_leaf(leaf.cert, [original.cert], [top.cert], NOW)


def test_load_two_level_intermediate_with_root_in_tls_crt() -> None:
    top = create_self_signed_ca(NOW, path_length=2)
    first = create_intermediate_ca(top, NOW, path_length=1, common_name="first")
    second = create_intermediate_ca(first, NOW, common_name="second")
    tls_crt = certs_to_pem([second.cert, first.cert, top.cert])  # the root here is dropped from the chain
    ca = load_ca(tls_crt, private_key_to_pem(second.key), certs_to_pem([top.cert]), NOW)
    assert (ca.chain, ca.trust) == ((first.cert,), (top.cert,))
    leaf = issue_leaf(ca, REQUEST, NOW)
    assert parse_pem_certificates(leaf.chain_pem) == [leaf.cert, second.cert, first.cert]


# --- load_ca: every refusal names its problem -------------------------------------------------


def custom_ca(
    key: ec.EllipticCurvePrivateKey | ed448.Ed448PrivateKey,
    *,
    basic_constraints: x509.BasicConstraints | None = x509.BasicConstraints(ca=True, path_length=0),  # noqa: B008
    key_cert_sign: bool = True,
) -> x509.Certificate:
    """A self-signed certificate with the odd properties ``create_self_signed_ca`` never produces."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if basic_constraints is not None:
        builder = builder.add_extension(basic_constraints, critical=True)
    return builder.sign(key, None if isinstance(key, ed448.Ed448PrivateKey) else hashes.SHA256())


def pem_key(key: ec.EllipticCurvePrivateKey | ed448.Ed448PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _odd(**kwargs: object) -> SecretData:
    key = ec.generate_private_key(ec.SECP256R1())
    return certs_to_pem([custom_ca(key, **kwargs)]), pem_key(key), None  # type: ignore[arg-type]


def _ed448() -> SecretData:
    key = ed448.Ed448PrivateKey.generate()
    return certs_to_pem([custom_ca(key)]), pem_key(key), None


def _root_data(ca: CertificateAuthority, ca_crt: bytes | None = None) -> SecretData:
    return certs_to_pem([ca.cert]), private_key_to_pem(ca.key), ca_crt


def _leaf_as_ca() -> SecretData:
    leaf = issue_leaf(root(), REQUEST, NOW)
    return leaf.chain_pem, leaf.key_pem, certs_to_pem(root().trust)


def _mismatch() -> SecretData:
    return certs_to_pem([root().cert]), private_key_to_pem(create_self_signed_ca(NOW).key), None


def _intermediate(ca_crt: Callable[[], bytes | None]) -> Callable[[], SecretData]:
    def make() -> SecretData:
        return certs_to_pem([intermediate().cert]), private_key_to_pem(intermediate().key), ca_crt()

    return make


def _missing_middle() -> SecretData:
    top = create_self_signed_ca(NOW, path_length=2)
    first = create_intermediate_ca(top, NOW, path_length=1, common_name="first")
    second = create_intermediate_ca(first, NOW, common_name="second")
    return certs_to_pem([second.cert]), private_key_to_pem(second.key), certs_to_pem([top.cert])


def _encrypted_key() -> SecretData:
    key = root().key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-password"),
    )
    return certs_to_pem([root().cert]), key, None


def _same_name_other_key() -> bytes:
    impostor = create_self_signed_ca(NOW, key=KeySpec(), path_length=1, common_name="root ECDSA-256", unique_name=False)
    return certs_to_pem([impostor.cert])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: (b"garbage", b"", None), r"^tls\.crt: no PEM certificate found", id="tls.crt-garbage"),
        pytest.param(
            lambda: (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"", None),
            r"^tls\.crt: certificate 1 of 1 is malformed",
            id="tls.crt-malformed",
        ),
        pytest.param(
            lambda: (certs_to_pem([root().cert]), b"garbage", None),
            r"^tls\.key: the data is not a PEM private key",
            id="tls.key-garbage",
        ),
        pytest.param(_encrypted_key, r"^tls\.key: the private key is encrypted", id="tls.key-encrypted"),
        pytest.param(
            lambda: (*_root_data(root())[:2], b"junk"), r"^ca\.crt: no PEM certificate found", id="ca.crt-garbage"
        ),
        pytest.param(_leaf_as_ca, r"is not a CA certificate: its basicConstraints say CA=false", id="leaf-not-ca"),
        pytest.param(
            lambda: _odd(basic_constraints=None),
            r"is not a CA certificate: it has no basicConstraints extension",
            id="no-basic-constraints",
        ),
        pytest.param(
            lambda: _odd(key_cert_sign=False),
            r"may not sign certificates: its keyUsage lacks keyCertSign",
            id="no-key-cert-sign",
        ),
        pytest.param(_mismatch, r"^tls\.key does not match the CA certificate", id="key-mismatch"),
        pytest.param(
            lambda: _root_data(create_self_signed_ca(NOW + timedelta(days=1))),
            r"is not yet valid: its validity starts 2026-11-27T23:59:00Z",
            id="not-yet-valid",
        ),
        pytest.param(
            lambda: _root_data(create_self_signed_ca(NOW - timedelta(days=30), validity=timedelta(days=10))),
            r"expired at 2026-11-07T00:00:00Z: supply a renewed CA",
            id="expired",
        ),
        pytest.param(
            _intermediate(lambda: None),
            r"is an intermediate CA \(issued by 'CN=root ECDSA-256,O=mtls-operator'\), so ca\.crt must hold the "
            r"root CA certificate\(s\) it chains to, but ca\.crt is missing or empty",
            id="intermediate-without-ca.crt",
        ),
        pytest.param(
            _intermediate(lambda: b""),
            r"intermediate CA .* ca\.crt is missing or empty",
            id="intermediate-empty-ca.crt",
        ),
        pytest.param(
            _intermediate(lambda: certs_to_pem(
                [create_self_signed_ca(NOW, common_name="unrelated", unique_name=False).cert])),
            r"^the CA chain does not verify up to a certificate in ca\.crt: .*issued by 'CN=root ECDSA-256,"
            r"O=mtls-operator', which is neither a trusted CA \(trusted: 'CN=unrelated,O=mtls-operator'\)",
            id="intermediate-unrelated-ca.crt",
        ),
        pytest.param(
            _intermediate(_same_name_other_key),
            r"^the CA chain does not verify up to a certificate in ca\.crt: .*signed by a different CA",
            id="intermediate-impostor-root",
        ),
        pytest.param(
            _missing_middle,
            r"^the CA chain does not verify .*'CN=first,O=mtls-operator', which is neither a trusted CA .* nor "
            r"among the given intermediates",
            id="intermediate-chain-incomplete",
        ),
        pytest.param(_ed448, r"^tls\.key: unsupported private key type Ed448", id="unsupported-key-type"),
    ],
)
def test_load_ca_refuses(make: Callable[[], SecretData], message: str) -> None:
    tls_crt, tls_key, ca_crt = make()
    with pytest.raises(CAError, match=message) as caught:
        load_ca(tls_crt, tls_key, ca_crt, NOW)
    text = str(caught.value)
    for data in (tls_crt, tls_key, ca_crt or b""):
        body = [line for line in data.splitlines() if len(line) > 8 and not line.startswith(b"-----")]
        assert not [line for line in body if line.decode(errors="replace") in text]


def test_load_ca_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        load_ca(*_root_data(root()), datetime(2026, 11, 27))
