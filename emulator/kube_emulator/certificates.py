"""certificates.k8s.io PodCertificateRequests and ClusterTrustBundles, as kube-apiserver 1.37 serves them.

Ports of the apiserver's rules, not of its Go code: ``pkg/apis/certificates/validation`` (create,
update and status update of PodCertificateRequests, ClusterTrustBundles and their trust bundles),
the registry strategies (``pkg/registry/certificates/{podcertificaterequest,clustertrustbundle}``)
and the PodCertificateRequest part of the NodeRestriction admission plugin. Both resources are
served at ``v1`` (GA in 1.37) and ``v1beta1`` (1.35/1.36 behind feature gates) from one storage;
``v1`` has no ``pkixPublicKey``/``proofOfPossession`` (a ``v1`` client neither sees nor sets them).

PodCertificateRequests (namespaced, ``status`` subresource):

- create resets the status to ``{}``; ``maxExpirationSeconds`` is defaulted to 86400 when absent
  (the API's defaulting); validation: the signer name format, ``podName``, ``serviceAccountName``,
  ``nodeName`` (DNS subdomains), the UIDs (set, at most 128 bytes), ``unverifiedUserAnnotations``
  (domain-prefixed keys, 256 KiB), ``maxExpirationSeconds`` ([3600, 86400] for ``kubernetes.io``
  signers, else [3600, 7862400]), then exactly one of ``stubPKCS10Request`` (at most 10 KiB, a
  PKCS#10 whose key is Ed25519, ECDSA P-256/384/521 or RSA 3072/4096 and whose self-signature
  verifies) or ``pkixPublicKey`` + ``proofOfPossession`` (10 KiB each, the same key types with
  P-224 refused, the proof a signature of the pod UID);
- update (PUT/PATCH without subresource) keeps the status and refuses any change of ``spec``;
- ``/status`` keeps metadata and spec; at most one of the ``Issued``/``Denied``/``Failed``
  conditions, with status ``True``, no other condition type, every condition valid
  (``metav1.Condition`` rules: type, status, reason, lastTransitionTime, message size, no
  duplicates); once terminal the status never changes; ``Denied``/``Failed`` carry nothing but
  conditions; ``Issued`` needs ``certificateChain`` (at most 100 KiB, PEM ``CERTIFICATE`` blocks,
  the leaf first, parsing as X.509, issued to the requested key, sane DNS names and emails),
  ``notBefore``/``notAfter`` equal to the leaf's, ``notBefore`` within 5 minutes of the
  emulator's clock, a lifetime of at least 1 hour and at most ``maxExpirationSeconds``,
  ``beginRefreshAt`` in [notBefore+10m, notAfter-10m]; any other status change is refused;
- updates (PUT) must carry a ``metadata.resourceVersion`` (no unconditional update).

ClusterTrustBundles (cluster-scoped): a bundle with ``signerName`` must be named with the signer
name's ``/`` replaced by ``:`` followed by ``:`` as prefix (the rest a DNS subdomain); one without
may not have ``:`` in its name; the signer name format; ``signerName`` immutable; ``trustBundle``
at most 1 MiB, only ``CERTIFICATE`` blocks without headers, each a CA certificate, no duplicates,
at least one (checked on create, and on update only when the bundle changes).

Not emulated (the emulator has no users, see the package docs): the ``sign`` permission a status
change needs on the signer, the ``attest`` permission a ClusterTrustBundle with a signer name needs
(ctbattest), and the feature gates. Node restriction applies only to in-process creates made as a
node (``Emulator.create(obj, as_node=...)``, which the kubelet stand-in uses): :func:`node_restriction`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kube_emulator import errors
from kube_emulator.errors import ApiError
from kube_emulator.resources import Obj, ResourceInfo
from kube_emulator.schema import FieldError, go_json
from kube_emulator.selectors import is_dns1123_label, is_dns1123_subdomain, is_qualified_name


class Objects(Protocol):
    """What node restriction reads from the store: declared here, so that the store imports this module
    and nothing here imports the store (no import cycle)."""

    def resource(self, api_version: str, kind_or_plural: str) -> ResourceInfo: ...

    def _find(self, info: ResourceInfo, namespace: str | None, name: str) -> Obj | None: ...

GROUP = "certificates.k8s.io"
PCR_KIND = "PodCertificateRequest"
CTB_KIND = "ClusterTrustBundle"

# pkg/apis/certificates/types.go
MAX_TRUST_BUNDLE_SIZE = 1024 * 1024
MAX_PKIX_PUBLIC_KEY_SIZE = 10 * 1024
MAX_PROOF_OF_POSSESSION_SIZE = 10 * 1024
MAX_STUB_PKCS10_REQUEST_SIZE = 10 * 1024
MAX_CERTIFICATE_CHAIN_SIZE = 100 * 1024
MIN_MAX_EXPIRATION_SECONDS = 60 * 60
MAX_MAX_EXPIRATION_SECONDS = 91 * 24 * 60 * 60
KUBERNETES_MAX_MAX_EXPIRATION_SECONDS = 24 * 60 * 60
DEFAULT_MAX_EXPIRATION_SECONDS = 24 * 60 * 60  # SetObjectDefaults_PodCertificateRequest
MAX_UID_LENGTH = 128
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
# metav1 validation of conditions
MAX_CONDITION_REASON_LENGTH = 1024
MAX_CONDITION_MESSAGE_LENGTH = 32 * 1024

ISSUED, DENIED, FAILED = "Issued", "Denied", "Failed"
TERMINAL_CONDITIONS = (ISSUED, DENIED, FAILED)
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"

_DEPRECATED_FIELDS = ("pkixPublicKey", "proofOfPossession")  # v1beta1 only
_BYTES_FIELDS = ("stubPKCS10Request", "pkixPublicKey", "proofOfPossession")
_STRING_FIELDS = ("signerName", "podName", "podUID", "serviceAccountName", "serviceAccountUID", "nodeName",
                  "nodeUID")
_STATUS_TIMES = ("notBefore", "beginRefreshAt", "notAfter")
# The internal Go type's fields in declaration order: the value an immutable-spec error prints.
_INTERNAL_SPEC_FIELDS = (
    ("SignerName", "signerName"), ("PodName", "podName"), ("PodUID", "podUID"),
    ("ServiceAccountName", "serviceAccountName"), ("ServiceAccountUID", "serviceAccountUID"),
    ("NodeName", "nodeName"), ("NodeUID", "nodeUID"), ("MaxExpirationSeconds", "maxExpirationSeconds"),
    ("PKIXPublicKey", "pkixPublicKey"), ("ProofOfPossession", "proofOfPossession"),
    ("StubPKCS10Request", "stubPKCS10Request"), ("UnverifiedUserAnnotations", "unverifiedUserAnnotations"),
)
_CONDITION_REASON_FMT = "[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?"
_CONDITION_REASON_RE = re.compile(_CONDITION_REASON_FMT)
_CONDITION_REASON_ERR = (
    "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric "
    "characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name' or 'MY_NAME' or "
    f"'MyName' or 'ReasonA,ReasonB' or 'ReasonA:ReasonB', regex used for validation is '{_CONDITION_REASON_FMT}')"
)
_GO_CURVES = {"secp224r1": "P-224", "secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

PCR_PATHS = {
    "pkix": "spec.pkixPublicKey",
    "pop": "spec.proofOfPossession",
    "pkcs10": "spec.stubPKCS10Request",
    "chain": "status.certificateChain",
    "notBefore": "status.notBefore",
    "notAfter": "status.notAfter",
    "beginRefreshAt": "status.beginRefreshAt",
}


# ------------------------------------------------------------------------------ field errors
def _value(value: Any) -> str:
    """How ``field.Error.ErrorBody`` prints a bad value (strings quoted, others as JSON)."""
    return go_json(value)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {_value(value)}: {detail}")


def invalid_omitted(path: str, detail: str) -> FieldError:
    """``field.Invalid(path, field.OmitValueType{}, detail)``: no value printed."""
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {detail}")


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, "FieldValueRequired", f"Required value: {detail}" if detail else "Required value")


def too_long(path: str, maximum: int) -> FieldError:
    return FieldError(path, "FieldValueTooLong", f"Too long: may not be more than {maximum} bytes")


def not_supported(path: str, value: str, supported: tuple[str, ...]) -> FieldError:
    quoted = ", ".join(go_json(v) for v in supported)
    message = f"Unsupported value: {go_json(value)}: supported values: {quoted}"
    return FieldError(path, "FieldValueNotSupported", message)


def duplicate(path: str, value: str) -> FieldError:
    return FieldError(path, "FieldValueDuplicate", f"Duplicate value: {go_json(value)}")


def _raise_invalid(kind: str, obj: Obj, problems: list[FieldError]) -> None:
    if problems:
        name = str(obj.get("metadata", {}).get("name", ""))
        raise errors.invalid(kind, GROUP, name, [(p.path, p.type, p.message) for p in problems])


# ------------------------------------------------------------------------------------- names
def is_kubernetes_signer_name(signer_name: str) -> bool:
    host = signer_name.partition("/")[0]
    return host == "kubernetes.io" or host.endswith(".kubernetes.io")


def validate_signer_name(path: str, signer_name: str) -> list[FieldError]:
    """``ValidateSignerName``: ``<DNS domain with a dot>/<path of DNS subdomains>``, at most 571 bytes."""
    if not signer_name:
        return [required(path)]
    segments = signer_name.split("/")
    if len(segments) != 2:
        return [invalid(path, signer_name, "must be a fully qualified domain and path of the form "
                                           "'example.com/signer-name'")]
    problems: list[FieldError] = []
    domain, rest = segments
    if len(domain.encode()) > 253:
        problems.append(too_long(path, 253))
    labels = domain.split(".")
    for label in labels:
        messages = is_dns1123_label(label)
        if messages:
            problems.extend(invalid(path, domain, f"validating label {go_json(label)}: {m}") for m in messages)
            break
    if len(labels) < 2:
        problems.append(invalid(path, domain, "should be a domain with at least two segments separated by dots"))
    for label in rest.split("."):
        messages = is_dns1123_subdomain(label)
        if messages:
            problems.extend(invalid(path, rest, f"validating label {go_json(label)}: {m}") for m in messages)
            break
    max_length = 253 + (253 + 63 + 1) + 1
    if len(signer_name.encode()) > max_length:
        problems.append(too_long(path, max_length))
    return problems


def cluster_trust_bundle_name_problems(name: str, signer_name: str) -> list[str]:
    """``ValidateClusterTrustBundleName``: the signer-derived prefix, then a DNS subdomain."""
    if not signer_name:
        if ":" in name:
            return ['ClusterTrustBundle without signer name must not have ":" in its name']
        return is_dns1123_subdomain(name)
    prefix = signer_name.replace("/", ":") + ":"
    if not name.startswith(prefix):
        return [f"ClusterTrustBundle for signerName {signer_name} must be named with prefix {prefix}"]
    return is_dns1123_subdomain(name[len(prefix):])


def cluster_trust_bundle_name(signer_name: str, suffix: str) -> str:
    """The name a ClusterTrustBundle of ``signer_name`` may have: ``<signer, "/" as ":">:<suffix>``."""
    return f"{signer_name.replace('/', ':')}:{suffix}"


# ----------------------------------------------------------------------------------- decoding
def _cannot_decode(kind: str, version: str, detail: str) -> ApiError:
    return errors.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}')


def _decode_bytes(value: Any, kind: str, version: str, field: str) -> bytes:
    """A ``[]byte`` field: base64 in JSON; what Go cannot decode is a 400, before validation."""
    if value is None:
        return b""
    if not isinstance(value, str):
        raise _cannot_decode(kind, version, f"json: cannot unmarshal {_json_type(value)} into Go struct field "
                                            f"{field} of type []uint8")
    try:
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise _cannot_decode(kind, version, f"illegal base64 data in {field}") from None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def parse_time(value: Any) -> datetime.datetime | None:
    """A ``metav1.Time`` from JSON (RFC 3339), None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"json: cannot unmarshal {_json_type(value)} into a time")
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f'parsing time "{value}" as RFC 3339') from None
    if moment.tzinfo is None or "T" not in value.upper():
        raise ValueError(f'parsing time "{value}" as RFC 3339')
    return moment.astimezone(datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """``metav1.Time`` as JSON: RFC 3339 in UTC, whole seconds."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _go_time(moment: datetime.datetime) -> str:
    """A ``time.Time`` printed as a bad value (RFC 3339 with nanoseconds trimmed)."""
    text = moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


# ------------------------------------------------------------------------------------- PEM
@dataclasses.dataclass(frozen=True)
class PemBlock:
    type: str
    headers: dict[str, str]
    data: bytes


_PEM_BEGIN = re.compile(r"(?:^|\n)-----BEGIN ([^\n]*?)-----[ \t\r]*\n")


def pem_blocks(text: str) -> list[PemBlock]:
    """The blocks Go's ``pem.Decode`` finds one after another (text between blocks is skipped)."""
    blocks: list[PemBlock] = []
    pos = 0
    while True:
        match = _PEM_BEGIN.search(text, pos)
        if match is None:
            return blocks
        kind = match.group(1)
        end_marker = f"-----END {kind}-----"
        end = text.find(end_marker, match.end() - 1)
        if end < 0:
            pos = match.end() - 1
            continue
        body = text[match.end():end]
        block = _pem_body(kind, body)
        if block is None:
            pos = match.end() - 1  # a malformed block: look for the next BEGIN after its first line
            continue
        blocks.append(block)
        pos = end + len(end_marker)


def _pem_body(kind: str, body: str) -> PemBlock | None:
    lines = body.split("\n")
    headers: dict[str, str] = {}
    index = 0
    while index < len(lines) and ":" in lines[index]:
        key, _, value = lines[index].partition(":")
        headers[key.strip()] = value.strip()
        index += 1
    if headers and index < len(lines) and lines[index].strip() == "":
        index += 1
    encoded = "".join(line.strip() for line in lines[index:])
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return PemBlock(kind, headers, data)


def _load_certificate(der: bytes) -> x509.Certificate | None:
    """A certificate as Go's ``x509.ParseCertificate`` would parse it (with its extensions), or None."""
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = cert.extensions, cert.public_key(), cert.not_valid_before_utc, cert.not_valid_after_utc
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return None
    return cert


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def validate_trust_bundle(path: str, bundle: str) -> list[FieldError]:
    """``validateTrustBundle``: CA certificates only, no headers, no duplicates, at least one."""
    if len(bundle.encode("utf-8", "surrogatepass")) > MAX_TRUST_BUNDLE_SIZE:
        return [too_long(path, MAX_TRUST_BUNDLE_SIZE)]
    problems: list[FieldError] = []
    seen: dict[bytes, list[int]] = {}
    for index, block in enumerate(pem_blocks(bundle)):
        if block.type != "CERTIFICATE":
            problems.append(invalid(path, "<value omitted>", f"entry {index} has bad block type: {block.type}"))
            continue
        if block.headers:
            problems.append(invalid(path, "<value omitted>", f"entry {index} has PEM block headers"))
            continue
        cert = _load_certificate(block.data)
        if cert is None:
            problems.append(invalid(path, "<value omitted>", f"entry {index} does not parse as X.509"))
            continue
        constraints = _basic_constraints(cert)
        if constraints is None or not constraints.ca:
            problems.append(invalid(path, "<value omitted>", f"entry {index} does not have the CA bit set"))
            continue
        seen.setdefault(block.data, []).append(index)
    if problems:
        return problems
    if not seen:
        problems.append(invalid(path, "<value omitted>", "at least one trust anchor must be provided"))
    for indices in sorted(seen.values()):
        if len(indices) > 1:
            shown = "[" + " ".join(str(i) for i in indices) + "]"
            problems.append(invalid(path, "<value omitted>", f"duplicate trust anchor (indices {shown})"))
    return problems


# ---------------------------------------------------------------------------------- keys
PublicKey = Any  # cryptography's public key types


def _public_key_der(key: PublicKey) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _check_key(path: str, key: PublicKey, curves: str) -> list[FieldError] | None:
    """The key type rules; None when the key is one Go's x509 cannot represent (a parse error)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return []
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _GO_CURVES.get(key.curve.name)
        if name is None:
            return None
        if name == "P-224":
            return [invalid(path, f"curve {name}", f"elliptic public keys must use curve {curves}")]
        return []
    if isinstance(key, rsa.RSAPublicKey):
        bits = (key.key_size + 7) // 8 * 8
        if bits not in (3072, 4096):
            return [invalid(path, f"{bits}-bit modulus", "RSA keys must have modulus size 3072 or 4096")]
        return []
    return [invalid_omitted(path, "unknown public key type; supported types are Ed25519, ECDSA, and RSA")]


def validate_stub_pkcs10(der: bytes) -> list[FieldError]:
    path = PCR_PATHS["pkcs10"]
    if len(der) > MAX_STUB_PKCS10_REQUEST_SIZE:
        return [too_long(path, MAX_STUB_PKCS10_REQUEST_SIZE)]
    try:
        csr = x509.load_der_x509_csr(der)
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return [invalid_omitted(path, "must be a valid PKCS#10 CSR")]
    problems = _check_key(path, key, "P256, P384, or P521")
    if problems is None:
        return [invalid_omitted(path, "must be a valid PKCS#10 CSR")]
    if problems:
        return problems
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        return [invalid_omitted(path, "invalid signature")]
    return []


def validate_pkix_public_key(pkix: bytes, proof: bytes, pod_uid: str) -> list[FieldError]:
    """The deprecated (v1beta1) key + proof of possession: a signature of the pod UID by the key."""
    pkix_path, pop_path = PCR_PATHS["pkix"], PCR_PATHS["pop"]
    if len(pkix) > MAX_PKIX_PUBLIC_KEY_SIZE:
        return [too_long(pkix_path, MAX_PKIX_PUBLIC_KEY_SIZE)]
    if len(proof) > MAX_PROOF_OF_POSSESSION_SIZE:
        return [too_long(pop_path, MAX_PROOF_OF_POSSESSION_SIZE)]
    shown = base64.b64encode(pkix).decode()
    try:
        key = serialization.load_der_public_key(pkix)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return [invalid(pkix_path, shown, "must be a valid PKIX-serialized public key")]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _GO_CURVES:
        return [invalid(pkix_path, shown, "must be a valid PKIX-serialized public key")]
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        return [invalid(pkix_path, shown, "unknown public key type; supported types are Ed25519, ECDSA, and RSA")]
    problems = _check_key(pkix_path, key, "P256 or P384")
    if problems:
        return problems
    message = pod_uid.encode()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(proof, message)
        else:
            digest = hashes.Hash(hashes.SHA256())
            digest.update(message)
            hashed = digest.finalize()
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(proof, hashed, ec.ECDSA(Prehashed(hashes.SHA256())))
            else:
                key.verify(proof, hashed, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                      salt_length=padding.PSS.AUTO), Prehashed(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return [invalid_omitted(pop_path, "could not verify proof-of-possession signature")]
    return []


def requested_public_key(spec: Mapping[str, Any]) -> PublicKey | None:
    """The key a (stored, valid) request names: the stub PKCS#10's, else the deprecated PKIX key."""
    try:
        stub = base64.b64decode(spec.get("stubPKCS10Request") or "")
        if stub:
            return x509.load_der_x509_csr(stub).public_key()
        return serialization.load_der_public_key(base64.b64decode(spec.get("pkixPublicKey") or ""))
    except (ValueError, UnsupportedAlgorithm, TypeError, binascii.Error):
        return None


# ------------------------------------------------------------------------ versions (v1/v1beta1)
def _pcr_to_v1(obj: Obj) -> Obj:
    """The stored request as ``v1`` shows it: without the v1beta1-only key fields."""
    shown = dict(obj)
    shown["apiVersion"] = f"{GROUP}/v1"
    shown["kind"] = PCR_KIND
    spec = obj.get("spec")
    if isinstance(spec, dict) and any(field in spec for field in _DEPRECATED_FIELDS):
        shown["spec"] = {k: v for k, v in spec.items() if k not in _DEPRECATED_FIELDS}
    return shown


def _pcr_from_v1(body: Obj) -> Obj:
    """A ``v1`` body: the fields ``v1`` does not have are dropped (as unknown fields are)."""
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version not in (None, "", f"{GROUP}/v1"):
        raise errors.bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                                 f"version ({GROUP}/v1)")
    if kind not in (None, "", PCR_KIND):
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({PCR_KIND})")
    body["apiVersion"], body["kind"] = f"{GROUP}/v1", PCR_KIND
    spec = body.get("spec")
    if isinstance(spec, dict):
        for field in _DEPRECATED_FIELDS:
            spec.pop(field, None)
    return body


