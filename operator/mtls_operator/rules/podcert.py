"""Signing PodCertificateRequests (certificates.k8s.io v1 and v1beta1, KEP-4317): pure rules.

The kubelet keeps a pod's private key in memory and asks for its certificate with a
PodCertificateRequest; this signer answers with the same X.509-SVID the Secret path would give that
pod (its SPIFFE ID from namespace and service account, the identity's DNS names and the pod's own
headless names, the identity's usages), or refuses. Everything here is a function of what the
controller read (the request, the pod, its service account and node, the identities of the
namespace) and of ``now``: no I/O, no clock, no kopf or kubernetes.

What is checked, in order; the first failure is the answer (``Denied`` is the user's to fix,
``Failed`` the operator's):

1. the request is well formed (the API server checks the same at creation; a signer trusts nothing
   it did not check) and carries no ``unverifiedUserAnnotations`` (this signer defines none, and
   the API asks signers to deny keys they do not recognise: ``InvalidUnverifiedUserAnnotations``);
2. the pod it names exists in the request's own namespace with that UID, is neither finished nor
   terminating, runs as that service account (name and UID) on that node (name and UID), and mounts
   a ``podCertificate`` projected volume for this signer: a request written by anyone but that
   pod's kubelet is refused even when the NodeRestriction admission plugin did not judge it;
3. the key: the stub PKCS#10's self-signature (or v1beta1's proof of possession over the pod UID)
   verifies, and its type is one the API allows (``UnsupportedKeyType`` otherwise);
4. an identity serves the pod under the Secret path's rules (opted in, selector, service account,
   the oldest of several wins), and the key type is the one the identity's ``privateKey`` names
   (``UnsupportedKeyType``, naming the key type to use);
5. the lifetime is the identity's duration (already capped by the cluster's maximum), capped by
   ``maxExpirationSeconds``; ``beginRefreshAt`` is the project's renewal time for it (with the
   caller's jitter), kept within [notBefore + 10m, notAfter - 10m] as the API demands.

``issued_status_problem`` is the API server's own status validation for an issued request, ported,
so that a status it would reject is never written (it becomes ``Failed``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mtls_operator import constants as c
from mtls_operator.errors import PKIError
from mtls_operator.models import KeySpec
from mtls_operator.pki import CHAIN_LIMITS, LeafRequest, parse_pem_certificates
from mtls_operator.pki.request import (
    PublicKey,
    RequestKeyError,
    key_type,
    proven_pkix_key,
    public_key_der,
    stub_request_key,
)
from mtls_operator.rules.delivery import (
    CERTIFICATES_GROUP,
    MAX_MAX_EXPIRATION_SECONDS,
    MIN_MAX_EXPIRATION_SECONDS,
    delivered_by_pod_certificate,
)
from mtls_operator.rules.plan import IdentityRef, PodInfo, bounded_message, pod_info, pod_spec, serving_identity
from mtls_operator.rules.policy import is_dns1123_label, is_dns1123_subdomain, spiffe_id
from mtls_operator.rules.renewal import jittered_renewal_time, renewal_time
from mtls_operator.rules.spec import POD_CERTIFICATE_KEY_TYPES, IdentitySpec, format_duration
from mtls_operator.times import format_time, parse_time

GROUP: Final = CERTIFICATES_GROUP
RESOURCE: Final = "podcertificaterequests"
# Newest first: the operator uses the first one the API server serves.
VERSIONS: Final = ("v1", "v1beta1")
DEFAULT_SIGNER_NAME: Final = "mtls.dev/spiffe"

# Condition types and the reasons the API defines (certificates/v1 types.go).
ISSUED: Final = "Issued"
DENIED: Final = "Denied"
FAILED: Final = "Failed"
TERMINAL_CONDITIONS: Final = (ISSUED, DENIED, FAILED)
UNSUPPORTED_KEY_TYPE: Final = "UnsupportedKeyType"
INVALID_USER_ANNOTATIONS: Final = "InvalidUnverifiedUserAnnotations"
# This signer's own reasons.
INVALID_REQUEST: Final = "InvalidRequest"
INVALID_PROOF: Final = "InvalidProofOfPossession"
POD_NOT_FOUND: Final = "PodNotFound"
POD_MISMATCH: Final = "PodMismatch"
POD_NOT_RUNNING: Final = "PodNotRunning"
SERVICE_ACCOUNT_MISMATCH: Final = "ServiceAccountMismatch"
NODE_MISMATCH: Final = "NodeMismatch"
NO_VOLUME: Final = "NoPodCertificateVolume"
NO_IDENTITY: Final = "NoIdentity"
INVALID_POD: Final = "InvalidPodDNSName"
CA_UNAVAILABLE: Final = "CAUnavailable"
SIGNING_FAILED: Final = "SigningFailed"

# Every reason this signer writes (the API's two, then its own).
REASONS: Final = (ISSUED, UNSUPPORTED_KEY_TYPE, INVALID_USER_ANNOTATIONS, INVALID_REQUEST, INVALID_PROOF,
                  POD_NOT_FOUND, POD_MISMATCH, POD_NOT_RUNNING, SERVICE_ACCOUNT_MISMATCH, NODE_MISMATCH, NO_VOLUME,
                  NO_IDENTITY, INVALID_POD, CA_UNAVAILABLE, SIGNING_FAILED)

# The API's bounds (pkg/apis/certificates/types.go and validation.go).
DEFAULT_MAX_EXPIRATION: Final = timedelta(seconds=86400)
MIN_MAX_EXPIRATION: Final = timedelta(seconds=MIN_MAX_EXPIRATION_SECONDS)
MAX_MAX_EXPIRATION: Final = timedelta(seconds=MAX_MAX_EXPIRATION_SECONDS)
MIN_LIFETIME: Final = timedelta(hours=1)
REFRESH_MARGIN: Final = timedelta(minutes=10)
MAX_CERTIFICATE_CHAIN_BYTES: Final = 100 * 1024
# notBefore must be within this of the API server's clock when the status is written.
NOT_BEFORE_SKEW: Final = timedelta(minutes=5)
MAX_UID_LENGTH: Final = 128
# The most of a base64 field decoded: the API's 10 KiB limits, as base64 text.
_MAX_BASE64_CHARS: Final = 4 * -(-10 * 1024 // 3)
_CONDITION_REASON_RE = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
MAX_CONDITION_MESSAGE: Final = 32768
_MAX_SIGNER_NAME_LENGTH: Final = 253 + 253 + 63 + 1 + 1


# --- the signer's name -------------------------------------------------------------------------------


def signer_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be this signer's name (the API's ValidateSignerName, and ``kubernetes.io`` is
    reserved for the Kubernetes project), or None."""
    domain, slash, path = name.partition("/")
    if not slash or "/" in path:
        return "must be a domain and a path, such as 'example.com/my-signer'"
    if len(name) > _MAX_SIGNER_NAME_LENGTH:
        return f"must be at most {_MAX_SIGNER_NAME_LENGTH} characters"
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(is_dns1123_label(label) for label in labels):
        return f"{domain!r} must be a lower-case DNS domain of at least two labels, such as 'example.com'"
    if domain == "kubernetes.io" or domain.endswith(".kubernetes.io"):
        return "signer names under kubernetes.io are reserved for the Kubernetes project"
    if not all(is_dns1123_subdomain(part) and "." not in part for part in path.split(".")):
        return f"the path {path!r} must be dot-separated lower-case names of letters, digits and '-'"
    return None


