"""What the tests of the controller's parts share: a fixed clock, a fake cluster, a CA store on it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.reconciler import Reconciler
from mtls_operator.controller.workqueue import RateLimiter
from tests.unit.fake_cluster import FakeCluster

NS = "shop"
SETTINGS = Settings()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


async def ca_store(cluster: FakeCluster, clock: Clock) -> CAStore:
    store = CAStore(cluster, namespace=SETTINGS.namespace, secret_name=SETTINGS.ca_secret,  # type: ignore[arg-type]
                    clock=clock)
    await store.ensure_fresh()
    cluster.writes.clear()  # the CA Secret it created: the tests count what comes after
    return store


async def reconciler(cluster: FakeCluster, clock: Clock, *, pod_certificates: bool = False) -> Reconciler:
    settings = replace(SETTINGS, pod_certificates=pod_certificates)
    return Reconciler(cluster, settings, await ca_store(cluster, clock), clock=clock,  # type: ignore[arg-type]
                      limiter=RateLimiter(1000), jitter=lambda: 0.0)


WEB = {"selector": {"matchLabels": {"app": "web"}}}