def certificate_resources() -> list[ResourceInfo]:
    """The certificates.k8s.io resources: v1 (preferred) and v1beta1 of each, sharing their storage."""
    R = ResourceInfo
    return [
        R(GROUP, "v1", "podcertificaterequests", "podcertificaterequest", PCR_KIND, True, status_subresource=True,
          unconditional_update=False, to_external=_pcr_to_v1, to_internal=_pcr_from_v1),
        R(GROUP, "v1beta1", "podcertificaterequests", "podcertificaterequest", PCR_KIND, True,
          status_subresource=True, unconditional_update=False, storage_version=False),
        R(GROUP, "v1", "clustertrustbundles", "clustertrustbundle", CTB_KIND, False, unconditional_update=False),
        R(GROUP, "v1beta1", "clustertrustbundles", "clustertrustbundle", CTB_KIND, False,
          unconditional_update=False, storage_version=False),
    ]


# ---------------------------------------------------------------------------- strategies
def pod_certificate_request_strategy(
    clock: Callable[[], datetime.datetime], info: ResourceInfo, new: Obj, old: Obj | None, subresource: str | None,
) -> None:
    """The registry strategy of PodCertificateRequests: create, update and status update."""
    if old is None:
        new["status"] = {}  # PrepareForCreate
        _decode_spec(info, new)
        _raise_invalid(PCR_KIND, new, validate_create(new))
        return
    if subresource == "status":
        _decode_status(info, new)
        _raise_invalid(PCR_KIND, new, validate_status_update(new, old, clock()))
        return
    _decode_spec(info, new)
    _raise_invalid(PCR_KIND, new, validate_spec_update(new, old))


