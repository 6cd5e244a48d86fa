"""Pure planning: from the objects read off the cluster to the Secrets and status that should exist.

No I/O, no clock: the reconciler reads the cluster, calls these functions with ``now``, and
writes what they return. Everything here is table-tested in ``tests/unit/test_plan.py``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography import x509

from mtls_operator import constants as c
from mtls_operator.errors import PKIError, SpecError
from mtls_operator.pki import (
    BUNDLE_LIMITS,
    CHAIN_LIMITS,
    MAX_KEY_PEM_BYTES,
    key_matches_certificate,
    load_private_key_pem,
    parse_pem_certificates,
)
from mtls_operator.pki.keystore import Pkcs12Profile, keystore_p12, password_problem, truststore_p12
from mtls_operator.rules.delivery import PodCertificateSource, pod_certificate_signers
from mtls_operator.rules.policy import is_dns1123_subdomain, pod_dns_names
from mtls_operator.rules.renewal import IssuedState
from mtls_operator.rules.spec import IdentitySpec, LabelSelector, Pkcs12Keystore, parse_label_selector
from mtls_operator.times import format_time, parse_time

_HASH_SUFFIX_LENGTH = 10
MAX_LABEL_VALUE_LENGTH = 63
# The most one Secret value may decode to, checked before decoding: Kubernetes refuses a Secret of
# more than 1 MiB, so nothing legitimate is larger.
MAX_SECRET_VALUE_BYTES = BUNDLE_LIMITS.max_bytes




# Pods and identities as the planner sees them ---------------------------------------------------


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    service_account: str
    secret_name_annotation: str | None
    terminating: bool
    finished: bool
    # spec.hostname and spec.subdomain as the pod has them (a StatefulSet pod has both); unchecked
    # here, so that a bad value is an error on that pod (pod_spec), never on the listing.
    hostname: str | None = None
    subdomain: str | None = None
    # The signers of the podCertificate sources of the pod's mtls-identity volume (rules/delivery.py).
    pod_certificate_signers: frozenset[str] = frozenset()

    @property
    def opted_in(self) -> bool:
        return self.labels.get(c.INJECT_LABEL) == c.INJECT_VALUE


# pod_info and identity_ref are the edge parsing of pods and identities into the rules' own typed
# views (PodInfo, IdentityRef). They stay here, not in k8s/views.py, because the pure admission rules
# (rules/injection.py parses the pod of an AdmissionReview) use them, and rules/ may not import k8s/.
def pod_info(body: Mapping[str, Any], *, shared: bool = False) -> PodInfo:
    """``shared``: the namespace, the label names and values and the service account interned (one copy of
    each string thousands of stored pods share)."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    annotations = metadata.get("annotations") or {}
    secret_name = annotations.get(c.SECRET_NAME_ANNOTATION)
    text = sys.intern if shared else str
    return PodInfo(
        namespace=text(str(metadata.get("namespace") or "")),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        labels={text(str(k)): text(str(v)) for k, v in (metadata.get("labels") or {}).items()},
        service_account=text(str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")),
        secret_name_annotation=str(secret_name) if secret_name else None,
        terminating=bool(metadata.get("deletionTimestamp")),
        finished=status.get("phase") in ("Succeeded", "Failed"),
        hostname=_optional_text(spec.get("hostname")),
        subdomain=_optional_text(spec.get("subdomain")),
        pod_certificate_signers=pod_certificate_signers(spec.get("volumes")),
    )


def _optional_text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def pod_spec(spec: IdentitySpec, pod: PodInfo, cluster_domain: str) -> IdentitySpec:
    """The spec of one pod's certificate: the identity's, plus the pod's own headless DNS names.

    A pod with ``spec.hostname`` and ``spec.subdomain`` (a StatefulSet pod behind its headless
    Service) answers to ``<hostname>.<subdomain>.<ns>.svc[.<cluster-domain>]``, a name no other pod
    has: the reason to give each pod its own certificate. The names are in the spec, so in its
    certificate hash: a pod whose headless name differs from what its Secret was issued for is
    re-issued. ``ValueError`` (naming the pod) for a hostname or subdomain that is not a DNS label.
    """
    if not pod.hostname or not pod.subdomain:
        return spec
    try:
        names = pod_dns_names(pod.hostname, pod.subdomain, pod.namespace, cluster_domain)
    except ValueError as exc:
        raise ValueError(f"pod {pod.name}: {exc}") from None
    return replace(spec, dns_names=tuple(dict.fromkeys((*spec.dns_names, *names))))


@dataclass(frozen=True)
class IdentityRef:
    """Just enough of an identity to decide which one serves a pod."""

    namespace: str
    name: str
    uid: str
    created: datetime
    selector: LabelSelector | None  # None: the selector is invalid, so it selects nothing
    service_account: str | None
    # What the kubelet is asked for when the identity delivers by PodCertificate; None: by Secret.
    pod_certificate: PodCertificateSource | None = None

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.created, self.name)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def identity_ref(body: Mapping[str, Any], *, valid: bool = True,
                 pod_certificate: PodCertificateSource | None = None) -> IdentityRef:
    """``valid=False`` for an identity whose spec is invalid: it selects nothing, so it takes no part in
    conflicts (an older identity with a broken spec must not keep pods from a working one)."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    try:
        selector: LabelSelector | None = parse_label_selector(spec.get("selector")) if valid else None
    except SpecError:
        selector = None
    account = spec.get("serviceAccountName")
    return IdentityRef(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        created=parse_time(metadata.get("creationTimestamp")) or _EPOCH,
        selector=selector,
        service_account=account if isinstance(account, str) and account else None,
        pod_certificate=pod_certificate if valid else None,
    )


def selects(identity: IdentityRef, pod: PodInfo) -> bool:
    """Whether ``identity`` would serve ``pod`` if no older identity claimed it."""
    if identity.selector is None or not pod.opted_in or identity.namespace != pod.namespace:
        return False
    if identity.service_account is not None and identity.service_account != pod.service_account:
        return False
    return identity.selector.matches(pod.labels)


def serving_identity(pod: PodInfo, identities: Iterable[IdentityRef]) -> IdentityRef | None:
    """The oldest identity selecting the pod serves it (ties broken by name)."""
    candidates = [identity for identity in identities if selects(identity, pod)]
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    return min(candidates, key=lambda identity: identity.sort_key)


def pod_query(selector: LabelSelector) -> str:
    """The server-side label selector for an identity's pods: opted in, and selected."""
    query = selector.to_query()
    opt_in = f"{c.INJECT_LABEL}={c.INJECT_VALUE}"
    return f"{opt_in},{query}" if query else opt_in


