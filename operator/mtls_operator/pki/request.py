"""The public key a PodCertificateRequest asks a certificate for, and the proof that its sender holds it.

Pure. Two shapes exist (certificates.k8s.io, KEP-4317): ``stubPKCS10Request``, a DER PKCS#10 request
signed by the subject key (v1, and v1beta1 since 1.36), whose self-signature is the proof of
possession; and v1beta1's deprecated ``pkixPublicKey`` (DER SubjectPublicKeyInfo) with
``proofOfPossession``, a signature by that key over the ASCII bytes of the pod's UID: Ed25519 over the
bytes, ECDSA (ASN.1 DER) over their SHA-256, RSA-PSS with SHA-256 (MGF1 SHA-256, salt length as Go's
``rsa.VerifyPSS`` with nil options accepts: any) over their SHA-256.

The API server checks both at creation; the signer checks them again, since it never trusts what it
did not verify itself. Every input is capped at the API's own limits before it is parsed, so a
tenant's request costs bounded work. Errors are :class:`RequestKeyError`, whose ``unsupported`` tells a
key type the signer does not accept (the API's ``UnsupportedKeyType``) from a request that is broken.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from mtls_operator.errors import PKIError

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# The API's limits (pkg/apis/certificates/types.go): MaxStubPKCS10RequestSize, MaxPKIXPublicKeySize,
# MaxProofOfPossessionSize.
MAX_STUB_PKCS10_BYTES: Final = 10 * 1024
MAX_PKIX_PUBLIC_KEY_BYTES: Final = 10 * 1024
MAX_PROOF_OF_POSSESSION_BYTES: Final = 10 * 1024

# The names the kubelet and the API give key types (core/v1 PodCertificateProjection.keyType).
_CURVE_KEY_TYPES: Final = {"secp256r1": "ECDSAP256", "secp384r1": "ECDSAP384", "secp521r1": "ECDSAP521"}
_RSA_KEY_TYPES: Final = {3072: "RSA3072", 4096: "RSA4096"}


class RequestKeyError(PKIError):
    """The request's key or its proof of possession is unusable. ``unsupported``: the key is fine but of
    a type the API (or this signer) does not accept; otherwise the request is malformed or forged."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def key_type(key: PublicKey) -> str:
    """The kubelet's name of ``key``'s type (``ECDSAP256``...); RequestKeyError(unsupported) otherwise."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ED25519"
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _CURVE_KEY_TYPES.get(key.curve.name)
        if name is None:
            raise RequestKeyError(f"elliptic curve {key.curve.name} is not one of P-256, P-384, P-521",
                                  unsupported=True)
        return name
    name = _RSA_KEY_TYPES.get(key.key_size)
    if name is None:
        raise RequestKeyError(f"RSA keys must have 3072 or 4096 bits, not {key.key_size}", unsupported=True)
    return name


def _supported(key: object) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        key_type(key)
        return key
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "") or "unknown"
    raise RequestKeyError(f"unknown public key type {kind}; supported types are Ed25519, ECDSA and RSA",
                          unsupported=True)


def stub_request_key(der: bytes) -> PublicKey:
    """The subject key of a stub PKCS#10 request, once its self-signature verifies with that key."""
    if len(der) > MAX_STUB_PKCS10_BYTES:
        raise RequestKeyError(f"stubPKCS10Request is {len(der)} bytes, over the {MAX_STUB_PKCS10_BYTES}-byte limit")
    try:
        request = x509.load_der_x509_csr(der)
        key = _supported(request.public_key())
        valid = request.is_signature_valid
    except RequestKeyError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise RequestKeyError("stubPKCS10Request is not a valid DER PKCS#10 certificate request") from None
    if not valid:
        raise RequestKeyError("stubPKCS10Request's signature does not verify with its own public key: "
                              "the sender did not prove it holds the private key")
    return key


def proven_pkix_key(pkix_der: bytes, proof: bytes, pod_uid: str) -> PublicKey:
    """v1beta1's ``pkixPublicKey``, once ``proofOfPossession`` verifies as its signature over ``pod_uid``."""
    if len(pkix_der) > MAX_PKIX_PUBLIC_KEY_BYTES:
        raise RequestKeyError(
            f"pkixPublicKey is {len(pkix_der)} bytes, over the {MAX_PKIX_PUBLIC_KEY_BYTES}-byte limit")
    if len(proof) > MAX_PROOF_OF_POSSESSION_BYTES:
        raise RequestKeyError(
            f"proofOfPossession is {len(proof)} bytes, over the {MAX_PROOF_OF_POSSESSION_BYTES}-byte limit")
    try:
        key = _supported(serialization.load_der_public_key(pkix_der))
    except RequestKeyError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise RequestKeyError("pkixPublicKey is not a valid DER (PKIX) public key") from None
    message = pod_uid.encode()  # Go's []byte(string): UTF-8
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(proof, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(proof, message, ec.ECDSA(hashes.SHA256()))
        else:
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            key.verify(proof, message, pss, hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise RequestKeyError("proofOfPossession is not a signature by pkixPublicKey over the pod's UID") from None
    return key


def public_key_der(key: PublicKey) -> bytes:
    """``key`` as DER SubjectPublicKeyInfo: how two keys are compared."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