# --- the request -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodCertificateRequest:
    """A PodCertificateRequest as read, v1 or v1beta1. ``problems``: what is malformed in it."""

    namespace: str
    name: str
    uid: str
    signer_name: str
    pod_name: str
    pod_uid: str
    service_account_name: str
    service_account_uid: str
    node_name: str
    node_uid: str
    max_expiration: timedelta
    stub_pkcs10: bytes | None = field(default=None, repr=False)
    pkix_public_key: bytes | None = field(default=None, repr=False)
    proof_of_possession: bytes | None = field(default=None, repr=False)
    user_annotations: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        """Issued, denied or failed already: its status may never change again."""
        return any(kind in TERMINAL_CONDITIONS for kind in self.conditions)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _bytes_field(spec: Mapping[str, Any], key: str, problems: list[str]) -> bytes | None:
    value = spec.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        problems.append(f"spec.{key} must be base64 text")
        return None
    if len(value) > _MAX_BASE64_CHARS:
        problems.append(f"spec.{key} is over the API's 10 KiB limit")
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"spec.{key} is not valid base64")
        return None


def parse_request(body: Mapping[str, Any]) -> PodCertificateRequest:
    """Read a PodCertificateRequest, whatever it holds: never raises; malformed parts are ``problems``."""
    metadata, spec, status = _mapping(body.get("metadata")), _mapping(body.get("spec")), _mapping(body.get("status"))
    problems: list[str] = []
    fields = {key: _text(spec, key) for key in (
        "signerName", "podName", "podUID", "serviceAccountName", "serviceAccountUID", "nodeName", "nodeUID")}
    for key, value in fields.items():
        if not value:
            problems.append(f"spec.{key} is required")
        elif key.endswith("UID") and len(value) > MAX_UID_LENGTH:
            problems.append(f"spec.{key} is longer than {MAX_UID_LENGTH} characters")
    raw_expiration = spec.get("maxExpirationSeconds")
    max_expiration = DEFAULT_MAX_EXPIRATION
    if raw_expiration is not None:
        if isinstance(raw_expiration, int) and not isinstance(raw_expiration, bool):
            max_expiration = timedelta(seconds=raw_expiration)
        else:
            problems.append("spec.maxExpirationSeconds must be a whole number of seconds")
    if not MIN_MAX_EXPIRATION <= max_expiration <= MAX_MAX_EXPIRATION:
        problems.append(f"spec.maxExpirationSeconds must be in [{int(MIN_MAX_EXPIRATION.total_seconds())}, "
                        f"{int(MAX_MAX_EXPIRATION.total_seconds())}]")
    stub = _bytes_field(spec, "stubPKCS10Request", problems)
    pkix = _bytes_field(spec, "pkixPublicKey", problems)
    proof = _bytes_field(spec, "proofOfPossession", problems)
    if not problems and not (stub is not None and pkix is None and proof is None) and not (
            stub is None and pkix is not None and proof is not None):
        problems.append("exactly one of spec.stubPKCS10Request or (spec.pkixPublicKey, spec.proofOfPossession) "
                        "must be set")
    annotations = spec.get("unverifiedUserAnnotations")
    raw_conditions = status.get("conditions")
    conditions = tuple(
        str(cond.get("type")) for cond in (raw_conditions if isinstance(raw_conditions, list) else [])
        if isinstance(cond, Mapping) and cond.get("status") == "True"
    )
    return PodCertificateRequest(
        namespace=_text(metadata, "namespace"),
        name=_text(metadata, "name"),
        uid=_text(metadata, "uid"),
        signer_name=fields["signerName"],
        pod_name=fields["podName"],
        pod_uid=fields["podUID"],
        service_account_name=fields["serviceAccountName"],
        service_account_uid=fields["serviceAccountUID"],
        node_name=fields["nodeName"],
        node_uid=fields["nodeUID"],
        max_expiration=max_expiration,
        stub_pkcs10=stub,
        pkix_public_key=pkix,
        proof_of_possession=proof,
        user_annotations=tuple(sorted(str(key) for key in annotations)) if isinstance(annotations, Mapping) else (),
        conditions=conditions,
        problems=tuple(problems),
    )


