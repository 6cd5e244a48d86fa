"""Which of an identity's pods it serves, and the Secret name each one gets: pure.

A pod is served when the identity is the oldest selecting it (others report a conflict), it runs
as the identity's service account if one is named, and it is neither finished nor terminating (a
terminating pod keeps its Secret: it may still be serving, but gets nothing new). Two pods claiming
one Secret name: the one owning the Secret keeps it, else the first by name. A pod whose own
``mtls-identity`` volume asks our signer for a pod certificate (rules/delivery.py) is served by the
kubelet and the signer: counted apart, and given no Secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mtls_operator import constants as c
from mtls_operator.rules.delivery import delivered_by_pod_certificate
from mtls_operator.rules.plan import IdentityRef, PodInfo, pod_spec, secret_name_for_pod, serving_identity
from mtls_operator.rules.spec import IdentitySpec


@dataclass
class Assignment:
    # Served pods, including those whose Secret name is unusable or taken by another pod.
    pods: int = 0
    # (Secret name, pod) for every pod to serve now, by Secret name.
    assigned: list[tuple[str, PodInfo]] = field(default_factory=list)
    # Secret names that stay: those assigned, and those of terminating pods.
    keep: set[str] = field(default_factory=set)
    # (pod, the older identity that serves it).
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    # (pod, why): a Secret name annotation that is not a valid name, or a headless name that is not.
    invalid: list[tuple[str, str]] = field(default_factory=list)
    # (pod, why): a Secret name another pod of the identity has.
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    # Served pods whose key the kubelet holds (a podCertificate volume for our signer): no Secret.
    pod_certificates: list[str] = field(default_factory=list)


def assign_pods(
    identity: IdentityRef,
    others: Sequence[IdentityRef],
    pods: Sequence[PodInfo],
    *,
    spec: IdentitySpec,
    cluster_domain: str,
    owners: Mapping[str, str | None],
    signer: str | None = None,
) -> Assignment:
    """``owners``: the identity's existing Secrets by name -> the uid of the pod each belongs to;
    ``signer``: the operator's pod certificate signer (its pods get no Secret)."""
    result = Assignment()
    claims: dict[str, list[PodInfo]] = {}
    # The identity itself once (``others``, as listed, usually holds it too).
    identities = [*(other for other in others if (other.uid, other.name) != (identity.uid, identity.name)), identity]
    for pod in pods:
        if pod.finished:
            continue  # a pod that has finished serves nobody: its Secret goes
        if pod.terminating:
            result.keep.update(name for name, owner in owners.items() if owner == pod.uid)
            continue
        if spec.service_account_name and pod.service_account != spec.service_account_name:
            continue
        owner = serving_identity(pod, identities)
        if owner is None:
            continue
        if owner.uid != identity.uid or owner.name != identity.name:
            result.conflicts.append((pod.name, owner.name))
            continue
        if signer is not None and delivered_by_pod_certificate(pod.pod_certificate_signers, signer):
            result.pod_certificates.append(pod.name)
            continue
        result.pods += 1
        try:
            pod_spec(spec, pod, cluster_domain)  # a bad headless name fails this pod only
            claims.setdefault(secret_name_for_pod(identity.name, pod), []).append(pod)
        except ValueError as exc:
            result.invalid.append((pod.name, str(exc)))
    for secret_name, claimants in sorted(claims.items()):
        if len(claimants) == 1:
            pod = claimants[0]
        else:
            pod = _rightful_claimant(claimants, owners.get(secret_name))
            result.duplicates.extend(
                (other.name, f"pod {other.name}: Secret name {secret_name} is already used by pod {pod.name} "
                             f"(check the {c.SECRET_NAME_ANNOTATION} annotations)")
                for other in claimants if other is not pod
            )
        result.keep.add(secret_name)
        result.assigned.append((secret_name, pod))
    return result


def _rightful_claimant(claimants: list[PodInfo], owner: str | None) -> PodInfo:
    """Of pods claiming one Secret name, the one that owns the Secret keeps it; else the first by name."""
    return next((pod for pod in claimants if pod.uid == owner), min(claimants, key=lambda pod: pod.name))