def cluster_trust_bundle_strategy(new: Obj, old: Obj | None) -> None:
    spec = new.get("spec")
    if not isinstance(spec, dict):
        spec = new["spec"] = {} if spec is None else spec
    if not isinstance(spec, dict) or not all(isinstance(spec.get(f, ""), str) for f in ("signerName",
                                                                                       "trustBundle")):
        raise _cannot_decode(CTB_KIND, str(new.get("apiVersion", "")).rpartition("/")[2],
                             "json: cannot unmarshal into Go struct field ClusterTrustBundle.spec of type string")
    signer = str(spec.get("signerName") or "")
    bundle = str(spec.get("trustBundle") or "")
    name = str(new.get("metadata", {}).get("name", ""))
    problems = [invalid("metadata.name", name, msg) for msg in cluster_trust_bundle_name_problems(name, signer)]
    if signer:
        problems.extend(validate_signer_name("spec.signerName", signer))
    old_spec = (old or {}).get("spec") or {}
    if old is None or bundle != str(old_spec.get("trustBundle") or ""):
        problems.extend(validate_trust_bundle("spec.trustBundle", bundle))
    if old is not None and signer != str(old_spec.get("signerName") or ""):
        problems.append(invalid("spec.signerName", signer, "field is immutable"))
    _raise_invalid(CTB_KIND, new, problems)


