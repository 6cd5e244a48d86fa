"""Renewal on fast-forwarded time: the real reconciler and queue, the emulated API, days in a second.

kopf itself stays out of this test (it must not share a loop, and its watch timers would race the
fake clock); what schedules renewals is the queue and the reconciler, and those run here for real,
with the wall clock derived from the loop's (looptime) clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.reconciler import IdentityKey, Reconciler
from mtls_operator.controller.workqueue import RateLimiter, WorkQueue
from mtls_operator.k8s import Cluster, KubeAPI
from mtls_operator.testing import Emulator, EmulatorThread, project_crds

from .conftest import NS, OPERATOR_NS, identity, managed_secrets, pod

BASE = datetime(2026, 11, 27, tzinfo=UTC)
HOUR = 3600.0


@contextlib.asynccontextmanager
async def reconciling(server: EmulatorThread) -> AsyncIterator[WorkQueue[IdentityKey]]:
    loop = asyncio.get_running_loop()

    def clock() -> datetime:
        return BASE + timedelta(seconds=loop.time())

    api = KubeAPI.from_configuration(server.client_configuration())
    cluster = Cluster(api)
    settings = Settings(namespace=OPERATOR_NS, webhook_port=0, health_port=0, leader_election=False)
    ca_store = CAStore(cluster, namespace=OPERATOR_NS, secret_name=settings.ca_secret, clock=clock)
    reconciler = Reconciler(cluster, settings, ca_store, clock=clock, limiter=RateLimiter(50), jitter=lambda: 0.0)
    queue: WorkQueue[IdentityKey] = WorkQueue(reconciler.reconcile)
    task = asyncio.create_task(queue.run())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        api.close()


def serials(emulator: Emulator) -> dict[str, str]:
    return {name: s["metadata"]["annotations"][c.SERIAL_ANNOTATION] for name, s in managed_secrets(emulator).items()}


async def wait_for_change(emulator: Emulator, before: dict[str, Any], *, step: float, limit: float) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while serials(emulator) == before:
        assert loop.time() < deadline, f"nothing changed within {limit / HOUR:.0f}h of loop time"
        await asyncio.sleep(step)
    return loop.time()


@pytest.mark.looptime
async def test_certificates_renew_at_renew_before_and_again_after() -> None:
    with EmulatorThread(crds=project_crds()) as server:
        emulator = server.emulator
        for namespace in (OPERATOR_NS, NS):
            emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        emulator.create(identity("payments", duration="24h", renewBefore="8h"))
        emulator.create(pod("payments-0", "payments"))
        emulator.create(pod("payments-1", "payments"))
        async with reconciling(server) as queue:
            queue.add((NS, "payments"))
            issued_at = await wait_for_change(emulator, {}, step=1, limit=HOUR)
            first = serials(emulator)
            assert len(first) == 2

            # Renewal is due 16h after issuance (24h - renewBefore 8h): nothing happens before.
            renewed_at = await wait_for_change(emulator, first, step=60, limit=48 * HOUR)
            assert renewed_at - issued_at == pytest.approx(16 * HOUR, abs=120)
            second = serials(emulator)
            assert all(second[name] != first[name] for name in first), "both pods renewed in one batch"

            again_at = await wait_for_change(emulator, second, step=60, limit=48 * HOUR)
            assert again_at - renewed_at == pytest.approx(16 * HOUR, abs=120)

        status = emulator.get(f"{c.GROUP}/{c.VERSION}", c.PLURAL, "payments", NS)
        assert status is not None
        assert status["status"]["issued"] == 2
        renewals = [e for e in emulator.list("v1", "events", NS) if "renewal: 2" in e["message"]]
        assert len(renewals) == 2
