"""The real operator (kopf) against the in-process Kubernetes API emulator, on the test's loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.demo.run import project_crds
from mtls_operator.handlers.runtime import Runtime
from mtls_operator.main import OperatorThread

API = f"{c.GROUP}/{c.VERSION}"
NS = "shop"
OPERATOR_NS = "mtls-system"
T = TypeVar("T")


class FakeClock:
    """Wall-clock time the test moves by hand (renewal is decided on it, not on the loop's timers)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class OperatorHandle:
    """The real operator, on its own loop in a thread (kopf must not share the emulator's loop)."""

    def __init__(self, server: EmulatorServer, clock: FakeClock, settings: Settings) -> None:
        self.server = server
        self.clock = clock
        self.settings = settings
        self._thread: OperatorThread | None = None

    @property
    def runtime(self) -> Runtime:
        assert self._thread is not None, "the operator is not running"
        runtime: Runtime = self._thread.memo["runtime"]
        return runtime

    async def start(self) -> None:
        self._thread = OperatorThread(self.settings, self.server.client_configuration(), clock=self.clock,
                                      retry_delay=0.5, ca_refresh_interval=0.5, watch_timeout=2)
        await asyncio.to_thread(self._thread.start)

    async def stop(self) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._thread.stop)
            self._thread = None

    def poke(self) -> None:
        """Have every known identity reconciled now (as its renewal timer would, later)."""
        runtime = self.runtime

        async def enqueue_all() -> None:
            for key in list(runtime.identities):
                runtime.queue.add(key)

        assert self._thread is not None
        self._thread.submit(enqueue_all()).result(timeout=5)

    async def wait_idle(self) -> None:
        assert self._thread is not None
        await asyncio.wrap_future(self._thread.submit(self.runtime.queue.wait_idle()))


@pytest.fixture
async def server() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(crds=project_crds()) as srv:
        for namespace in (OPERATOR_NS, NS):
            srv.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        yield srv


@pytest.fixture
def emulator(server: EmulatorServer) -> Emulator:
    return server.emulator


def operator_settings(**overrides: Any) -> Settings:
    """Settings for a test operator: metrics, webhooks, health endpoint and leader election off unless a
    test asks (several operators run in one process, each would take the same ports and the Lease)."""
    values: dict[str, Any] = {"namespace": OPERATOR_NS, "metrics_port": 0, "webhook_port": 0, "health_port": 0,
                              "leader_election": False}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def operator(server: EmulatorServer, clock: FakeClock) -> AsyncIterator[OperatorHandle]:
    handle = OperatorHandle(server, clock, operator_settings())
    await handle.start()
    try:
        yield handle
    finally:
        await handle.stop()


async def eventually(check: Callable[[], T], *, within: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


async def settle(operator: OperatorHandle, seconds: float = 0.5) -> None:
    """Let events drain and the queue go idle, then a little longer."""
    await asyncio.sleep(0.1)
    await asyncio.wait_for(operator.wait_idle(), timeout=10)
    await asyncio.sleep(seconds)
    await asyncio.wait_for(operator.wait_idle(), timeout=10)


def identity(name: str, app: str | None = None, **spec: Any) -> dict[str, Any]:
    body_spec: dict[str, Any] = {"selector": {"matchLabels": {"app": app or name}}}
    body_spec.update(spec)
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": name, "namespace": NS}, "spec": body_spec}


def pod(name: str, app: str, *, sa: str = "default", opted_in: bool = True, **meta: Any) -> dict[str, Any]:
    labels = {"app": app}
    if opted_in:
        labels[c.INJECT_LABEL] = c.INJECT_VALUE
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "labels": labels}
    metadata.update(meta)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "example/app:1"}]},
            "status": {"phase": "Running"}}


def managed_secrets(emulator: Emulator, identity_name: str | None = None) -> dict[str, dict[str, Any]]:
    selector = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"
    if identity_name:
        selector += f",{c.IDENTITY_LABEL}={identity_name}"
    return {s["metadata"]["name"]: s for s in emulator.list("v1", "secrets", NS, label_selector=selector)}


def get_identity(emulator: Emulator, name: str) -> dict[str, Any]:
    body = emulator.get(API, c.PLURAL, name, NS)
    assert body is not None, f"identity {name} is gone"
    return body


def ready(emulator: Emulator, name: str) -> dict[str, Any] | None:
    """The Ready condition of an identity, or None while it has none."""
    body = emulator.get(API, c.PLURAL, name, NS) or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((cond for cond in conditions if cond.get("type") == "Ready"), None)