def secrets_query(identity: str) -> str:
    return f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME},{c.IDENTITY_LABEL}={identity}"


# Secret names -----------------------------------------------------------------------------------


def secret_name_for_pod(identity: str, pod: PodInfo) -> str:
    """The pod's ``mtls.dev/secret-name`` annotation, else ``<identity>-<pod>`` shortened with a hash.

    Raises ``ValueError`` for an annotation that is not a valid Secret name: it names an object
    in the pod's own namespace only, never anywhere else.
    """
    if pod.secret_name_annotation is not None:
        if not is_dns1123_subdomain(pod.secret_name_annotation):
            raise ValueError(
                f"pod {pod.name}: annotation {c.SECRET_NAME_ANNOTATION}={pod.secret_name_annotation!r} "
                "is not a valid Secret name (lowercase DNS subdomain, at most 253 characters)"
            )
        return pod.secret_name_annotation
    name = f"{identity}-{pod.name}"
    if len(name) <= c.MAX_SECRET_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_SUFFIX_LENGTH]
    prefix = name[: c.MAX_SECRET_NAME_LENGTH - _HASH_SUFFIX_LENGTH - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def label_value(name: str) -> str:
    """A name as a label value: itself up to 63 characters, else a prefix and a hash of the whole.

    Pod names may be 253 characters long, label values only 63.
    """
    if len(name) <= MAX_LABEL_VALUE_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_SUFFIX_LENGTH]
    prefix = name[: MAX_LABEL_VALUE_LENGTH - _HASH_SUFFIX_LENGTH - 1].rstrip("-._")
    return f"{prefix}-{digest}"


# Secrets ------------------------------------------------------------------------------------------


