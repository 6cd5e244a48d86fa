"""Pod injection: what the mutating admission webhook does to an opted-in pod being created.

Pure: the caller passes the pod, its namespace, the identities it knows and a random suffix; the
result is the pod as it should be stored (a copy), or :class:`InjectionError` saying what to change.

For a pod labelled ``mtls.dev/inject: "true"`` that an identity serves (the rules of
``plan.serving_identity``: selector, service account, the older identity wins):

- the annotation ``mtls.dev/secret-name`` names the pod's Secret. A pod with a name keeps the
  operator's usual ``<identity>-<pod>`` (so a StatefulSet pod's Secret is the same with or without
  the webhook). A pod with only ``generateName`` (a Deployment's) has no name yet, so it gets
  ``<identity>-<generateName>`` plus a random suffix, shortened to the 253 characters of a Secret
  name: unique to this pod, and known before the pod exists;
- the Secret volume ``mtls-identity`` mounts that Secret (not optional: the kubelet retries the
  mount until the operator has written it);
- every container and init container mounts it read-only at ``/var/run/secrets/mtls.dev``, or at
  the pod's ``mtls.dev/mount-path`` (an absolute path without ``..``).

For an identity with ``delivery: PodCertificate`` (rules/delivery.py), the ``mtls-identity`` volume is
instead a projected volume whose ``podCertificate`` source has the kubelet generate the key and ask
our signer for the certificate, and whose ``clusterTrustBundle`` source writes the trust bundle, at
the same mount path and file names; no Secret is named. With pod certificates off in the operator
(``signer`` None), nothing is injected and the pod is admitted with a warning: a volume nobody signs
for would keep the pod from ever starting, and a Secret would put the key where the identity asked it
never to be. A pod's own Secret volume ``mtls-identity`` is its author's choice and keeps the Secret.

What the pod already carries is kept, and only what is missing is added, so a second pass adds
nothing. A hand-made Secret volume ``mtls-identity`` is the pod author's choice of Secret: its
``secretName`` becomes the annotation when there is none, and an annotation naming another Secret
is refused (the operator would issue into a Secret the pod never mounts). A volume of that name of
another kind is refused too. A container that already mounts the volume keeps its mount; one that
mounts something else at the target path is refused. A pod no identity serves is left as it is,
with a warning saying why.
"""

from __future__ import annotations

import copy
import dataclasses
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mtls_operator import constants as c
from mtls_operator.errors import MTLSError
from mtls_operator.rules.delivery import PodCertificateSource, capped_warning, projected_volume
from mtls_operator.rules.plan import (
    IdentityRef,
    PodInfo,
    pod_info,
    secret_name_for_pod,
    serving_identity,
)
from mtls_operator.rules.policy import is_dns1123_subdomain

# The suffix of a generated Secret name: Kubernetes' own alphabet for generated names (no vowels, so
# no words), and long enough that two pods of one workload never draw the same (27^8 ≈ 2.8e11).
SUFFIX_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH: Final = 8
SUFFIX_SPACE: Final = len(SUFFIX_ALPHABET) ** SUFFIX_LENGTH


def secret_name_suffix(draw: int) -> str:
    """The random suffix from one draw in ``range(SUFFIX_SPACE)`` (one call to the system's randomness
    per pod, not one per character: at 100 pods/s those calls were a visible share of admission time)."""
    letters = []
    for _ in range(SUFFIX_LENGTH):
        draw, index = divmod(draw, len(SUFFIX_ALPHABET))
        letters.append(SUFFIX_ALPHABET[index])
    return "".join(letters)


class InjectionError(MTLSError):
    """The pod cannot be admitted as it is; the message says what to change."""


@dataclass(frozen=True)
class Injection:
    pod: dict[str, Any]
    """The pod as it should be stored: a copy, equal to the input when nothing is injected."""
    identity: str | None
    """The identity that serves the pod, or ``None`` when the pod is left unchanged."""
    secret_name: str | None
    warnings: tuple[str, ...] = ()