def _decode_spec(info: ResourceInfo, obj: Obj) -> None:
    """The type checks of decoding a request's spec (400s), as Go's JSON decoder makes them."""
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if not isinstance(spec, dict):
        raise _cannot_decode(PCR_KIND, info.version, "json: cannot unmarshal into Go struct field "
                                                     "PodCertificateRequest.spec of type v1.PodCertificateRequestSpec")
    for field in _STRING_FIELDS:
        if spec.get(field) is not None and not isinstance(spec[field], str):
            raise _cannot_decode(PCR_KIND, info.version, f"json: cannot unmarshal {_json_type(spec[field])} into Go "
                                                         f"struct field PodCertificateRequestSpec.spec.{field} of "
                                                         "type string")
    for field in _BYTES_FIELDS:
        _decode_bytes(spec.get(field), PCR_KIND, info.version, f"PodCertificateRequestSpec.spec.{field}")
    seconds = spec.get("maxExpirationSeconds")
    if seconds is None:  # the v1/v1beta1 defaulting, before any validation
        spec["maxExpirationSeconds"] = seconds = DEFAULT_MAX_EXPIRATION_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not -(2**31) <= seconds < 2**31:
        raise _cannot_decode(PCR_KIND, info.version, f"json: cannot unmarshal {_json_type(seconds)} into Go struct "
                                                     "field PodCertificateRequestSpec.spec.maxExpirationSeconds of "
                                                     "type int32")
    annotations = spec.get("unverifiedUserAnnotations")
    if annotations is not None and (not isinstance(annotations, dict)
                                    or not all(isinstance(v, str) for v in annotations.values())):
        raise _cannot_decode(PCR_KIND, info.version, "json: cannot unmarshal into Go struct field "
                                                     "PodCertificateRequestSpec.spec.unverifiedUserAnnotations of "
                                                     "type map[string]string")