class StoredObject(Protocol):
    """What the rules read of an object the cluster holds (``k8s.views.SecretView`` and
    ``ConfigMapView`` are ones): parsed once at the edge, so no rule digs in raw JSON."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def owner_pod_uid(self) -> str | None: ...


class StoredSecret(StoredObject, Protocol):
    @property
    def annotations(self) -> Mapping[str, str]: ...

    @property
    def data(self) -> Mapping[str, Any]: ...


def is_managed_by(obj: StoredObject, identity: str) -> bool:
    return is_managed(obj) and obj.labels.get(c.IDENTITY_LABEL) == identity


def is_managed(obj: StoredObject) -> bool:
    return obj.labels.get(c.MANAGED_BY_LABEL) == c.MANAGER_NAME


def is_pod_secret_of(secret: StoredObject, identity: str) -> bool:
    """Whether a Secret looks like one the operator wrote for this identity: its labels and an
    ownerReference to a pod (every pod Secret the operator creates has both). Anything less, such as
    labels copied onto a Secret a person made, is not ours: never updated, never deleted."""
    return is_managed_by(secret, identity) and secret.owner_pod_uid is not None


def ownership_problem(secret: StoredObject, identity: str, pod: PodInfo) -> str | None:
    """Why the operator may not write this existing Secret for ``pod`` of ``identity``, or ``None``.

    The operator writes only Secrets it created for this identity: its labels, and an ownerReference
    to this pod, or to an earlier pod of the same name (a StatefulSet pod re-created) whose Secret
    the garbage collector has not removed yet. Labels alone can be forged by anyone who may write
    Secrets in the namespace.
    """
    name = secret.name
    if not is_managed_by(secret, identity):
        owner = "another identity" if is_managed(secret) else "nobody we know"
        return f"Secret {name} already exists and is managed by {owner}"
    owner_uid = secret.owner_pod_uid
    if owner_uid is None:
        return f"Secret {name} carries the operator's labels but was not created by it (no owner pod)"
    if owner_uid != pod.uid and secret.labels.get(c.POD_LABEL) != label_value(pod.name):
        return f"Secret {name} belongs to pod {secret.labels.get(c.POD_LABEL)}"
    return None


@dataclass(frozen=True)
class SecretContent:
    """What one pod Secret should hold: the issued material and the facts recorded beside it."""

    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes
    spiffe_id: str
    serial: str
    not_after: datetime
    renew_at: datetime
    ca_fingerprint: str
    spec_hash: str


def b64text(data: bytes) -> str:
    """Bytes as the base64 text a Secret's ``data`` holds."""
    return base64.b64encode(data).decode("ascii")