def inject(pod: Mapping[str, Any], *, namespace: str, identities: Iterable[IdentityRef], suffix: str,
           signer: str | None = None) -> Injection:
    """Inject the pod's volume and mounts (see the module docstring); idempotent. ``signer``: the
    operator's pod certificate signer, ``None`` when pod certificates are off."""
    result = copy.deepcopy(dict(pod))
    metadata = result.setdefault("metadata", {})
    info = dataclasses.replace(pod_info(result), namespace=namespace)
    if not info.opted_in:
        return Injection(pod=result, identity=None, secret_name=None)
    candidates = [identity for identity in identities if identity.namespace == namespace]
    owner = serving_identity(info, candidates)
    if owner is None:
        return Injection(pod=result, identity=None, secret_name=None, warnings=(_unselected_warning(info, candidates),))

    volumes = (pod.get("spec") or {}).get("volumes") or []
    volume = next((v for v in volumes if isinstance(v, dict) and v.get("name") == c.IDENTITY_VOLUME), None)
    if owner.pod_certificate is not None and (volume is None or "secret" not in volume):
        if signer is None:
            return Injection(pod=result, identity=None, secret_name=None, warnings=(_pod_certificates_off(),))
        return _inject_projected(result, owner, owner.pod_certificate, signer)

    annotations = metadata.setdefault("annotations", {})
    mount_path = _mount_path(annotations.get(c.MOUNT_PATH_ANNOTATION))
    spec = result.setdefault("spec", {})
    volumes = spec.setdefault("volumes", [])
    volume = next((v for v in volumes if isinstance(v, dict) and v.get("name") == c.IDENTITY_VOLUME), None)
    annotated = annotations.get(c.SECRET_NAME_ANNOTATION)
    if volume is None:
        secret_name = annotated or _new_secret_name(owner.name, info, metadata.get("generateName"), suffix)
        volumes.append({"name": c.IDENTITY_VOLUME, "secret": {"secretName": secret_name}})
    else:
        secret_name = _hand_made_volume_secret(volume, annotated) or _new_secret_name(
            owner.name, info, metadata.get("generateName"), suffix
        )
        volume["secret"]["secretName"] = secret_name
    if not is_dns1123_subdomain(secret_name):
        raise InjectionError(
            f"Secret name {secret_name!r} (annotation {c.SECRET_NAME_ANNOTATION} or volume {c.IDENTITY_VOLUME}) "
            "is not a valid Secret name: lower-case letters, digits, '-' and '.', at most 253 characters"
        )
    annotations[c.SECRET_NAME_ANNOTATION] = secret_name
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                _mount(container, mount_path)
    return Injection(pod=result, identity=owner.name, secret_name=secret_name)


def _inject_projected(result: dict[str, Any], owner: IdentityRef, source: PodCertificateSource,
                      signer: str) -> Injection:
    """The projected volume (kept when the pod already has ours) and the mounts, for a pod whose key the
    kubelet holds."""
    annotations = result["metadata"].get("annotations") or {}
    mount_path = _mount_path(annotations.get(c.MOUNT_PATH_ANNOTATION))
    spec = result.setdefault("spec", {})
    volumes = spec.setdefault("volumes", [])
    volume = next((v for v in volumes if isinstance(v, dict) and v.get("name") == c.IDENTITY_VOLUME), None)
    if volume is None:
        volumes.append(projected_volume(signer, source))
    elif signer not in pod_info(result).pod_certificate_signers:
        raise InjectionError(
            f"the pod's volume {c.IDENTITY_VOLUME} is neither a Secret volume nor a projected volume with a "
            f"podCertificate source for signer {signer}; remove it (the webhook adds it) or give it another name"
        )
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict):
                _mount(container, mount_path)
    warning = capped_warning(source)
    return Injection(pod=result, identity=owner.name, secret_name=None, warnings=(warning,) if warning else ())


def _pod_certificates_off() -> str:
    # Names no identity, as _unselected_warning does not: see there.
    return (
        "the MTLSIdentity that selects this pod asks for delivery: PodCertificate, but the operator runs with "
        "pod certificates off (chart value podCertificates.enabled, MTLS_POD_CERTIFICATES): no "
        f"{c.IDENTITY_VOLUME} volume is injected and the pod gets no certificate"
    )