def _decode_status(info: ResourceInfo, obj: Obj) -> None:
    """Type checks of a status (400s), and its times normalised as the apiserver stores them."""
    status = obj.get("status")
    if status is None:
        status = obj["status"] = {}
    if not isinstance(status, dict):
        raise _cannot_decode(PCR_KIND, info.version, "json: cannot unmarshal into Go struct field "
                                                     "PodCertificateRequest.status")
    try:
        for field in _STATUS_TIMES:
            moment = parse_time(status.get(field))
            if moment is not None:
                status[field] = format_time(moment)
            else:
                status.pop(field, None)
        chain = status.get("certificateChain")
        if chain is not None and not isinstance(chain, str):
            raise ValueError("json: cannot unmarshal into Go struct field status.certificateChain of type string")
        conditions = status.get("conditions")
        if conditions is not None and not isinstance(conditions, list):
            raise ValueError("json: cannot unmarshal into Go struct field status.conditions of type []v1.Condition")
        for condition in conditions or ():
            if not isinstance(condition, dict):
                raise ValueError("json: cannot unmarshal into Go struct field status.conditions of type v1.Condition")
            for field in ("type", "status", "reason", "message"):
                if condition.get(field) is not None and not isinstance(condition[field], str):
                    raise ValueError(f"json: cannot unmarshal into Go struct field Condition.status.conditions."
                                     f"{field} of type string")
            generation = condition.get("observedGeneration")
            if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
                raise ValueError("json: cannot unmarshal into Go struct field Condition.status.conditions."
                                 "observedGeneration of type int64")
            moment = parse_time(condition.get("lastTransitionTime"))
            if moment is not None:
                condition["lastTransitionTime"] = format_time(moment)
    except ValueError as exc:
        raise _cannot_decode(PCR_KIND, info.version, str(exc)) from None


def _str(spec: Mapping[str, Any], field: str) -> str:
    value = spec.get(field)
    return value if isinstance(value, str) else ""


def validate_create(obj: Obj) -> list[FieldError]:
    """``ValidatePodCertificateRequestCreate`` (metadata is checked by the store)."""
    spec: Obj = obj.get("spec") or {}
    problems: list[FieldError] = []
    signer = _str(spec, "signerName")
    problems.extend(validate_signer_name("spec.signerName", signer))
    annotations = spec.get("unverifiedUserAnnotations")
    if annotations is not None:
        problems.extend(validate_user_annotations(annotations, "spec.unverifiedUserAnnotations"))
    for field, kind in (("podName", "name"), ("podUID", "uid"), ("serviceAccountName", "name"),
                        ("serviceAccountUID", "uid"), ("nodeName", "name"), ("nodeUID", "uid")):
        value = _str(spec, field)
        if kind == "name":
            problems.extend(invalid(f"spec.{field}", value, msg) for msg in is_dns1123_subdomain(value))
            continue
        if not value:
            problems.append(invalid(f"spec.{field}", value, "must not be empty"))
        if len(value.encode()) > MAX_UID_LENGTH:
            problems.append(too_long(f"spec.{field}", MAX_UID_LENGTH))
    seconds = spec.get("maxExpirationSeconds")
    if seconds is None:
        problems.append(required("spec.maxExpirationSeconds", "must be set"))
        return problems
    upper = KUBERNETES_MAX_MAX_EXPIRATION_SECONDS if is_kubernetes_signer_name(signer) else MAX_MAX_EXPIRATION_SECONDS
    if not MIN_MAX_EXPIRATION_SECONDS <= int(seconds) <= upper:
        problems.append(invalid("spec.maxExpirationSeconds", seconds,
                                f"must be in the range [{MIN_MAX_EXPIRATION_SECONDS}, {upper}]"))
    stub = base64.b64decode(spec.get("stubPKCS10Request") or "")
    pkix = base64.b64decode(spec.get("pkixPublicKey") or "")
    proof = base64.b64decode(spec.get("proofOfPossession") or "")
    if stub and not pkix and not proof:
        problems.extend(validate_stub_pkcs10(stub))
    elif not stub and pkix and proof:
        problems.extend(validate_pkix_public_key(pkix, proof, _str(spec, "podUID")))
    else:
        problems.append(invalid_omitted("spec", "exactly one of (stubPKCS10Request) or (pkixPublicKey, "
                                                "proofOfPossession) must be set"))
    return problems


