"""Private keys: generation per KeySpec, PKCS#8 round trips, loading and its refusals."""

from __future__ import annotations

import functools

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from mtls_operator.errors import PKIError
from mtls_operator.models import KeyAlgorithm, KeySpec
from mtls_operator.pki import (
    PrivateKey,
    create_self_signed_ca,
    generate_private_key,
    key_matches_certificate,
    load_private_key_pem,
    private_key_to_pem,
)

from .pki_cases import ALL_SPECS, NOW


def leaked_pem_lines(data: bytes, message: str) -> list[bytes]:
    """Lines of PEM body (base64) from ``data`` that show up in ``message``: there must be none."""
    body = [line for line in data.splitlines() if len(line) > 8 and not line.startswith(b"-----")]
    return [line for line in body if line.decode(errors="replace") in message]


@functools.cache
def key_for(spec: KeySpec) -> PrivateKey:
    return generate_private_key(spec)


def pem(key: object, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    assert hasattr(key, "private_bytes")
    data: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return data


@pytest.mark.parametrize(
    ("spec", "kind", "size"),
    [
        (KeySpec(KeyAlgorithm.ECDSA, 256), ec.EllipticCurvePrivateKey, 256),
        (KeySpec(KeyAlgorithm.ECDSA, 384), ec.EllipticCurvePrivateKey, 384),
        (KeySpec(KeyAlgorithm.RSA, 2048), rsa.RSAPrivateKey, 2048),
        (KeySpec(KeyAlgorithm.RSA, 3072), rsa.RSAPrivateKey, 3072),
        (KeySpec(KeyAlgorithm.RSA, 4096), rsa.RSAPrivateKey, 4096),
        (KeySpec(KeyAlgorithm.ED25519, None), ed25519.Ed25519PrivateKey, None),
    ],
    ids=str,
)
def test_generate_private_key_follows_the_spec(spec: KeySpec, kind: type, size: int | None) -> None:
    assert {str(s) for s in ALL_SPECS} >= {str(spec)}  # the table covers models.KEY_SIZES
    key = key_for(spec)
    assert isinstance(key, kind)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == size
        assert key.private_numbers().public_numbers.e == 65537
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        assert key.curve.key_size == size


def test_the_table_covers_every_key_spec() -> None:
    assert len(ALL_SPECS) == 6


def test_generate_private_key_is_new_every_time() -> None:
    first, second = generate_private_key(KeySpec()), generate_private_key(KeySpec())
    assert pem(first) != pem(second)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_pkcs8_pem_round_trip(spec: KeySpec) -> None:
    key = key_for(spec)
    data = private_key_to_pem(key)
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert data.rstrip().endswith(b"-----END PRIVATE KEY-----")
    loaded = load_private_key_pem(data)
    assert type(loaded) is type(key)
    assert private_key_to_pem(loaded) == data


@pytest.mark.parametrize(
    ("spec", "header"),
    [
        (KeySpec(KeyAlgorithm.ECDSA, 256), b"-----BEGIN EC PRIVATE KEY-----"),
        (KeySpec(KeyAlgorithm.ECDSA, 384), b"-----BEGIN EC PRIVATE KEY-----"),
        (KeySpec(KeyAlgorithm.RSA, 2048), b"-----BEGIN RSA PRIVATE KEY-----"),
    ],
    ids=str,
)
def test_load_traditional_pem(spec: KeySpec, header: bytes) -> None:
    key = key_for(spec)
    data = pem(key, serialization.PrivateFormat.TraditionalOpenSSL)
    assert data.startswith(header)
    assert private_key_to_pem(load_private_key_pem(data)) == private_key_to_pem(key)


def test_load_p521_for_user_supplied_cas() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    assert isinstance(load_private_key_pem(pem(key)), ec.EllipticCurvePrivateKey)


def _encrypted() -> bytes:
    return generate_private_key(KeySpec()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-password"),
    )


def _certificate_pem() -> bytes:
    from mtls_operator.pki import certs_to_pem

    return certs_to_pem([create_self_signed_ca(NOW).cert])


@pytest.mark.parametrize(
    ("make_data", "message"),
    [
        pytest.param(lambda: b"", "not a PEM private key", id="empty"),
        pytest.param(lambda: b"hello world", "not a PEM private key", id="garbage"),
        pytest.param(
            lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "not a PEM private key",
            id="corrupt-block",
        ),
        pytest.param(_certificate_pem, "not a PEM private key", id="a-certificate"),
        pytest.param(_encrypted, "encrypted", id="encrypted"),
        pytest.param(lambda: pem(ed448.Ed448PrivateKey.generate()), "unsupported private key type Ed448", id="ed448"),
        pytest.param(
            lambda: pem(x25519.X25519PrivateKey.generate()),
            "unsupported private key type X25519",
            id="x25519",
        ),
        pytest.param(
            lambda: pem(ec.generate_private_key(ec.SECP256K1())),
            "unsupported elliptic curve secp256k1",
            id="secp256k1",
        ),
        pytest.param(
            lambda: pem(rsa.generate_private_key(65537, 1024)),  # noqa: S505 - the point of the test
            "RSA key of 1024 bits is too weak",
            id="rsa-1024",
        ),
    ],
)
def test_load_private_key_pem_refuses(make_data: object, message: str) -> None:
    assert callable(make_data)
    data = make_data()
    with pytest.raises(PKIError, match=message) as caught:
        load_private_key_pem(data)
    text = str(caught.value)
    assert not leaked_pem_lines(data, text)
    assert caught.value.__cause__ is None  # nothing from the parser (which saw the key) is chained


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_key_matches_certificate(spec: KeySpec) -> None:
    ca = create_self_signed_ca(NOW, key=spec)
    assert key_matches_certificate(ca.key, ca.cert)
    assert not key_matches_certificate(generate_private_key(spec), ca.cert)
    assert not key_matches_certificate(key_for(KeySpec()), ca.cert)
