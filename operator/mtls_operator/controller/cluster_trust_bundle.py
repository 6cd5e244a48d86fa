"""The trust bundle where the kubelet reads it for pod certificates: the signer's ClusterTrustBundle.

One bundle per signer (``rules/delivery.py``: named ``<signer, "/" as ":">:bundle``, labelled
``mtls.dev/trust-bundle: "true"`` and managed-by, ``spec.signerName`` our signer), whose
``trustBundle`` is the bundle of the current CA rotation phase, the same PEM as every pod Secret's
``ca.crt``. Runs on the leader, only with ``MTLS_POD_CERTIFICATES=true``; woken whenever the CA
store's bundle changes, and re-checked on the CA refresh interval (so a bundle edited or deleted by
hand is repaired). The CA rotation (controller/rotation.py) counts it among the objects that must
carry the new bundle before a phase moves on (``carries``).

The API version is asked of discovery once: ``v1`` (Kubernetes 1.37+), else ``v1beta1`` (1.33-1.36
with the ClusterTrustBundle feature gate and runtime-config); when neither is served, one WARNING
and nothing is published (and the rotation does not wait for a bundle that cannot exist). A
ClusterTrustBundle under our name that the operator did not create is never overwritten: a Warning
Event on the CA Secret says so, and the rotation waits (pods projecting our signer's bundles would
otherwise miss the new CA) until a person deletes it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Final

from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.loop import run_woken
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError
from mtls_operator.k8s import JSON, Cluster
from mtls_operator.k8s.views import ObjectMeta
from mtls_operator.rules.delivery import (
    CERTIFICATES_GROUP,
    CLUSTER_TRUST_BUNDLE_VERSIONS,
    CLUSTER_TRUST_BUNDLES,
    cluster_trust_bundle_body,
    cluster_trust_bundle_labels,
    cluster_trust_bundle_name,
)
from mtls_operator.rules.plan import is_managed
from mtls_operator.times import Clock

logger = logging.getLogger(__name__)

FOREIGN_REASON: Final = "ClusterTrustBundleNotOurs"


class _Unknown:
    """Discovery not asked yet."""


_UNKNOWN: Final = _Unknown()


class ClusterTrustBundlePublisher:
    def __init__(self, cluster: Cluster, ca_store: CAStore, signer: str, *, clock: Clock,
                 interval: float = 30.0) -> None:
        self.cluster = cluster
        self.ca_store = ca_store
        self.signer = signer
        self.name = cluster_trust_bundle_name(signer)
        self.clock = clock
        self.interval = interval
        self._version: str | _Unknown | None = _UNKNOWN
        # The foreign bundle last reported (its uid), so a standing problem is posted once.
        self._reported: str | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now (the CA store's bundle changed)."""
        self._wake.set()

    async def run(self) -> None:
        await run_woken(self.step, self._wake, retry_delay=self.interval, logger=logger,
                        what="ClusterTrustBundle")

    async def step(self) -> float:
        await self.publish()
        return self.interval

    async def version(self) -> str | None:
        """The newest served version of ClusterTrustBundles, asked once; None when none is served."""
        if isinstance(self._version, _Unknown):
            found = None
            for version in CLUSTER_TRUST_BUNDLE_VERSIONS:
                if await self.cluster.serves_resource(CERTIFICATES_GROUP, version, CLUSTER_TRUST_BUNDLES):
                    found = version
                    break
            if found is None:
                logger.warning(
                    "pod certificates are on, but the API server serves ClusterTrustBundles at none of %s/%s: "
                    "the trust bundle is not published for signer %s (Kubernetes 1.37+, or 1.33-1.36 with the "
                    "ClusterTrustBundle feature gate and its runtime-config)",
                    CERTIFICATES_GROUP, " or ".join(CLUSTER_TRUST_BUNDLE_VERSIONS), self.signer)
            else:
                logger.info("ClusterTrustBundle %s published at %s/%s", self.name, CERTIFICATES_GROUP, found)
            self._version = found
        return self._version

    async def publish(self) -> bool | None:
        """Bring the bundle in line with the CA store's: True when it carries it now, False when it does
        not (someone else's bundle holds the name), None when there is nothing to publish (no API, no CA)."""
        version = await self.version()
        if version is None:
            return None
        try:
            await self.ca_store.ensure_fresh()
            bundle_pem = self.ca_store.bundle_pem
        except CAError:
            return None
        found = await self.cluster.get_cluster_trust_bundle(version, self.name)
        if found is None:
            body = cluster_trust_bundle_body(self.signer, bundle_pem, version)
            try:
                await self.cluster.create_cluster_trust_bundle(version, body)
            except ConflictError:
                return False  # created meanwhile: the next look compares it
            logger.info("ClusterTrustBundle %s created for signer %s", self.name, self.signer)
            return True
        meta = ObjectMeta.of(found)
        if not is_managed(meta):
            await self._report_foreign(found)
            return False
        self._reported = None
        spec = found.get("spec") or {}
        if spec.get("trustBundle") == bundle_pem.decode("ascii") \
                and all(meta.labels.get(key) == value for key, value in cluster_trust_bundle_labels().items()):
            return True
        replacement: dict[str, Any] = {
            **cluster_trust_bundle_body(self.signer, bundle_pem, version),
            "metadata": {**dict(found.get("metadata") or {}),
                         "labels": {**meta.labels, **cluster_trust_bundle_labels()}},
        }
        try:
            await self.cluster.replace_cluster_trust_bundle(version, replacement)
        except ConflictError:
            return False  # changed since the read: the next look compares again
        logger.info("ClusterTrustBundle %s updated to the current trust bundle", self.name)
        return True

    async def carries(self, bundle_pem: bytes) -> bool | None:
        """For the CA rotation: whether the bundle holds ``bundle_pem`` (None: no bundle can be published,
        so there is none to wait for). A foreign bundle under our name never does."""
        version = await self.version()
        if version is None:
            return None
        found = await self.cluster.get_cluster_trust_bundle(version, self.name)
        if found is None or not is_managed(ObjectMeta.of(found)):
            return False
        return bool((found.get("spec") or {}).get("trustBundle") == bundle_pem.decode("ascii"))

    async def _report_foreign(self, found: JSON) -> None:
        meta = ObjectMeta.of(found)
        if self._reported == meta.uid:
            return
        self._reported = meta.uid
        message = (f"ClusterTrustBundle {self.name} exists and was not created by the operator: it is never "
                   f"overwritten, so pods with podCertificate volumes of signer {self.signer} do not get the "
                   "operator's trust bundle from it, and a CA rotation waits; delete it to let the operator "
                   "publish its own")
        logger.warning("%s", message)
        await self._event(message, self.clock())

    async def _event(self, message: str, now: datetime) -> None:
        try:
            secret = await self.cluster.get_secret(self.ca_store.namespace, self.ca_store.secret_name)
            if secret is not None:
                await self.cluster.post_event(secret, "v1", "Secret", type_="Warning", reason=FOREIGN_REASON,
                                              message=message, now=now)
        except KubernetesAPIError as exc:
            logger.warning("could not post event %s: %s", FOREIGN_REASON, exc)