def validate_user_annotations(annotations: Mapping[str, str], path: str) -> list[FieldError]:
    """``ValidateUserAnnotations``: domain-prefixed keys (lower-cased), 256 KiB in all."""
    problems: list[FieldError] = []
    size = 0
    for key in sorted(annotations):
        lowered = key.lower()
        size += len(key.encode()) + len(str(annotations[key]).encode())
        if not lowered:
            problems.append(required(path))
            continue
        messages = is_qualified_name(lowered)
        if messages:
            problems.extend(invalid(path, lowered, msg) for msg in messages)
        elif len(lowered.split("/")) != 2:
            problems.append(invalid(path, lowered, 'must be a domain-prefixed key (such as "acme.io/foo")'))
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        problems.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return problems


def _semantic(value: Any) -> Any:
    """For ``apiequality.Semantic.DeepEqual``: zero values (absent, "", 0, [], {}) compare equal."""
    if isinstance(value, dict):
        return {k: _semantic(v) for k, v in value.items() if _semantic(v) not in (None, "", 0, False, [], {})}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _internal_spec(spec: Mapping[str, Any]) -> str:
    """The internal Go spec as ``json.Marshal`` prints it in an immutable-field error."""
    parts = []
    for go_name, field in _INTERNAL_SPEC_FIELDS:
        value = spec.get(field)
        if field in _STRING_FIELDS:
            value = value if isinstance(value, str) else ""
        elif (field in _BYTES_FIELDS and not value) or (field == "unverifiedUserAnnotations" and not value):
            value = None
        parts.append(f'"{go_name}":{go_json(value)}')
    return "{" + ",".join(parts) + "}"


def validate_spec_update(new: Obj, old: Obj) -> list[FieldError]:
    """``ValidatePodCertificateRequestUpdate``: the spec is immutable."""
    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if _semantic(new_spec) != _semantic(old_spec):
        return [FieldError("spec", "FieldValueInvalid", f"Invalid value: {_internal_spec(new_spec)}: "
                                                        "field is immutable")]
    return []


def _has_condition(obj: Obj, kind: str) -> bool:
    status = obj.get("status") or {}
    return any(isinstance(c, dict) and c.get("type") == kind and c.get("status") == "True"
               for c in status.get("conditions") or ())


def is_issued(obj: Obj) -> bool:
    return _has_condition(obj, ISSUED)


def is_denied(obj: Obj) -> bool:
    return _has_condition(obj, DENIED)


def is_failed(obj: Obj) -> bool:
    return _has_condition(obj, FAILED)


def is_terminal(obj: Obj) -> bool:
    return is_issued(obj) or is_denied(obj) or is_failed(obj)


def validate_conditions(conditions: list[Obj], path: str) -> list[FieldError]:
    """``metav1validation.ValidateConditions``."""
    problems: list[FieldError] = []
    seen: set[str] = set()
    for index, condition in enumerate(conditions):
        at = f"{path}[{index}]"
        kind = str(condition.get("type") or "")
        if kind in seen:
            problems.append(duplicate(at, kind))
        seen.add(kind)
        if not kind:
            problems.append(required(f"{at}.type", "is required"))
        else:
            problems.extend(invalid(f"{at}.type", kind, msg) for msg in is_qualified_name(kind))
        status = str(condition.get("status") or "")
        if not status:
            problems.append(required(f"{at}.status"))
        elif status not in ("True", "False", "Unknown"):
            problems.append(not_supported(f"{at}.status", status, ("False", "True", "Unknown")))
        generation = condition.get("observedGeneration")
        if isinstance(generation, int) and generation < 0:
            problems.append(invalid(f"{at}.observedGeneration", generation, "must be greater than or equal to zero"))
        if not condition.get("lastTransitionTime"):
            problems.append(required(f"{at}.lastTransitionTime"))
        reason = str(condition.get("reason") or "")
        if not reason:
            problems.append(required(f"{at}.reason"))
        else:
            if not _CONDITION_REASON_RE.fullmatch(reason):
                problems.append(invalid(f"{at}.reason", reason, _CONDITION_REASON_ERR))
            if len(reason.encode()) > MAX_CONDITION_REASON_LENGTH:
                problems.append(too_long(f"{at}.reason", MAX_CONDITION_REASON_LENGTH))
        if len(str(condition.get("message") or "").encode()) > MAX_CONDITION_MESSAGE_LENGTH:
            problems.append(too_long(f"{at}.message", MAX_CONDITION_MESSAGE_LENGTH))
    return problems


