"""Sharding: the namespaces this operator serves, as the API server's label selector says.

A cluster that outgrows one process runs several operator Deployments, each with its own namespace
selector (``MTLS_SHARD_NAMESPACE_SELECTOR``) and its own Lease. Nothing here coordinates the shards:
the API server evaluates each shard's selector over the Namespaces (a metadata-only list and watch),
and the shard serves what it is told matches; the selectors, which the chart renders, partition the
namespaces. A namespace relabelled from one shard to another leaves the first (it arrives there as
DELETED: it no longer matches) and joins the second, which looks at its identities at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from mtls_operator.k8s import JSON, KubeAPI, core_path
from mtls_operator.k8s.watch import ResourceWatch


class NamespaceShard:
    """The set of namespaces matched by ``selector``, kept by a watch; ``ready`` once first listed."""

    def __init__(
        self,
        selector: str,
        *,
        joined: Callable[[str], None],
        left: Callable[[str], None],
    ) -> None:
        self.selector = selector
        self.namespaces: set[str] = set()
        self.ready = asyncio.Event()
        self._joined = joined
        self._left = left

    def serves(self, namespace: str) -> bool:
        return namespace in self.namespaces

    async def run(self, api: KubeAPI, *, timeout_seconds: int = 60) -> None:
        watch = ResourceWatch(api, core_path("namespaces"), self.selector, self.changed, metadata_only=True,
                              timeout_seconds=timeout_seconds, on_list=self.listed)
        await watch.run()

    def listed(self, items: list[JSON]) -> None:
        """A full list (at start, or after the watch lost its place): the set becomes exactly this."""
        names = {str((item.get("metadata") or {}).get("name")) for item in items}
        before, self.namespaces = self.namespaces, names
        self.ready.set()
        for name in sorted(before - names):
            self._left(name)
        for name in sorted(names - before):
            self._joined(name)

    def changed(self, kind: str, namespace: Mapping[str, Any] | None) -> None:
        name = str(((namespace or {}).get("metadata") or {}).get("name") or "")
        if not name:
            return
        if kind == "DELETED":  # deleted, or relabelled out of this shard's selector
            if name in self.namespaces:
                self.namespaces.discard(name)
                self._left(name)
        elif name not in self.namespaces:
            self.namespaces.add(name)
            self._joined(name)
