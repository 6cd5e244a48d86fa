"""Pure PKI: keys, the CA, leaf (X.509-SVID) issuance, verification, bundles and parsing.

No kopf, no kubernetes, no clock: everything that needs the time takes ``now`` (aware, UTC).
Randomness comes only from the cryptography library and ``secrets``. Errors are PKIError,
CAError and ChainError, and their messages never contain PEM or key material.
"""

from mtls_operator.pki._util import CLOCK_SKEW
from mtls_operator.pki.bundle import (
    BUNDLE_LIMITS,
    CHAIN_LIMITS,
    PemLimits,
    PemScan,
    certs_to_pem,
    fingerprint,
    merge_bundles,
    parse_pem_certificates,
    scan_pem_blocks,
)
from mtls_operator.pki.ca import CertificateAuthority, create_intermediate_ca, create_self_signed_ca
from mtls_operator.pki.keys import (
    MAX_KEY_PEM_BYTES,
    PrivateKey,
    generate_private_key,
    key_matches_certificate,
    load_private_key_pem,
    private_key_to_pem,
)
from mtls_operator.pki.leaf import IssuedLeaf, LeafRequest, SignedLeaf, issue_leaf, sign_public_key, validate_spiffe_id
from mtls_operator.pki.load import load_ca
from mtls_operator.pki.verify import verify_leaf

__all__ = [
    "BUNDLE_LIMITS",
    "CHAIN_LIMITS",
    "CLOCK_SKEW",
    "MAX_KEY_PEM_BYTES",
    "CertificateAuthority",
    "IssuedLeaf",
    "LeafRequest",
    "PemLimits",
    "PemScan",
    "PrivateKey",
    "SignedLeaf",
    "certs_to_pem",
    "create_intermediate_ca",
    "create_self_signed_ca",
    "fingerprint",
    "generate_private_key",
    "issue_leaf",
    "key_matches_certificate",
    "load_ca",
    "load_private_key_pem",
    "merge_bundles",
    "parse_pem_certificates",
    "private_key_to_pem",
    "scan_pem_blocks",
    "sign_public_key",
    "validate_spiffe_id",
    "verify_leaf",
]
