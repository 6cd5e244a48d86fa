"""Private keys: generation, PKCS#8 encoding and loading, and matching a key to a certificate."""

from __future__ import annotations

from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mtls_operator.errors import PKIError
from mtls_operator.models import KeyAlgorithm, KeySpec

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# Keys we generate come from KeySpec (P-256/P-384); keys we load may also be P-521, because a
# user-supplied CA may use it and every TLS stack we care about accepts it.
_GENERATED_CURVES: dict[int, ec.EllipticCurve] = {256: ec.SECP256R1(), 384: ec.SECP384R1()}
_LOADABLE_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
MIN_RSA_BITS = 2048
# Checking an RSA key costs about the cube of its size (see load_private_key_pem); nobody uses more.
MAX_RSA_BITS = 8192
# tls.key: an RSA-8192 key, the largest anyone uses, is under 7 KB of PEM; P-521 and Ed25519 far less.
# The cap is checked before OpenSSL sees the data: a tenant's 1 MiB tls.key costs a length check.
MAX_KEY_PEM_BYTES = 16 * 1024

_SUPPORTED = "use ECDSA (P-256, P-384 or P-521), RSA (2048 to 8192 bits) or Ed25519"


def generate_private_key(spec: KeySpec) -> PrivateKey:
    """A fresh private key as ``spec`` describes it (the randomness comes from OpenSSL)."""
    if spec.algorithm is KeyAlgorithm.ECDSA:
        return ec.generate_private_key(_GENERATED_CURVES[spec.size or 256])
    if spec.algorithm is KeyAlgorithm.RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=spec.size or MIN_RSA_BITS)
    return ed25519.Ed25519PrivateKey.generate()


def private_key_to_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``), what tls.key holds."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes, *, check_rsa_key: bool = True) -> PrivateKey:
    """Load an unencrypted PEM private key, PKCS#8 or traditional (``BEGIN EC/RSA PRIVATE KEY``).

    Raises PKIError on anything else (over MAX_KEY_PEM_BYTES, RSA over MAX_RSA_BITS...); the message
    never contains the key material. ``check_rsa_key`` runs OpenSSL's RSA consistency check, primality
    tests that hold the GIL (about 0.5 s for RSA-4096, 9 s for RSA-8192, so no worker thread helps):
    needed for a key that signs (the CA's), skipped for one that is only compared with a certificate.
    """
    if len(data) > MAX_KEY_PEM_BYTES:
        raise PKIError(f"the private key PEM is {len(data)} bytes, over the {MAX_KEY_PEM_BYTES}-byte limit")
    # Unchecked first, so that the key's type and size are known before any costly check.
    key = _supported(_load(data, check_rsa_key=False))
    if check_rsa_key and isinstance(key, rsa.RSAPrivateKey):
        key = _supported(_load(data, check_rsa_key=True))
    return key


def _load(data: bytes, *, check_rsa_key: bool) -> object:
    try:
        return serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=not check_rsa_key
        )
    except TypeError:
        # Raised when the key is encrypted and no password was given.
        raise PKIError("the private key is encrypted: supply it unencrypted, as PKCS#8 PEM") from None
    except UnsupportedAlgorithm:
        raise PKIError(f"the private key is of an unsupported type: {_SUPPORTED}") from None
    except ValueError:
        raise PKIError(
            "the data is not a PEM private key (expected '-----BEGIN PRIVATE KEY-----' or a "
            "traditional '-----BEGIN EC/RSA PRIVATE KEY-----' block), or an inconsistent one"
        ) from None


def _supported(key: object) -> PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _LOADABLE_CURVES:
            raise PKIError(f"unsupported elliptic curve {key.curve.name}: {_SUPPORTED}")
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise PKIError(f"RSA key of {key.key_size} bits is too weak: {_SUPPORTED}")
        if key.key_size > MAX_RSA_BITS:
            raise PKIError(f"RSA key of {key.key_size} bits is over the {MAX_RSA_BITS}-bit limit: {_SUPPORTED}")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
    raise PKIError(f"unsupported private key type {kind}: {_SUPPORTED}")


def key_matches_certificate(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``key`` is the private half of the certificate's public key."""
    try:
        cert_public = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert_public.public_bytes(*spki)
