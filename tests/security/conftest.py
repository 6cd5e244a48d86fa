"""Attacks by a tenant who writes only in its own namespace (pods, Secrets, ConfigMaps, identities).

Each test here is one attack from the tenant-isolation issue, run against the real reconciler (or
the real operator) on the emulator; each failed on the code before the fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from kube_emulator import Emulator, EmulatorThread
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.reconciler import Reconciler
from mtls_operator.controller.workqueue import RateLimiter
from mtls_operator.demo.run import project_crds
from mtls_operator.k8s import Cluster, KubeAPI

# The real operator on the test's loop, for whole scenarios (tests/integration's fixtures).
from ..integration.conftest import clock, emulator, server  # noqa: F401 -- re-exported fixtures

OPERATOR_NS = "mtls-system"
TENANTS = ("shop", "attacker")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Bench:
    """An emulated cluster and the operator's parts, driven step by step by the test."""

    emulator: Emulator
    cluster: Cluster
    settings: Settings
    ca_store: CAStore
    reconciler: Reconciler
    clock: Clock


@pytest.fixture
def threaded_server() -> Iterator[EmulatorThread]:
    with EmulatorThread(crds=project_crds()) as srv:
        for namespace in (OPERATOR_NS, *TENANTS):
            srv.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        yield srv


@contextlib.asynccontextmanager
async def parts(threaded: EmulatorThread, **settings: Any) -> AsyncIterator[Bench]:
    api = KubeAPI.from_configuration(threaded.client_configuration())
    cluster = Cluster(api)
    wall = Clock()
    values: dict[str, Any] = {"namespace": OPERATOR_NS, "webhook_port": 0, "health_port": 0,
                              "metrics_port": 0, "leader_election": False}
    values.update(settings)
    config = Settings(**values)
    ca_store = CAStore(cluster, namespace=OPERATOR_NS, secret_name=config.ca_secret, clock=wall)
    reconciler = Reconciler(cluster, config, ca_store, clock=wall, limiter=RateLimiter(1000), jitter=lambda: 0.0)
    try:
        yield Bench(threaded.emulator, cluster, config, ca_store, reconciler, wall)
    finally:
        api.close()


@pytest.fixture
async def bench(threaded_server: EmulatorThread) -> AsyncIterator[Bench]:
    async with parts(threaded_server) as value:
        yield value
