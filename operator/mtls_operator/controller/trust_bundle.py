"""The trust bundle where pods read it: the ConfigMap in every namespace with an identity, and
``ca.crt`` of the Secrets of an identity that cannot be reconciled (a bad spec keeps its
certificates, but its pods must keep trusting peers through a CA rotation)."""

from __future__ import annotations

import contextlib
import logging

from mtls_operator import constants as c
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.writer import SecretWriter
from mtls_operator.errors import CAError, ConflictError, KubernetesAPIError
from mtls_operator.k8s import Cluster
from mtls_operator.k8s.views import ConfigMapView, SecretView
from mtls_operator.rules.plan import b64text, bundle_hash, data_value, is_managed, is_pod_secret_of, secrets_query

logger = logging.getLogger(__name__)


class TrustBundlePublisher:
    def __init__(self, cluster: Cluster, ca_store: CAStore, writer: SecretWriter) -> None:
        self.cluster = cluster
        self.ca_store = ca_store
        self.writer = writer

    async def publish(self, namespace: str, bundle_pem: bytes) -> str | None:
        """The ConfigMap ``mtls-trust-bundle``: created, or repaired when it differs from the bundle
        (whoever edited it). One the operator did not create is never written, nor read: the returned
        problem says so."""
        data = {c.CA_CRT: bundle_pem.decode("ascii")}
        found = await self.cluster.get_config_map(namespace, c.TRUST_BUNDLE_CONFIGMAP)
        if found is None:
            await self._create(namespace, data)
            return None
        existing = ConfigMapView.of(found)
        if not is_managed(existing):
            return (f"ConfigMap {namespace}/{c.TRUST_BUNDLE_CONFIGMAP} exists and was not created by the operator: "
                    "the trust bundle is not published there (delete or rename it); pods can use ca.crt of their "
                    "own Secret")
        if existing.data != data:
            await self.cluster.update_config_map(namespace, c.TRUST_BUNDLE_CONFIGMAP, {"data": data},
                                                 existing.meta.resource_version)
        return None

    async def _create(self, namespace: str, data: dict[str, str]) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": c.TRUST_BUNDLE_CONFIGMAP,
                "namespace": namespace,
                "labels": {c.MANAGED_BY_LABEL: c.MANAGER_NAME},
            },
            "data": data,
        }
        # Created concurrently: the next reconcile compares contents.
        with contextlib.suppress(ConflictError):
            await self.cluster.create_config_map(namespace, body)

    async def follow(self, namespace: str, identity: str) -> None:
        """Keep ``ca.crt`` of an identity's Secrets on the current bundle, touching nothing else."""
        try:
            await self.ca_store.ensure_fresh()
            bundle_pem = self.ca_store.bundle_pem
        except CAError:
            return
        recorded = bundle_hash(bundle_pem)
        for body in await self.cluster.list_secrets(namespace, secrets_query(identity)):
            secret = SecretView.of(body)
            if not is_pod_secret_of(secret, identity) or (
                    data_value(secret.data, c.CA_CRT)[0] == bundle_pem
                    and secret.annotations.get(c.BUNDLE_HASH_ANNOTATION) == recorded):
                continue
            try:
                # The hash beside ca.crt, as every write of it: the CA rotation counts Secrets by it.
                await self.writer.update(secret, {"metadata": {"annotations": {c.BUNDLE_HASH_ANNOTATION: recorded}},
                                                  "data": {c.CA_CRT: b64text(bundle_pem)}})
            except KubernetesAPIError as exc:
                logger.warning("could not refresh the trust bundle of Secret %s/%s: %s", namespace, secret.name, exc)