def mount_path_problem(path: str) -> str | None:
    """What makes ``path`` unusable as the identity volume's mount path, or ``None``."""
    if not path.startswith("/"):
        return "it must be an absolute path"
    if ".." in path.split("/"):
        return "it must not contain '..'"
    if _normalized(path) == "/":
        return "it must not be the root directory"
    if any(not character.isprintable() for character in path):
        return "it must not contain control characters"
    return None


def _normalized(path: str) -> str:
    # normpath keeps a leading '//' (POSIX lets it mean something else); a mount path never does.
    return posixpath.normpath("/" + path.lstrip("/"))


def _mount_path(annotated: object) -> str:
    if annotated is None:
        return c.DEFAULT_MOUNT_PATH
    path = str(annotated)
    problem = mount_path_problem(path)
    if problem is not None:
        raise InjectionError(
            f"pod annotation {c.MOUNT_PATH_ANNOTATION}={path!r} is not a usable mount path: {problem} "
            f"(for example {c.DEFAULT_MOUNT_PATH})"
        )
    return path


def _hand_made_volume_secret(volume: dict[str, Any], annotated: str | None) -> str | None:
    """The Secret a pod's own ``mtls-identity`` volume names (checked against the annotation)."""
    source = volume.get("secret")
    if not isinstance(source, dict):
        raise InjectionError(
            f"the pod's volume {c.IDENTITY_VOLUME} is not a Secret volume; remove it (the webhook adds it) "
            "or give it another name"
        )
    named = source.get("secretName") or None
    if annotated and named and annotated != named:
        raise InjectionError(
            f"the pod's volume {c.IDENTITY_VOLUME} mounts Secret {named!r}, but its annotation "
            f"{c.SECRET_NAME_ANNOTATION} names {annotated!r}, into which the certificate would be written; "
            "make them agree, or remove one and the webhook fills it in"
        )
    return annotated or named


def _new_secret_name(identity: str, pod: PodInfo, generate_name: object, suffix: str) -> str:
    if pod.name:
        return secret_name_for_pod(identity, dataclasses.replace(pod, secret_name_annotation=None))
    base = str(generate_name or "").rstrip("-.")
    stem = f"{identity}-{base}" if base else identity
    stem = stem[: c.MAX_SECRET_NAME_LENGTH - len(suffix) - 1].rstrip("-.")
    candidate = f"{stem}-{suffix}"
    # A malformed generateName fails the pod's own validation anyway; the Secret name stays valid.
    return candidate if is_dns1123_subdomain(candidate) else f"{identity}-{suffix}"


def _mount(container: dict[str, Any], mount_path: str) -> None:
    mounts = container.setdefault("volumeMounts", [])
    if any(isinstance(m, dict) and m.get("name") == c.IDENTITY_VOLUME for m in mounts):
        return
    target = _normalized(mount_path)
    for mount in mounts:
        if isinstance(mount, dict) and _normalized(str(mount.get("mountPath") or "")) == target:
            raise InjectionError(
                f"container {container.get('name')!r} already mounts volume {mount.get('name')!r} at {mount_path}; "
                f"set the pod annotation {c.MOUNT_PATH_ANNOTATION} to another directory"
            )
    mounts.append({"name": c.IDENTITY_VOLUME, "mountPath": mount_path, "readOnly": True})


def _unselected_warning(pod: PodInfo, identities: list[IdentityRef]) -> str:
    """Why a pod that opted in gets nothing. It names no identity and no other service account:
    anyone who can reach the webhook can send it a review naming any namespace, so its answers must
    not tell what exists there (``kubectl get mtlsid`` does, to those allowed to read it)."""
    labels = ",".join(f"{key}={value}" for key, value in sorted(pod.labels.items()))
    message = (
        f"no MTLSIdentity in this namespace selects this pod (labels {labels}, service account "
        f"{pod.service_account}): it gets no certificate and no {c.IDENTITY_VOLUME} volume"
    )
    if any(
        identity.selector is not None
        and identity.service_account not in (None, pod.service_account)
        and identity.selector.matches(pod.labels)
        for identity in identities
    ):
        message += "; an identity selects these labels but serves only another service account"
    return message