def validate_status_update(new: Obj, old: Obj, now: datetime.datetime) -> list[FieldError]:
    """``ValidatePodCertificateRequestStatusUpdate`` (the metadata and spec are the old ones already)."""
    status: Obj = new.get("status") or {}
    conditions = [c for c in status.get("conditions") or () if isinstance(c, dict)]
    problems: list[FieldError] = []
    known = 0
    for index, condition in enumerate(conditions):
        # kube-apiserver names these fields "status.conditions.[0].type": its formatIndex("[0]") is a child
        # name there, not an index (measured by tests/e2e/test_parity.py).
        at = f"status.conditions.[{index}]"
        kind = str(condition.get("type") or "")
        if kind in TERMINAL_CONDITIONS:
            known += 1
            if known > 1:
                problems.append(invalid(f"{at}.type", kind,
                                        'There may be at most one condition with type "Issued", "Denied", or '
                                        '"Failed"'))
            if condition.get("status") != "True":
                problems.append(not_supported(f"{at}.status", str(condition.get("status") or ""),
                                              ("True",)))
        else:
            problems.append(not_supported(f"{at}.type", kind, TERMINAL_CONDITIONS))
    problems.extend(validate_conditions(conditions, "status.conditions"))
    if problems:
        return problems
    if is_terminal(old):
        if _semantic(status) != _semantic(old.get("status") or {}):
            return [invalid_omitted("status", "immutable after PodCertificateRequest is issued, denied, or failed")]
        return []
    if is_denied(new) or is_failed(new):
        if _semantic(status) != _semantic({"conditions": status.get("conditions")}):
            return [invalid_omitted("status", "non-condition status fields must be empty when denying or failing "
                                              "the PodCertificateRequest")]
        return []
    if is_issued(new):
        return _validate_issued(new, old, now)
    if _semantic(status) != _semantic(old.get("status") or {}):
        return [invalid_omitted("status", 'status is immutable unless transitioning to "Issued", "Denied", or '
                                          '"Failed"')]
    return []


_EMAIL = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")


def _validate_issued(new: Obj, old: Obj, now: datetime.datetime) -> list[FieldError]:
    status: Obj = new.get("status") or {}
    spec: Obj = old.get("spec") or {}
    chain_path = PCR_PATHS["chain"]
    chain = str(status.get("certificateChain") or "")
    if len(chain.encode("utf-8", "surrogatepass")) > MAX_CERTIFICATE_CHAIN_SIZE:
        return [too_long(chain_path, MAX_CERTIFICATE_CHAIN_SIZE)]
    blocks = pem_blocks(chain)
    if not blocks:
        return [invalid(chain_path, chain, "issued certificate chain must contain at least one certificate")]
    leaf_block, rest = blocks[0], blocks[1:]
    if leaf_block.type != "CERTIFICATE":
        return [invalid(chain_path, chain, "issued certificate chain must consist entirely of CERTIFICATE PEM blocks")]
    leaf = _load_certificate(leaf_block.data)
    if leaf is None:
        return [invalid(chain_path, chain, "leaf certificate does not parse as valid X.509")]
    problems: list[FieldError] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
        emails = san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        dns_names, emails = [], []
    for dns_name in dns_names:
        if dns_name == "":
            problems.append(invalid(chain_path, dns_name, "leaf certificate should not contain empty DNSName"))
        if ".." in dns_name:
            problems.append(invalid(chain_path, dns_name, "leaf certificate's DNSName should not contain '..'"))
        if dns_name.startswith(".") or dns_name.endswith("."):
            problems.append(invalid(chain_path, dns_name, "leaf certificate's DNSName should not start or end with "
                                                          "'.'"))
    for email in emails:
        if not _EMAIL.fullmatch(email):
            problems.append(invalid(chain_path, email, "leaf certificate should not contain invalid EmailAddress"))
    wanted = requested_public_key(spec)
    if wanted is None:
        if spec.get("stubPKCS10Request"):
            return [*problems, invalid_omitted(PCR_PATHS["pkcs10"], "must be a valid PKCS#10 CSR")]
        return [*problems, invalid_omitted(PCR_PATHS["pkix"], "must be a valid PKIX-serialized public key")]
    if isinstance(wanted, (ed25519.Ed25519PublicKey, rsa.RSAPublicKey, ec.EllipticCurvePublicKey)) and \
            _public_key_der(wanted) != _public_key_der(leaf.public_key()):
        return [*problems, invalid(chain_path, chain, "leaf certificate was not issued to the requested public key")]
    times: dict[str, datetime.datetime | None] = {field: parse_time(status.get(field)) for field in _STATUS_TIMES}
    if times["notBefore"] is None:
        problems.append(required(PCR_PATHS["notBefore"], "must be present and consistent with the issued certificate"))
    if times["notAfter"] is None:
        problems.append(required(PCR_PATHS["notAfter"], "must be present and consistent with the issued certificate"))
    if times["beginRefreshAt"] is None:
        problems.append(required(PCR_PATHS["beginRefreshAt"], "must be present and in the range [notbefore+10min, "
                                                              "notafter-10min]"))
    not_before, not_after, refresh = times["notBefore"], times["notAfter"], times["beginRefreshAt"]
    if problems or not_before is None or not_after is None or refresh is None:
        return problems
    leaf_not_before, leaf_not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_before != leaf_not_before:
        return [invalid(PCR_PATHS["notBefore"], _go_time(not_before),
                        "must be set to the NotBefore time encoded in the leaf certificate")]
    skew = datetime.timedelta(minutes=5)
    if not now - skew < not_before < now + skew:
        return [invalid(PCR_PATHS["notBefore"], _go_time(not_before),
                        "must be set to within 5 minutes of kube-apiserver's current time")]
    if not_after != leaf_not_after:
        return [invalid(PCR_PATHS["notAfter"], _go_time(not_after),
                        "must be set to the NotAfter time encoded in the leaf certificate")]
    lifetime = leaf_not_after - leaf_not_before
    nanoseconds = (lifetime.days * 86400 + lifetime.seconds) * 10**9 + lifetime.microseconds * 1000
    if lifetime < datetime.timedelta(hours=1):
        return [invalid(chain_path, nanoseconds, "leaf certificate lifetime must be >= 1 hour")]
    max_seconds = int(spec.get("maxExpirationSeconds") or 0)
    if lifetime > datetime.timedelta(seconds=max_seconds):
        return [invalid(chain_path, nanoseconds,
                        f"leaf certificate lifetime must be <= spec.maxExpirationSeconds ({max_seconds})")]
    ten_minutes = datetime.timedelta(minutes=10)
    if refresh < not_before + ten_minutes:
        return [invalid(PCR_PATHS["beginRefreshAt"], _go_time(refresh), "must be at least 10 minutes after "
                                                                        "status.notBefore")]
    if refresh > not_after - ten_minutes:
        return [invalid(PCR_PATHS["beginRefreshAt"], _go_time(refresh), "must be at least 10 minutes before "
                                                                        "status.notAfter")]
    for block in rest:
        if block.type != "CERTIFICATE":
            # (sic: "CERTFICATE" is the apiserver's spelling for blocks after the leaf)
            return [invalid(chain_path, chain, "issued certificate chain must consist entirely of CERTFICATE PEM "
                                               "blocks")]
        if _load_certificate(block.data) is None:
            return [invalid(chain_path, chain, "intermediate certificate does not parse as valid X.509")]
    return []


