"""High availability: real operator processes compete for the Lease; only its holder ever issues.

Each replica names itself in its User-Agent, and the emulator's request log keeps the order in
which writes were applied, so "who wrote which Secret while who held the Lease" is read from the
API server's side, as an audit log would show it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from kube_emulator import Emulator, EmulatorServer, RequestLog
from mtls_operator.rules.admission import webhook_configurations
from mtls_operator.rules.election import LeaseRecord, Timing

from .conftest import OPERATOR_NS, eventually, identity, managed_secrets, pod

LEASE_DURATION = timedelta(seconds=3)
TIMING = Timing.for_lease_duration(LEASE_DURATION)
LEASE_API = "coordination.k8s.io/v1"
LEASE_NAME = "mtls-operator"
# A process starting up (Python, kopf, the first list calls) on a busy machine.
START_UP = 60.0
# Scheduling noise of processes on a loaded machine, for bounds that are the protocol's own.
NOISE = 2.0
T = TypeVar("T")
_AGENT = re.compile(r"^mtls-operator/\S+ \((?P<replica>[^)]+)\)$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))  # noqa: S104 -- free where the operator binds: all interfaces
        return int(probe.getsockname()[1])


def get_json(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 -- our own http:// URL
        return response.status, json.loads(response.read())


def leader_gauge(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("mtls_leader "):
                return float(line.split()[1])
    return None


class Replica:
    """One `mtls-operator run` process, as one pod of the Deployment (its pod name, its ports)."""

    def __init__(self, name: str, kubeconfig: Path, logs: Path, *, webhooks: bool = False) -> None:
        self.name = name
        self.kubeconfig = kubeconfig
        self.log = logs / f"{name}-{next(_starts)}.log"
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.webhook_port = free_port() if webhooks else 0
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTLS_") and k != "KUBECONFIG"}
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "mtls_operator.cli", "run", "--kubeconfig", str(self.kubeconfig),
                "--namespace", OPERATOR_NS, "--webhook-port", str(self.webhook_port),
                "--metrics-port", str(self.metrics_port),
                "--health-port", str(self.health_port), "--pod-name", self.name,
                "--lease-duration", f"{LEASE_DURATION.total_seconds():g}s",
                env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )

    async def healthy(self) -> dict[str, Any]:
        """The health endpoint's answer, once the operator has started (200, with our probe's role)."""

        def probe() -> dict[str, Any] | None:
            try:
                status, body = get_json(f"http://127.0.0.1:{self.health_port}/healthz")
            except OSError:
                return None
            return body if status == 200 and isinstance(body, dict) else None

        async def answer() -> dict[str, Any] | None:
            return await asyncio.to_thread(probe)

        return await poll(answer, within=START_UP, what=f"{self.name}'s health endpoint")

    async def leader_gauge(self) -> float | None:
        return await asyncio.to_thread(leader_gauge, self.metrics_port)

    async def stop(self, sig: signal.Signals) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


_starts = itertools.count()


async def poll(check: Callable[[], Awaitable[T | None]], *, within: float, what: str) -> T:
    """``eventually`` for a coroutine function."""
    deadline = asyncio.get_running_loop().time() + within
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def lease(emulator: Emulator) -> LeaseRecord | None:
    return LeaseRecord.from_lease(emulator.get(LEASE_API, "leases", LEASE_NAME, OPERATOR_NS))


def holder(emulator: Emulator) -> str | None:
    record = lease(emulator)
    return record.holder if record is not None and record.holder else None


def writes_by_replica(log: RequestLog, since: int = 0) -> list[tuple[str, str, str, int]]:
    """(replica, verb, resource, status) of every write by an operator replica, in the order applied,
    from the ``since``-th request on (POSTs carry no name in the log: a Secret is told apart by when)."""
    writes = []
    for request in list(log.recent)[since:]:
        match = _AGENT.match(request.user_agent or "")
        if match and request.verb in ("create", "update", "patch", "delete"):
            writes.append((match["replica"], request.verb, request.resource, request.status))
    return writes


def secret_writers(log: RequestLog, since: int) -> set[str]:
    return {replica for replica, _, resource, _ in writes_by_replica(log, since) if resource == "secrets"}


def assert_only_the_holder_writes(log: RequestLog) -> None:
    """Every write (or attempt) but the Lease's comes from the replica whose successful Lease write was
    the last before it."""
    current: str | None = None
    for replica, verb, resource, status in writes_by_replica(log):
        if resource == "leases":
            if status < 300:  # a lost race to create or renew it is no leadership
                current = replica
        else:
            assert replica == current, f"{replica} wrote ({verb}) {resource} while {current} held the Lease"


Launch = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def launch(server: EmulatorServer, tmp_path: Path) -> AsyncIterator[Launch]:
    """Start a replica by pod name; at the end every process still running is killed, and the logs
    are printed (pytest shows them when the test fails)."""
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    started: list[Replica] = []

    async def start(name: str, *, webhooks: bool = False) -> Replica:
        replica = Replica(name, kubeconfig, tmp_path, webhooks=webhooks)
        started.append(replica)
        await replica.start()
        return replica

    try:
        yield start
    finally:
        for replica in started:
            if replica.process is not None and replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()
            print(f"----- {replica.log.name}\n{replica.output()}")


async def test_one_replica_issues_and_another_takes_over(server: EmulatorServer, launch: Launch) -> None:
    emulator = server.emulator
    emulator.requests = RequestLog(recent_size=1_000_000)  # every request of the test, in order
    first, second = await asyncio.gather(launch("a"), launch("b"))
    for replica in (first, second):
        assert (await replica.healthy())["role"] in ("leader", "follower")
    leader_name = await eventually(lambda: holder(emulator), within=START_UP, what="a Lease holder")
    leader, follower = (first, second) if leader_name == first.name else (second, first)

    # The leader issues; the follower writes nothing at all, and is healthy.
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    await eventually(lambda: "payments-payments-0" in managed_secrets(emulator), what="the first Secret")
    await asyncio.sleep(5 * TIMING.retry_period.total_seconds())  # time for a follower to misbehave
    assert_only_the_holder_writes(emulator.requests)
    writes = writes_by_replica(emulator.requests)
    assert {replica for replica, _, resource, _ in writes if resource != "leases"} == {leader.name}
    assert {replica for replica, _, resource, status in writes if resource == "leases" and status < 300} == {
        leader.name}
    assert secret_writers(emulator.requests, since=0) == {leader.name}
    assert (await leader.leader_gauge(), await follower.leader_gauge()) == (1, 0)
    assert (await follower.healthy())["role"] == "follower"

    # The leader dies without a word: the follower waits for the Lease to expire, then issues.
    assert await leader.stop(signal.SIGKILL) == -signal.SIGKILL
    last = lease(emulator)  # its last renewal
    assert last is not None
    assert last.holder == leader.name
    assert last.renew_time is not None
    killed = len(emulator.requests.recent)
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: holder(emulator) == follower.name, within=START_UP, what="a takeover")
    await eventually(lambda: "payments-payments-1" in managed_secrets(emulator), what="the takeover's Secret")
    taken = lease(emulator)
    assert taken is not None
    assert taken.acquire_time is not None
    waited = (taken.acquire_time - last.renew_time).total_seconds()
    # Not before the Lease expired (the follower counts from when it saw that renewal) ...
    assert waited >= LEASE_DURATION.total_seconds() - 0.1, waited
    # ... and at its next look after that.
    assert waited <= (LEASE_DURATION + TIMING.retry_period).total_seconds() + NOISE, waited
    assert taken.transitions == 1
    # The log line follows the Lease write the test saw: wait for it rather than race it.
    await eventually(lambda: f"(taken over from {leader.name})" in follower.output(), what="the takeover's log line")
    assert await follower.leader_gauge() == 1
    assert secret_writers(emulator.requests, since=killed) == {follower.name}

    # The dead replica's pod comes back and follows; the leader is stopped cleanly and hands over at once.
    returning = await launch(leader.name)
    assert (await returning.healthy())["role"] == "follower"
    assert await follower.stop(signal.SIGTERM) == 0
    stopped = len(emulator.requests.recent)
    assert "released Lease mtls-system/mtls-operator" in follower.output()
    await eventually(lambda: holder(emulator) == returning.name, within=START_UP, what="the handover")
    # It found the Lease released, not expired.
    await eventually(lambda: f"is held by {returning.name} (it was free)" in returning.output(),
                     what="the handover's log line")
    emulator.create(pod("payments-2", "payments"))
    await eventually(lambda: "payments-payments-2" in managed_secrets(emulator), what="the new leader's Secret")
    record = lease(emulator)
    assert record is not None
    assert record.transitions == 2
    assert secret_writers(emulator.requests, since=stopped) == {returning.name}
    assert_only_the_holder_writes(emulator.requests)


async def test_a_follower_serves_the_admission_webhooks_while_the_leader_issues(
    server: EmulatorServer, launch: Launch
) -> None:
    emulator = server.emulator
    # As the chart installs them (the leader fills in their caBundle as soon as it leads).
    for body in webhook_configurations(configuration="mtls-operator", service="mtls-operator-webhook",
                                       namespace=OPERATOR_NS):
        emulator.create(body)
    first = await launch("a", webhooks=True)
    await eventually(lambda: holder(emulator) == "a", within=START_UP, what="a leading")
    second = await launch("b", webhooks=True)
    assert (await second.healthy())["role"] == "follower"
    # The API server reaches the webhooks through their Service: here it routes to the follower only.
    emulator.route_service(OPERATOR_NS, "mtls-operator-webhook", 443, f"127.0.0.1:{second.webhook_port}")
    emulator.create(identity("payments"))

    deployment_pod = pod("ignored", "payments")
    deployment_pod["metadata"] = {"generateName": "payments-7d9f8c-", "namespace": "shop",
                                  "labels": deployment_pod["metadata"]["labels"]}

    async with aiohttp.ClientSession() as session:

        async def admitted() -> dict[str, Any] | None:
            async with session.post(f"{server.url}/api/v1/namespaces/shop/pods", json=deployment_pod) as response:
                body = await response.json(content_type=None)
                injected = response.status == 201 and "mtls.dev/secret-name" in body["metadata"].get("annotations", {})
                return body if injected else None

        # Once the leader has put the CA into the caBundle, the follower's certificate is trusted.
        created = await poll(admitted, within=START_UP, what="a pod admitted through the follower's webhook")
    secret_name = created["metadata"]["annotations"]["mtls.dev/secret-name"]
    await eventually(lambda: secret_name in managed_secrets(emulator), within=START_UP, what="its Secret")
    await eventually(lambda: "Webhook 'inject-pod' succeeded" in second.output(), what="the follower's webhook log")
    assert "Webhook 'inject-pod'" not in first.output()
    assert holder(emulator) == first.name
    assert (await first.leader_gauge(), await second.leader_gauge()) == (1, 0)


@pytest.mark.parametrize(("flag", "variable", "what"), [
    ("--health-port", "MTLS_HEALTH_PORT", "the health endpoint"),
    ("--webhook-port", "MTLS_WEBHOOK_PORT", "the admission webhooks"),
], ids=["health", "webhook"])
async def test_a_port_in_use_stops_start_up_with_one_line(
    server: EmulatorServer, tmp_path: Path, flag: str, variable: str, what: str
) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 -- taken where the operator binds
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--health-port": "0", "--webhook-port": "0", flag: str(port)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mtls_operator.cli", "run", "--kubeconfig", str(kubeconfig),
            "--namespace", OPERATOR_NS, "--metrics-port", "0", *(arg for item in ports.items() for arg in item),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=START_UP)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 2
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"mtls-operator: {variable}={port}: cannot serve {what}"), last
    assert "Traceback" not in stderr.decode()