# --- what the signer read about the pod ----------------------------------------------------------------


@dataclass(frozen=True)
class PodFacts:
    """The pod a request names, as read from its namespace, with its service account's and node's UIDs
    (None: not found)."""

    pod: PodInfo
    node_name: str
    certificate_volume: bool
    service_account_uid: str | None
    node_uid: str | None


def pod_facts(pod: Mapping[str, Any], signer_name: str, *, service_account: Mapping[str, Any] | None,
              node: Mapping[str, Any] | None) -> PodFacts:
    info = pod_info(pod)
    return PodFacts(
        pod=info,
        node_name=_text(_mapping(pod.get("spec")), "nodeName"),
        # The pod's delivery, decided by its own volume as the reconciler decides it (delivery.py).
        certificate_volume=delivered_by_pod_certificate(info.pod_certificate_signers, signer_name),
        service_account_uid=_uid(service_account),
        node_uid=_uid(node),
    )


def _uid(body: Mapping[str, Any] | None) -> str | None:
    return None if body is None else _text(_mapping(body.get("metadata")), "uid")


@dataclass(frozen=True)
class Candidate:
    """An identity of the request's namespace: ``ref`` selects nothing when its spec is invalid, and
    ``spec`` is what it serves (the policy's allowed spec; None when invalid)."""

    ref: IdentityRef
    spec: IdentitySpec | None