def secret_metadata(
    identity: str, pod: PodInfo, template_labels: Mapping[str, str], template_annotations: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    labels = {
        **template_labels,
        c.MANAGED_BY_LABEL: c.MANAGER_NAME,
        c.IDENTITY_LABEL: identity,
        c.POD_LABEL: label_value(pod.name),
    }
    return labels, dict(template_annotations)


# PKCS#12 keystores ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeystoreRequest:
    """What the keystores of an identity's Secrets are written with; ``repr`` leaves the password out."""

    password: bytes = field(repr=False)
    profile: Pkcs12Profile = Pkcs12Profile.MODERN_2023


def keystore_request(password_secret: Mapping[str, Any] | None, ref: Pkcs12Keystore,
                     namespace: str) -> KeystoreRequest:
    """The password from the Secret ``ref`` names (already read from ``namespace``), checked.

    Raises ``ValueError`` with a message a person can act on: the Secret or its key is missing, the
    value is not base64, empty, or too long. The password itself never appears in a message.
    """
    where = f"Secret {namespace}/{ref.password_secret_name}"
    if password_secret is None:
        raise ValueError(f"the keystore password {where} does not exist: create it with the key "
                         f"{ref.password_secret_key!r} (keystores are never written unencrypted)")
    raw = (password_secret.get("data") or {}).get(ref.password_secret_key)
    if raw is None:
        raise ValueError(f"the keystore password {where} has no key {ref.password_secret_key!r}")
    if not isinstance(raw, str):
        raise ValueError(f"the keystore password {where}, key {ref.password_secret_key!r}, is not base64 text")
    try:
        password = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ValueError(f"the keystore password {where}, key {ref.password_secret_key!r}, is not valid "
                         "base64") from None
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(f"the keystore password {where}, key {ref.password_secret_key!r}: {problem}")
    return KeystoreRequest(password=password, profile=ref.profile)


def keystore_digest(chain_pem: bytes, bundle_pem: bytes, request: KeystoreRequest) -> str:
    """What a Secret's keystores were written from: changes with the chain, the bundle, the profile or
    the password (length-prefixed parts, so no two inputs collide)."""
    digest = hashlib.sha256()
    for part in (b"mtls.dev/keystore/v1", request.profile.value.encode(), request.password, chain_pem, bundle_pem):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


def keystore_data(chain_pem: bytes, key_pem: bytes, bundle_pem: bytes, request: KeystoreRequest) -> dict[str, str]:
    """``keystore.p12`` and ``truststore.p12`` as a Secret's base64 ``data``. Raises PKIError."""
    return {
        c.KEYSTORE_P12: b64text(keystore_p12(chain_pem, key_pem, request.password, request.profile)),
        c.TRUSTSTORE_P12: b64text(truststore_p12(bundle_pem, request.password, request.profile)),
    }


def keystore_patch(secret: StoredSecret, request: KeystoreRequest | None,
                   bundle_pem: bytes) -> dict[str, Any] | None:
    """A merge patch that brings a Secret's keystores in line with ``request`` and ``bundle_pem`` (the
    bundle its ``ca.crt`` holds or is about to): written from its own key and chain when missing or
    stale, removed when no longer asked for; ``None`` when nothing is to change or the Secret's key
    and chain are unreadable (that is a re-issue, which writes the keystores with the new key)."""
    data = secret.data
    recorded = secret.annotations.get(c.KEYSTORE_ANNOTATION)
    if request is None:
        if recorded is None and c.KEYSTORE_P12 not in data and c.TRUSTSTORE_P12 not in data:
            return None
        return {"metadata": {"annotations": {c.KEYSTORE_ANNOTATION: None}},
                "data": {c.KEYSTORE_P12: None, c.TRUSTSTORE_P12: None}}
    chain = data_value(data, c.TLS_CRT, CHAIN_LIMITS.max_bytes)[0]
    key = data_value(data, c.TLS_KEY, MAX_KEY_PEM_BYTES)[0]
    if not chain or not key:
        return None
    digest = keystore_digest(chain, bundle_pem, request)
    if recorded == digest and c.KEYSTORE_P12 in data and c.TRUSTSTORE_P12 in data:
        return None
    try:
        stores = keystore_data(chain, key, bundle_pem, request)
    except PKIError:
        return None
    return {"metadata": {"annotations": {c.KEYSTORE_ANNOTATION: digest}}, "data": stores}


def merge_patches(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
    """Two merge patches as one (``second`` wins on the same leaf)."""
    merged: dict[str, Any] = dict(first)
    for key, value in second.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_patches(merged[key], value)
        else:
            merged[key] = value
    return merged


def secret_body(
    *,
    name: str,
    identity: str,
    pod: PodInfo,
    content: SecretContent,
    template_labels: Mapping[str, str],
    template_annotations: Mapping[str, str],
    keystore: KeystoreRequest | None = None,
) -> dict[str, Any]:
    """The full pod Secret per DESIGN.md: type, keys, labels, annotations, ownerReference to the pod;
    with ``keystore``, also ``keystore.p12`` and ``truststore.p12`` (raises PKIError if they cannot be
    built, so no Secret is written without them)."""
    labels, annotations = secret_metadata(identity, pod, template_labels, template_annotations)
    annotations.update(
        {
            c.SPIFFE_ID_ANNOTATION: content.spiffe_id,
            c.SERIAL_ANNOTATION: content.serial,
            c.NOT_AFTER_ANNOTATION: format_time(content.not_after),
            c.RENEW_AT_ANNOTATION: format_time(content.renew_at),
            c.CA_FINGERPRINT_ANNOTATION: content.ca_fingerprint,
            c.SPEC_HASH_ANNOTATION: content.spec_hash,
            c.BUNDLE_HASH_ANNOTATION: bundle_hash(content.bundle_pem),
        }
    )
    data = {
        c.TLS_CRT: b64text(content.chain_pem),
        c.TLS_KEY: b64text(content.key_pem),
        c.CA_CRT: _bundle_b64(content.bundle_pem),
    }
    if keystore is not None:
        data.update(keystore_data(content.chain_pem, content.key_pem, content.bundle_pem, keystore))
        annotations[c.KEYSTORE_ANNOTATION] = keystore_digest(content.chain_pem, content.bundle_pem, keystore)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": c.SECRET_TYPE_TLS,
        "metadata": {
            "name": name,
            "namespace": pod.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod.name,
                    "uid": pod.uid,
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": data,
    }


def reissue_patch(body: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that turns an existing pod Secret into ``body`` (a re-issue); it also drops a
    ``mtls.dev/renew-reason`` left by a manual renewal request, which this re-issue answers."""
    metadata = body["metadata"]
    annotations = {**metadata["annotations"], c.RENEW_REASON_ANNOTATION: None}
    return {
        "metadata": {"labels": metadata["labels"], "annotations": annotations,
                     "ownerReferences": metadata["ownerReferences"]},
        "data": body["data"],
        "type": body["type"],
    }




def read_secret_value(
    secret: Mapping[str, Any], key: str, max_bytes: int = MAX_SECRET_VALUE_BYTES
) -> tuple[bytes | None, str | None]:
    """A Secret's decoded value and ``None``, or ``None`` and why it is unusable (missing, too large,
    not base64). The size is checked on the base64 text, before anything is decoded."""
    data = secret.get("data")
    return data_value(data if isinstance(data, Mapping) else {}, key, max_bytes)


def data_value(
    data: Mapping[str, Any], key: str, max_bytes: int = MAX_SECRET_VALUE_BYTES
) -> tuple[bytes | None, str | None]:
    """``read_secret_value`` of a Secret's ``data`` already at hand (a view's)."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        return None, f"Secret is missing {key}"
    if len(value) > 4 * -(-max_bytes // 3):
        return None, f"{key} is over the {max_bytes}-byte limit ({len(value)} characters of base64)"
    try:
        decoded = base64.b64decode(value, validate=True)
    except ValueError:
        return None, f"{key} is not valid base64"
    if len(decoded) > max_bytes:
        return None, f"{key} is {len(decoded)} bytes, over the {max_bytes}-byte limit"
    return decoded, None


def secret_data(secret: Mapping[str, Any], key: str, *, max_bytes: int = MAX_SECRET_VALUE_BYTES) -> bytes | None:
    """A Secret's decoded value, or ``None`` when it is missing, not base64 or over ``max_bytes``."""
    return read_secret_value(secret, key, max_bytes)[0]


@dataclass(frozen=True)
class SecretReading:
    """What an existing pod Secret says about its certificate, and what is wrong with it.

    ``bundle_hash`` is ``bundle_hash()`` of the bundle its ``ca.crt`` holds (None: none readable): a
    reading is kept per Secret version, so it holds facts, never PEM."""

    state: IssuedState | None
    problems: tuple[str, ...] = field(default_factory=tuple)
    bundle_hash: str | None = None


# The trust bundle is the same for every Secret written until the CA changes: its hash and its base64, once.
@functools.lru_cache(maxsize=8)
def bundle_hash(bundle_pem: bytes) -> str:
    """The fingerprint of a trust bundle as the ``mtls.dev/ca-bundle-hash`` annotation records it."""
    return "sha256:" + hashlib.sha256(bundle_pem).hexdigest()


@functools.lru_cache(maxsize=8)
def _bundle_b64(bundle_pem: bytes) -> str:
    return b64text(bundle_pem)


def _annotated_state(annotations: Mapping[str, str], not_before: datetime | None = None) -> IssuedState | None:
    """The issued state the Secret's annotations record, or None when one is missing or unreadable."""
    not_after = parse_time(annotations.get(c.NOT_AFTER_ANNOTATION))
    renew_at = parse_time(annotations.get(c.RENEW_AT_ANNOTATION))
    required = (
        c.SPIFFE_ID_ANNOTATION,
        c.SERIAL_ANNOTATION,
        c.CA_FINGERPRINT_ANNOTATION,
        c.SPEC_HASH_ANNOTATION,
    )
    if not_after is None or renew_at is None or any(not annotations.get(name) for name in required):
        return None
    return IssuedState(
        spiffe_id=str(annotations[c.SPIFFE_ID_ANNOTATION]),
        serial=str(annotations[c.SERIAL_ANNOTATION]),
        not_before=not_before,
        not_after=not_after,
        renew_at=renew_at,
        ca_fingerprint=str(annotations[c.CA_FINGERPRINT_ANNOTATION]),
        spec_hash=str(annotations[c.SPEC_HASH_ANNOTATION]),
        dns_names=(),
        renew_reason=annotations.get(c.RENEW_REASON_ANNOTATION) or None,
    )


def read_secret_metadata(annotations: Mapping[str, str]) -> SecretReading | None:
    """The reading of a Secret from its annotations alone (a metadata-only list or watch): for a version
    the operator wrote itself, or one listed at start-up, whose data is then checked in the background.
    None when the annotations do not say enough (no bundle hash: a Secret written before it existed),
    so the caller reads the data."""
    recorded_bundle = annotations.get(c.BUNDLE_HASH_ANNOTATION)
    if not recorded_bundle:
        return None
    state = _annotated_state(annotations)
    if state is None:
        return SecretReading(state=None, problems=("Secret annotations are missing or unreadable",))
    return SecretReading(state=state, bundle_hash=recorded_bundle)


def read_secret(secret: StoredSecret) -> SecretReading:
    """Re-derive the issued state from a Secret's annotations, cross-checked with its certificate.

    This is what lets a restarted operator re-issue nothing that is still valid. A tenant may write
    anything into the Secret: whatever it holds, this returns a reading (a malformed or oversized
    field is a problem, which means a repair), never raises, and does bounded work (each field is
    capped before it is decoded).
    """
    annotations = secret.annotations
    chain, chain_problem = data_value(secret.data, c.TLS_CRT, CHAIN_LIMITS.max_bytes)
    key, key_problem = data_value(secret.data, c.TLS_KEY, MAX_KEY_PEM_BYTES)
    bundle = data_value(secret.data, c.CA_CRT, BUNDLE_LIMITS.max_bytes)[0]
    problems = [problem for problem in (chain_problem, key_problem) if problem is not None]
    if _annotated_state(annotations) is None:
        return SecretReading(state=None, problems=(*problems, "Secret annotations are missing or unreadable"))
    not_before: datetime | None = None
    if chain:
        try:
            leaf = parse_pem_certificates(chain, CHAIN_LIMITS)[0]
        except PKIError as error:
            problems.append(f"tls.crt is not a readable certificate: {error}")
        else:
            if format(leaf.serial_number, "x") != annotations[c.SERIAL_ANNOTATION]:
                problems.append("tls.crt does not match the recorded serial")
            elif key and not _key_matches(key, leaf):
                problems.append("tls.key does not match the certificate in tls.crt")
            not_before = leaf.not_valid_before_utc
    state = _annotated_state(annotations, not_before)
    return SecretReading(state=state, problems=tuple(problems),
                         bundle_hash=bundle_hash(bundle) if bundle is not None else None)


def _key_matches(key_pem: bytes, leaf: x509.Certificate) -> bool:
    try:
        # Only compared with the certificate, never used to sign: the RSA check's seconds are not needed.
        return key_matches_certificate(load_private_key_pem(key_pem, check_rsa_key=False), leaf)
    except PKIError:
        return False


def metadata_patch(
    secret: StoredSecret, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any] | None:
    """A merge patch adding template labels/annotations a Secret lacks, or ``None`` when it has them."""
    have_labels = secret.labels
    have_annotations = secret.annotations
    missing_labels = {k: v for k, v in labels.items() if have_labels.get(k) != v}
    missing_annotations = {k: v for k, v in annotations.items() if have_annotations.get(k) != v}
    if not missing_labels and not missing_annotations:
        return None
    patch: dict[str, Any] = {}
    if missing_labels:
        patch["labels"] = missing_labels
    if missing_annotations:
        patch["annotations"] = missing_annotations
    return {"metadata": patch}


# Status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    status: bool
    reason: str
    message: str


READY_CONDITION = "Ready"
CA_CONDITION = "CertificateAuthority"


# Status messages are cut to this many characters (as Events are): a person reads the first problem;
# a message as long as the user's input (a huge selector, thousands of pod names) must never make the
# status write fail.
MAX_MESSAGE_LENGTH = 1024


def bounded_message(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """``message``, cut to ``limit`` characters with an ellipsis when longer."""
    return message if len(message) <= limit else message[: limit - 1] + "…"


def ready_condition(
    previous: Sequence[Mapping[str, Any]],
    readiness: Readiness,
    *,
    generation: int | None,
    now: datetime,
    kind: str = READY_CONDITION,
) -> dict[str, Any]:
    """A condition (Ready by default); ``lastTransitionTime`` moves only when the status itself flips."""
    status = "True" if readiness.status else "False"
    before = next((cond for cond in previous if cond.get("type") == kind), None)
    transition = (
        str(before["lastTransitionTime"])
        if before and before.get("status") == status and before.get("lastTransitionTime")
        else format_time(now)
    )
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": readiness.reason,
        "message": bounded_message(readiness.message),
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def identity_status(
    *,
    previous: Mapping[str, Any],
    readiness: Readiness,
    generation: int | None,
    pods: int,
    issued: int,
    spiffe_ids: Iterable[str],
    next_renewal: datetime | None,
    ca_fingerprint: str | None,
    now: datetime,
    ca_condition: Readiness | None = None,
    rotation_phase: str | None = None,
    last_issuance: Mapping[str, Any] | None = None,
    pod_certificate_pods: int | None = None,
) -> dict[str, Any]:
    """The identity's status. ``ca_condition`` and ``rotation_phase`` are kept from ``previous`` when
    not given (a pass that could not look at the CA); ``lastIssuance`` only changes when certificates
    were issued. ``pods`` counts every selected pod, ``pod_certificate_pods`` those of them whose key
    the kubelet holds (``issued`` counts only pods with a Secret): kept from ``previous`` when not
    given, left out when never counted."""
    conditions = previous.get("conditions") or []
    written = [ready_condition(conditions, readiness, generation=generation, now=now)]
    if ca_condition is not None:
        written.append(ready_condition(conditions, ca_condition, generation=generation, now=now, kind=CA_CONDITION))
    else:
        written.extend(cond for cond in conditions if cond.get("type") == CA_CONDITION)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": written,
        "spiffeIDs": sorted(set(spiffe_ids)),
        "pods": pods,
        "issued": issued,
        "nextRenewalTime": format_time(next_renewal) if next_renewal else None,
        "caFingerprint": ca_fingerprint,
        "caRotationPhase": rotation_phase or previous.get("caRotationPhase"),
    }
    if last_issuance is not None:
        status["lastIssuance"] = dict(last_issuance)
    pod_certificates = pod_certificate_pods if pod_certificate_pods is not None else previous.get("podCertificatePods")
    if pod_certificates:
        status["podCertificatePods"] = pod_certificates
    elif "podCertificatePods" in previous:
        status["podCertificatePods"] = 0
    return status


def status_changed(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return any(previous.get(key) != value for key, value in desired.items())


def summarize_readiness(
    *,
    pods: int,
    issued: int,
    selector_text: str,
    conflicts: Sequence[tuple[str, str]],
    clashes: Sequence[str],
    failures: Sequence[str],
    pod_certificates: int = 0,
) -> Readiness:
    """One condition a person can act on: the most pressing problem first, counts always shown.
    ``pods`` are the pods served by Secret; ``pod_certificates`` those whose key the kubelet holds
    (their certificates are the signer's, reported by it)."""
    counts = f"{issued}/{pods} pods have valid certificates"
    if pod_certificates:
        kubelet = f"{pod_certificates} pod(s) get theirs from the kubelet (delivery PodCertificate)"
        counts = kubelet if not pods else f"{counts}; {kubelet}"
    if conflicts:
        pod, owner = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        return Readiness(
            False,
            "Conflict",
            f"pod {pod}{more} is also selected by the older identity {owner}, which serves it; {counts}",
        )
    if clashes:
        return Readiness(False, "SecretConflict", f"{clashes[0]}; {counts}")
    if failures:
        return Readiness(False, "IssuanceFailed", f"{failures[0]}; {counts}")
    if pods == 0 and pod_certificates:
        return Readiness(True, "PodCertificates", counts)
    if pods == 0:
        return Readiness(
            False,
            "NoPods",
            f"no running pod with label {c.INJECT_LABEL}={c.INJECT_VALUE} matches selector {selector_text}",
        )
    if issued < pods:
        return Readiness(False, "Issuing", counts)
    return Readiness(True, "Issued", counts)
