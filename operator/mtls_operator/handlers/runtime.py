"""Everything the handlers share, built once at start-up and reached through kopf's ``memo``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s_client

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.reconciler import IdentityKey, Reconciler
from mtls_operator.controller.workqueue import RateLimiter, WorkQueue
from mtls_operator.k8s import Cluster, KubeAPI, core_path
from mtls_operator.k8s.watch import DeletionWatch
from mtls_operator.metrics import Metrics
from mtls_operator.plan import IdentityRef

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    api: KubeAPI
    reconciler: Reconciler
    queue: WorkQueue[IdentityKey]
    metrics: Metrics
    identities: dict[IdentityKey, IdentityRef] = field(default_factory=dict)
    # (uid, generation) last queued per identity: spec changes need work, status writes do not.
    generations: dict[IdentityKey, tuple[str, object]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    secret_watch: DeletionWatch | None = None
    watch_timeout: int = 60

    @classmethod
    def build(
        cls,
        settings: Settings,
        configuration: k8s_client.Configuration,
        clock: Clock,
        *,
        retry_delay: float,
        ca_refresh_interval: float,
        watch_timeout: int,
    ) -> Runtime:
        api = KubeAPI.from_configuration(configuration)
        cluster = Cluster(api)
        metrics = Metrics()
        ca_store = CAStore(
            cluster,
            namespace=settings.namespace,
            secret_name=settings.ca_secret,
            clock=clock,
            refresh_interval=ca_refresh_interval,
            metrics=metrics,
        )
        limiter = RateLimiter(settings.max_issuance_per_second)
        reconciler = Reconciler(cluster, settings, ca_store, clock=clock, limiter=limiter, retry_delay=retry_delay,
                                metrics=metrics)
        queue: WorkQueue[IdentityKey] = WorkQueue(reconciler.reconcile)
        return cls(settings=settings, api=api, reconciler=reconciler, queue=queue, metrics=metrics,
                   watch_timeout=watch_timeout)

    def start(self) -> None:
        """Start the metrics endpoint (first: a port in use fails start-up) and the background work."""
        if self.settings.metrics_enabled:
            self.metrics.serve(self.settings.metrics_port)
        self.task = asyncio.create_task(self._run(), name="mtls-operator runtime")

    def _start_secret_watch(self) -> None:
        loop = asyncio.get_running_loop()

        def from_watch_thread(metadata: Mapping[str, Any] | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the operator stops
                loop.call_soon_threadsafe(self._secret_deleted, metadata)

        self.secret_watch = DeletionWatch(
            self.api.api_client,
            core_path("secrets"),
            f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}",
            from_watch_thread,
            timeout_seconds=self.watch_timeout,
        )
        self.secret_watch.start()

    def _stop_secret_watch(self) -> None:
        if self.secret_watch is not None:
            self.secret_watch.stop()
            self.secret_watch = None

    def _secret_deleted(self, metadata: Mapping[str, Any] | None) -> None:
        """A managed Secret deleted behind our back is re-issued now, not at the next renewal."""
        if metadata is None:
            keys = list(self.identities)
        else:
            key = (str(metadata.get("namespace")), str((metadata.get("labels") or {}).get(c.IDENTITY_LABEL)))
            keys = [key] if key in self.identities else []
            self.reconciler.secret_vanished(key[0], str(metadata.get("name")))
        for key in keys:
            self.queue.add(key)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for work in self._replica_work():
                group.create_task(work)
            group.create_task(self._lead_when_elected())

    def _replica_work(self) -> list[Coroutine[Any, Any, None]]:
        """What every replica runs, leading or not (the admission webhooks are served by all)."""
        return []

    async def _lead_when_elected(self) -> None:
        """Lead (issue, renew, rotate) only while this replica is the elected one."""
        await self._lead()

    async def _lead(self) -> None:
        """Everything only the leader does; cancelled as a whole when leadership is lost."""
        self._start_secret_watch()
        try:
            # A new leader knows nothing of the schedule: every identity is looked at once.
            for key in self.identities:
                self.queue.add(key)
            async with asyncio.TaskGroup() as group:
                for work in self._leader_work():
                    group.create_task(work)
        finally:
            self._stop_secret_watch()

    def _leader_work(self) -> list[Coroutine[Any, Any, None]]:
        return [self.queue.run(), self._watch_ca()]

    async def _watch_ca(self) -> None:
        """Re-read the CA periodically; when it changes (replaced, broken, fixed) every identity looks again."""
        ca_store = self.reconciler.ca_store
        while True:
            await asyncio.sleep(ca_store.refresh_interval)
            before = ca_store.state
            await ca_store.ensure_fresh()
            if ca_store.state != before:
                for key in self.identities:
                    self.queue.add(key)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await asyncio.to_thread(self.metrics.close)
        self.api.close()
