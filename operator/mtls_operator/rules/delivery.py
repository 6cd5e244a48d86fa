"""Pod certificates (``spec.delivery: PodCertificate``): what the webhook mounts, how a pod's own volumes
say who delivers its certificate, and the signer's ClusterTrustBundle. Pure.

Field names are core/v1's (``PodCertificateProjection``, ``ClusterTrustBundleProjection``) and
certificates.k8s.io's (``ClusterTrustBundle``), with the API server's bounds:

- the projected volume has the Secret volume's name (``mtls-identity``) and file names: the
  ``podCertificate`` source writes the key to ``tls.key`` and the chain (leaf first) to ``tls.crt``
  (``keyPath``/``certificateChainPath``; ``credentialBundlePath`` would put both in one file, which
  no reader of the Secret layout expects), and the ``clusterTrustBundle`` source writes the bundles
  of our signer labelled ``mtls.dev/trust-bundle: "true"`` to ``ca.crt``;
- ``maxExpirationSeconds`` is the identity's duration within the API's [1h, 91d];
- the kubelet generates RSA3072, RSA4096, ECDSAP256, ECDSAP384, ECDSAP521 or ED25519 keys: an
  identity's key maps to one of them (spec.py refuses RSA 2048, which has none).

A pod's delivery is decided by its own volumes, never by an annotation a tenant could write: a pod
whose ``mtls-identity`` volume is a projected volume with a ``podCertificate`` source for our signer
gets its key from the kubelet and no Secret from the reconciler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mtls_operator import constants as c
from mtls_operator.models import Delivery
from mtls_operator.rules.spec import POD_CERTIFICATE_KEY_TYPES, IdentitySpec

# PodCertificateProjection.maxExpirationSeconds: at least an hour, at most 91 days for a signer
# outside kubernetes.io (certificates.MinMaxExpirationSeconds / MaxMaxExpirationSeconds).
MIN_MAX_EXPIRATION_SECONDS: Final = 3600
MAX_MAX_EXPIRATION_SECONDS: Final = 91 * 24 * 3600

# The label our ClusterTrustBundles carry and the projected volume selects them by.
TRUST_BUNDLE_LABEL: Final = "mtls.dev/trust-bundle"
TRUST_BUNDLE_LABEL_VALUE: Final = "true"
CERTIFICATES_GROUP: Final = "certificates.k8s.io"
# The ClusterTrustBundle versions, newest first (v1 from Kubernetes 1.37, v1beta1 in 1.33-1.36).
CLUSTER_TRUST_BUNDLE_VERSIONS: Final = ("v1", "v1beta1")
CLUSTER_TRUST_BUNDLES: Final = "clustertrustbundles"


@dataclass(frozen=True)
class PodCertificateSource:
    """What an identity with ``delivery: PodCertificate`` asks the kubelet for (the signer is the
    operator's setting, not the identity's)."""

    key_type: str
    max_expiration_seconds: int
    # The identity's duration is longer than the API allows: certificates last 91 days at most.
    capped: bool = False


def pod_certificate_source(spec: IdentitySpec) -> PodCertificateSource | None:
    """The projection parameters of an identity, or ``None`` when it delivers by Secret."""
    if spec.delivery is not Delivery.POD_CERTIFICATE:
        return None
    seconds = int(spec.duration.total_seconds())
    bounded = min(max(seconds, MIN_MAX_EXPIRATION_SECONDS), MAX_MAX_EXPIRATION_SECONDS)
    return PodCertificateSource(key_type=POD_CERTIFICATE_KEY_TYPES[spec.private_key],
                                max_expiration_seconds=bounded, capped=seconds > MAX_MAX_EXPIRATION_SECONDS)


def projected_volume(signer: str, source: PodCertificateSource) -> dict[str, Any]:
    """The ``mtls-identity`` volume of a pod whose key the kubelet holds."""
    return {
        "name": c.IDENTITY_VOLUME,
        "projected": {
            "sources": [
                {"podCertificate": {
                    "signerName": signer,
                    "keyType": source.key_type,
                    "maxExpirationSeconds": source.max_expiration_seconds,
                    "keyPath": c.TLS_KEY,
                    "certificateChainPath": c.TLS_CRT,
                }},
                {"clusterTrustBundle": {
                    "signerName": signer,
                    "labelSelector": {"matchLabels": {TRUST_BUNDLE_LABEL: TRUST_BUNDLE_LABEL_VALUE}},
                    "path": c.CA_CRT,
                }},
            ],
        },
    }


def capped_warning(source: PodCertificateSource) -> str | None:
    """The webhook's warning when the identity's duration is beyond what a pod certificate may last."""
    if not source.capped:
        return None
    return (f"the identity's duration is longer than a pod certificate may last: maxExpirationSeconds is "
            f"{MAX_MAX_EXPIRATION_SECONDS} (91 days), the API server's maximum")


def pod_certificate_signers(volumes: object) -> frozenset[str]:
    """The signers of the ``podCertificate`` sources of a pod's ``mtls-identity`` projected volume
    (``spec.volumes`` as the pod has it, whatever its shape)."""
    if not isinstance(volumes, list):
        return frozenset()
    for volume in volumes:
        if isinstance(volume, Mapping) and volume.get("name") == c.IDENTITY_VOLUME:
            projected = volume.get("projected")
            sources = projected.get("sources") if isinstance(projected, Mapping) else None
            if not isinstance(sources, list):
                return frozenset()
            return frozenset(
                str(source["podCertificate"].get("signerName") or "")
                for source in sources
                if isinstance(source, Mapping) and isinstance(source.get("podCertificate"), Mapping)
            )
    return frozenset()


def delivered_by_pod_certificate(signers: frozenset[str], signer: str) -> bool:
    """Whether a pod whose ``mtls-identity`` volume names these signers gets its certificate from the
    kubelet through our signer (so no Secret from the reconciler)."""
    return signer in signers


# The signer's ClusterTrustBundle -------------------------------------------------------------------


def cluster_trust_bundle_name(signer: str) -> str:
    """``mtls.dev/spiffe`` -> ``mtls.dev:spiffe:bundle``: the API requires the signer name, with ``:``
    for ``/``, then ``:``, as the name's prefix."""
    return signer.replace("/", ":") + ":bundle"


def cluster_trust_bundle_labels() -> dict[str, str]:
    return {c.MANAGED_BY_LABEL: c.MANAGER_NAME, TRUST_BUNDLE_LABEL: TRUST_BUNDLE_LABEL_VALUE}


def cluster_trust_bundle_body(signer: str, bundle_pem: bytes, version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{CERTIFICATES_GROUP}/{version}",
        "kind": "ClusterTrustBundle",
        "metadata": {"name": cluster_trust_bundle_name(signer), "labels": cluster_trust_bundle_labels()},
        "spec": {"signerName": signer, "trustBundle": bundle_pem.decode("ascii")},
    }