# --- the decision ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A ``Denied`` (the request, the pod or the identities must change) or ``Failed`` (the operator's
    trouble) answer. ``identity``: the identity that serves the pod, when one does (its Events)."""

    condition: str
    reason: str
    message: str
    identity: IdentityRef | None = None


@dataclass(frozen=True)
class Grant:
    """What to sign: the leaf (with the lifetime to give it) for ``public_key``, and when to refresh."""

    identity: IdentityRef
    leaf: LeafRequest
    public_key: PublicKey = field(repr=False)
    renew_before: timedelta


def _denied(reason: str, message: str, identity: IdentityRef | None = None) -> Refusal:
    return Refusal(DENIED, reason, message, identity)


def decide(request: PodCertificateRequest, facts: PodFacts | None, candidates: Sequence[Candidate], *,
           trust_domain: str, cluster_domain: str) -> Grant | Refusal:
    """Sign or refuse ``request`` (whose signer is this one). ``facts`` is None when the pod is not found."""
    refusal = _request_refusal(request) or _pod_refusal(request, facts)
    if refusal is not None:
        return refusal
    assert facts is not None
    try:
        public_key = request_public_key(request)
    except RequestKeyError as exc:
        return _denied(UNSUPPORTED_KEY_TYPE if exc.unsupported else INVALID_PROOF, str(exc))
    pod = facts.pod
    owner = serving_identity(pod, [candidate.ref for candidate in candidates])
    if owner is None:
        return _denied(NO_IDENTITY, (
            f"no MTLSIdentity in namespace {pod.namespace} serves pod {pod.name}: the pod needs the label "
            f"{c.INJECT_LABEL}={c.INJECT_VALUE} and an identity whose selector (and serviceAccountName, if set) "
            f"matches it"))
    spec = next(candidate.spec for candidate in candidates if candidate.ref is owner)
    if spec is None:  # an invalid identity selects nothing, so this is only a caller's inconsistency
        return Refusal(FAILED, SIGNING_FAILED, f"the spec of identity {owner.name} could not be read", owner)
    wanted = POD_CERTIFICATE_KEY_TYPES.get(spec.private_key)
    have = key_type(public_key)
    if wanted != have:
        return _denied(UNSUPPORTED_KEY_TYPE, _key_type_message(owner, spec.private_key, have, wanted), owner)
    try:
        served = pod_spec(spec, pod, cluster_domain)
    except ValueError as exc:
        return _denied(INVALID_POD, str(exc), owner)
    lifetime = min(served.duration, request.max_expiration)
    leaf = LeafRequest(spiffe_id=spiffe_id(trust_domain, pod.namespace, pod.service_account),
                       dns_names=served.dns_names, usages=served.usages,
                       key=served.private_key, duration=lifetime)
    return Grant(identity=owner, leaf=leaf, public_key=public_key, renew_before=served.renew_before)


def _key_type_message(owner: IdentityRef, key: KeySpec, have: str, wanted: str | None) -> str:
    if wanted is None:
        return (f"identity {owner.name} asks for {key} keys, which the kubelet cannot generate: set its "
                f"privateKey to ECDSA, Ed25519 or RSA 3072/4096 to serve pods by PodCertificate")
    return (f"the request's key is {have}, but identity {owner.name} asks for {key} keys: "
            f"set keyType: {wanted} in the pod's podCertificate volume")


def _request_refusal(request: PodCertificateRequest) -> Refusal | None:
    if request.problems:
        return _denied(INVALID_REQUEST, "; ".join(request.problems))
    if request.user_annotations:
        listed = ", ".join(repr(key) for key in request.user_annotations[:5])
        return _denied(INVALID_USER_ANNOTATIONS,
                       f"this signer recognises no unverifiedUserAnnotations; remove {listed} from the pod's "
                       "podCertificate volume (userAnnotations)")
    return None


def _pod_refusal(request: PodCertificateRequest, facts: PodFacts | None) -> Refusal | None:
    where = f"{request.namespace}/{request.pod_name}"
    if facts is None:
        return _denied(POD_NOT_FOUND, f"pod {where} does not exist (a request is only for a pod of its own "
                                      "namespace)")
    pod = facts.pod
    if pod.uid != request.pod_uid:
        return _denied(POD_MISMATCH, f"the request names pod UID {request.pod_uid}, but pod {where} has UID "
                                     f"{pod.uid}: it is for an earlier pod of that name")
    if pod.finished or pod.terminating:
        state = "has finished" if pod.finished else "is terminating"
        return _denied(POD_NOT_RUNNING, f"pod {where} {state}: it gets no new certificate")
    if pod.service_account != request.service_account_name:
        return _denied(SERVICE_ACCOUNT_MISMATCH, f"the request names service account "
                       f"{request.service_account_name}, but pod {where} runs as {pod.service_account}")
    if facts.service_account_uid != request.service_account_uid:
        found = "does not exist" if facts.service_account_uid is None else f"has UID {facts.service_account_uid}"
        return _denied(SERVICE_ACCOUNT_MISMATCH, f"the request names service account UID "
                       f"{request.service_account_uid}, but service account {request.namespace}/"
                       f"{request.service_account_name} {found}")
    if facts.node_name != request.node_name:
        running = f"runs on node {facts.node_name}" if facts.node_name else "is not scheduled to a node"
        return _denied(NODE_MISMATCH, f"the request names node {request.node_name}, but pod {where} {running}")
    if facts.node_uid != request.node_uid:
        found = "does not exist" if facts.node_uid is None else f"has UID {facts.node_uid}"
        return _denied(NODE_MISMATCH, f"the request names node UID {request.node_uid}, but node "
                                      f"{request.node_name} {found}")
    if not facts.certificate_volume:
        return _denied(NO_VOLUME, f"pod {where} has no {c.IDENTITY_VOLUME} volume with a podCertificate source for "
                                  f"signer {request.signer_name}: it is served by Secret, and only a pod's own "
                                  "kubelet asks for its certificate")
    return None


def request_public_key(request: PodCertificateRequest) -> PublicKey:
    """The key the request proves it holds; RequestKeyError otherwise (``unsupported``: its type)."""
    if request.stub_pkcs10 is not None:
        return stub_request_key(request.stub_pkcs10)
    if request.pkix_public_key is None or request.proof_of_possession is None:
        raise RequestKeyError("the request carries no public key")
    return proven_pkix_key(request.pkix_public_key, request.proof_of_possession, request.pod_uid)


# --- the status ---------------------------------------------------------------------------------------------


def begin_refresh_at(not_before: datetime, not_after: datetime, renew_before: timedelta | None,
                     jitter: float) -> datetime:
    """The project's renewal time (``renewal.renewal_time``, moved earlier by ``jitter`` as Secrets are),
    within [notBefore + 10m, notAfter - 10m]; whole seconds."""
    renew_at = jittered_renewal_time(renewal_time(not_before, not_after, renew_before), not_after, jitter)
    earliest = not_before + REFRESH_MARGIN
    latest = not_after - REFRESH_MARGIN
    return max(earliest, min(renew_at, latest)).replace(microsecond=0)


def _condition(kind: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason,
            "message": bounded_message(message, MAX_CONDITION_MESSAGE), "lastTransitionTime": format_time(now)}


def issued_status(chain_pem: bytes, not_before: datetime, not_after: datetime, refresh_at: datetime, *,
                  message: str, now: datetime) -> dict[str, Any]:
    return {
        "conditions": [_condition(ISSUED, ISSUED, message, now)],
        "certificateChain": chain_pem.decode("ascii"),
        "notBefore": format_time(not_before),
        "notAfter": format_time(not_after),
        "beginRefreshAt": format_time(refresh_at),
    }


def refused_status(refusal: Refusal, now: datetime) -> dict[str, Any]:
    """Only the condition: the API refuses any other status field on a denied or failed request."""
    return {"conditions": [_condition(refusal.condition, refusal.reason, refusal.message, now)]}


def issued_status_problem(status: Mapping[str, Any], request: PodCertificateRequest, public_key: PublicKey,
                          now: datetime) -> str | None:
    """Why the API server would refuse ``status`` for ``request`` (its ValidatePodCertificateRequestStatusUpdate
    for an issued request, ported), or None."""
    conditions = status.get("conditions") or []
    for cond in conditions:
        if not _CONDITION_REASON_RE.fullmatch(str(cond.get("reason", ""))):
            return f"condition reason {cond.get('reason')!r} is not CamelCase"
    if [cond.get("type") for cond in conditions if cond.get("type") in TERMINAL_CONDITIONS] != [ISSUED]:
        return "exactly one terminal condition, Issued, must be set"
    chain = str(status.get("certificateChain") or "").encode()
    if len(chain) > MAX_CERTIFICATE_CHAIN_BYTES:
        return f"certificateChain is over {MAX_CERTIFICATE_CHAIN_BYTES} bytes"
    try:
        certs = parse_pem_certificates(chain, CHAIN_LIMITS)
    except PKIError as exc:
        return f"certificateChain is not a chain of certificates: {exc}"
    leaf = certs[0]
    problem = _leaf_names_problem(leaf)
    if problem is not None:
        return problem
    if _spki(leaf) != public_key_der(public_key):
        return "the leaf certificate was not issued to the requested public key"
    not_before = parse_time(status.get("notBefore"))
    not_after = parse_time(status.get("notAfter"))
    refresh = parse_time(status.get("beginRefreshAt"))
    if not_before is None or not_after is None or refresh is None:
        return "notBefore, notAfter and beginRefreshAt must all be set"
    if not_before != leaf.not_valid_before_utc or not_after != leaf.not_valid_after_utc:
        return "notBefore and notAfter must be the leaf certificate's"
    if not now - NOT_BEFORE_SKEW < not_before < now + NOT_BEFORE_SKEW:
        return "notBefore must be within 5 minutes of now"
    lifetime = not_after - not_before
    if lifetime < MIN_LIFETIME:
        return (f"the certificate would live {format_duration(lifetime)}, under the API's minimum of 1h "
                "(the CA expires too soon: rotate it)")
    if lifetime > request.max_expiration:
        return f"the certificate's lifetime {format_duration(lifetime)} is over spec.maxExpirationSeconds"
    if refresh < not_before + REFRESH_MARGIN or refresh > not_after - REFRESH_MARGIN:
        return "beginRefreshAt must be within [notBefore + 10m, notAfter - 10m]"
    return None


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _leaf_names_problem(leaf: x509.Certificate) -> str | None:
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for name in names.get_values_for_type(x509.DNSName):
        if not name or ".." in name or name.startswith(".") or name.endswith("."):
            return f"the leaf's DNS name {name!r} is not one the API accepts"
    return None


# A CA rotation and the certificates the kubelet holds ------------------------------------------------


@dataclass(frozen=True)
class HeldByKubelets:
    """The pod certificates live pods hold (their newest Issued request) that the signing CA did not sign:
    during a CA rotation's Reissuing phase, those of the previous CA. The operator cannot renew them;
    the kubelet asks again at ``beginRefreshAt``, so ``refresh_by`` is the last of those times."""

    count: int = 0
    refresh_by: datetime | None = None
    pods: tuple[str, ...] = ()  # namespace/name, sorted


def _issued_leaf(body: Mapping[str, Any]) -> x509.Certificate | None:
    status = _mapping(body.get("status"))
    kinds = {_text(_mapping(cond), "type") for cond in status.get("conditions") or [] if isinstance(cond, Mapping)}
    chain = status.get("certificateChain")
    if ISSUED not in kinds or not isinstance(chain, str):
        return None
    try:
        return parse_pem_certificates(chain.encode(), CHAIN_LIMITS)[0]
    except (PKIError, ValueError, IndexError):
        return None


def _signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def held_by_kubelets(requests: Sequence[Mapping[str, Any]], pods: Sequence[PodInfo], signer_name: str,
                     signing: x509.Certificate, now: datetime) -> HeldByKubelets:
    """Of the live ``pods`` whose volume asks ``signer_name``, those whose newest Issued request carries a
    leaf ``signing`` did not sign and that is still valid. An expired leaf is not counted: a rotation
    waits for these at most until the last of them expires, never forever."""
    live = {pod.uid: pod for pod in pods if not pod.finished and signer_name in pod.pod_certificate_signers}
    newest: dict[str, tuple[tuple[str, bool], x509.Certificate, Mapping[str, Any]]] = {}
    for body in requests:
        spec = _mapping(body.get("spec"))
        uid = _text(spec, "podUID")
        if _text(spec, "signerName") != signer_name or uid not in live:
            continue
        leaf = _issued_leaf(body)
        if leaf is None:
            continue
        # Newest by creation (whole seconds); within one second, the current CA's leaf is taken as the
        # newer (requests answered across the switch in that second).
        order = (_text(_mapping(body.get("metadata")), "creationTimestamp"), _signed_by(leaf, signing))
        if uid not in newest or order > newest[uid][0]:
            newest[uid] = (order, leaf, body)
    count, refresh_by, held = 0, None, []
    for uid, ((_, current), leaf, body) in newest.items():
        if current or leaf.not_valid_after_utc <= now:
            continue
        count += 1
        pod = live[uid]
        held.append(f"{pod.namespace}/{pod.name}")
        refresh = parse_time(_mapping(body.get("status")).get("beginRefreshAt")) or leaf.not_valid_after_utc
        if refresh_by is None or refresh > refresh_by:
            refresh_by = refresh
    return HeldByKubelets(count, refresh_by, tuple(sorted(held)))