# ----------------------------------------------------------------------- node restriction
def _forbidden(name: str, message: str) -> ApiError:
    """``admission.NewForbidden`` for a podcertificaterequests create (the name may be the generateName)."""
    return ApiError(403, f'podcertificaterequests.{GROUP} "{name}" is forbidden: {message}', "Forbidden",
                    errors.details(name, GROUP, "podcertificaterequests"))


def _plain(message: str) -> ApiError:
    """An admission plugin's plain error: the apiserver answers 500 with no reason (retries may succeed)."""
    return ApiError(500, message, "")


def node_restriction(emulator: Objects, node_name: str, namespace: str, body: Obj) -> None:
    """The NodeRestriction admission plugin for a node (``system:node:<node_name>``) creating a request.

    Checks, in the plugin's order: the request names this node, the node exists with the request's
    node UID, the pod exists with its UID and runs on that node, it is no mirror pod, the service
    account name is the pod's and the service account exists with the request's UID, and the pod
    mounts a ``podCertificate`` projected volume source for the signer (the plugin's other way, an
    RBAC permission ``request-serviceaccounts-podcertificate-signer``, does not exist here).
    """
    meta = body.get("metadata") or {}
    name = str(meta.get("name") or meta.get("generateName") or "Unknown")
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    pod_name = _str(spec, "podName")
    where = f"{namespace}/{pod_name}"
    if _str(spec, "nodeName") != node_name:
        raise _forbidden(name, f"PodCertificateRequest.Spec.NodeName={go_json(_str(spec, 'nodeName'))}, which is not "
                               f"the requesting node {go_json(node_name)}")
    node = emulator._find(emulator.resource("v1", "nodes"), None, node_name)
    if node is None:
        raise _plain(f'while retrieving node "{node_name}" named in the PodCertificateRequest: nodes "{node_name}" '
                     "not found")
    if node["metadata"].get("uid") != _str(spec, "nodeUID"):
        raise _plain(f"PodCertificateRequest for pod {go_json(where)} names node UID {go_json(_str(spec, 'nodeUID'))}, "
                     f"inconsistent with the running node ({go_json(node['metadata'].get('uid'))})")
    pod = emulator._find(emulator.resource("v1", "pods"), namespace, pod_name)
    if pod is None:
        raise _plain(f'while retrieving pod "{where}" named in the PodCertificateRequest: pods "{pod_name}" not found')
    if pod["metadata"].get("uid") != _str(spec, "podUID"):
        raise _plain(f"PodCertificateRequest for pod {go_json(where)} contains pod UID "
                     f"({go_json(_str(spec, 'podUID'))}) which differs from running pod "
                     f"{go_json(pod['metadata'].get('uid'))}")
    pod_spec = pod.get("spec") or {}
    if pod_spec.get("nodeName") != node_name:
        raise _forbidden(name, f'pod "{where}" is not running on node "{node_name}" named in the '
                               "PodCertificateRequest")
    if MIRROR_POD_ANNOTATION in (pod["metadata"].get("annotations") or {}):
        raise _forbidden(name, f'pod "{where}" is a mirror pod')
    account = _str(spec, "serviceAccountName")
    if account != pod_spec.get("serviceAccountName"):
        raise _forbidden(name, f"PodCertificateRequest for pod {go_json(where)} contains serviceAccountName "
                               f"({go_json(account)}) that differs from running pod "
                               f"({go_json(pod_spec.get('serviceAccountName') or '')})")
    sa = emulator._find(emulator.resource("v1", "serviceaccounts"), namespace, account)
    if sa is None:
        raise _plain(f'while retrieving service account "{namespace}/{account}" named in the PodCertificateRequest: '
                     f'serviceaccounts "{account}" not found')
    if sa["metadata"].get("uid") != _str(spec, "serviceAccountUID"):
        raise _plain(f"PodCertificateRequest for pod {go_json(where)} names service account UID "
                     f"{go_json(_str(spec, 'serviceAccountUID'))}, which differs from the running service account "
                     f"({go_json(sa['metadata'].get('uid'))})")
    signer = _str(spec, "signerName")
    if not pod_mounts_signer(pod, signer):
        raise _forbidden(name, f'pod "{where}" does not mount a podCertificate projected volume for signer '
                               f'"{signer}"')


def pod_mounts_signer(pod: Mapping[str, Any], signer_name: str) -> bool:
    """Whether a pod has a projected volume with a ``podCertificate`` source for ``signer_name``."""
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        projected = volume.get("projected") if isinstance(volume, dict) else None
        for source in (projected or {}).get("sources") or ():
            certificate = source.get("podCertificate") if isinstance(source, dict) else None
            if isinstance(certificate, dict) and certificate.get("signerName") == signer_name:
                return True
    return False
