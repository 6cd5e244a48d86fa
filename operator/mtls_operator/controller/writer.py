"""Pod Secret writes, and the memory of them: the Secret watch ignores the operator's own edits.

Callers check ownership before any write (``rules.plan.ownership_problem``); deletes are
preconditioned on uid and resourceVersion, updates on resourceVersion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mtls_operator.controller.cache import BoundedCache
from mtls_operator.k8s import Cluster
from mtls_operator.k8s.views import SecretView


class SecretWriter:
    def __init__(self, cluster: Cluster, *, on_written: Callable[[SecretView], None] | None = None,
                 on_deleted: Callable[[SecretView], None] | None = None) -> None:
        self.cluster = cluster
        # Told of every write as the API answered it (the reconciler's store of watched objects).
        self._on_written = on_written
        self._on_deleted = on_deleted
        # The resourceVersion of our last write per Secret (namespace, name).
        self._written: BoundedCache[tuple[str, str], str] = BoundedCache()

    async def create(self, namespace: str, body: Mapping[str, Any]) -> SecretView:
        return self._remember(SecretView.of(await self.cluster.create_secret(namespace, body)))

    async def update(self, secret: SecretView, patch: Mapping[str, Any]) -> SecretView:
        """A merge patch of ``secret`` as it was read (its resourceVersion: a Secret changed since fails)."""
        written = await self.cluster.update_secret(secret.meta.namespace, secret.name, patch,
                                                   secret.meta.resource_version)
        return self._remember(SecretView.of(written))

    async def delete(self, secret: SecretView) -> None:
        await self.cluster.delete_secret(secret.meta.namespace, secret.name, secret.meta.uid,
                                         secret.meta.resource_version)
        if self._on_deleted is not None:
            self._on_deleted(secret)

    def wrote(self, namespace: str, name: str, resource_version: str) -> bool:
        """Whether this version of a Secret is one the operator wrote itself."""
        return self._written.get((namespace, name)) == resource_version

    def _remember(self, written: SecretView) -> SecretView:
        self._written.put((written.meta.namespace, written.name), written.meta.resource_version)
        if self._on_written is not None:
            self._on_written(written)
        return written
