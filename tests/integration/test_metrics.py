"""The metrics endpoint of the real operator, scraped over HTTP as Prometheus would (DESIGN.md, "Metrics")."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c

from .conftest import (
    API,
    NS,
    OPERATOR_NS,
    FakeClock,
    OperatorHandle,
    eventually,
    get_identity,
    identity,
    managed_secrets,
    operator_settings,
    pod,
    ready,
    settle,
)

Labels = frozenset[tuple[str, str]]
Scrape = dict[str, dict[Labels, float]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))  # noqa: S104 -- free where the operator binds: all interfaces
        return int(probe.getsockname()[1])


def scrape(port: int) -> Scrape:
    """Every sample on /metrics, by sample name, then by its label set."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def labels(**values: str) -> Labels:
    return frozenset(values.items())


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.fixture
async def metered(server: EmulatorServer, clock: FakeClock) -> AsyncIterator[tuple[OperatorHandle, int]]:
    port = free_port()
    handle = OperatorHandle(server, clock, operator_settings(metrics_port=port))
    await handle.start()
    try:
        yield handle, port
    finally:
        await handle.stop()


async def test_scraped_series_match_the_cluster(emulator: Emulator, metered: tuple[OperatorHandle, int]) -> None:
    operator, port = metered
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    emulator.create(identity("broken", duration="24h", renewBefore="30h"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="payments Ready")
    await eventually(lambda: (ready(emulator, "broken") or {}).get("reason") == "InvalidSpec", what="InvalidSpec")
    await settle(operator)

    found = await asyncio.to_thread(scrape, port)
    status = get_identity(emulator, "payments")["status"]
    secrets = managed_secrets(emulator, "payments")
    assert len(secrets) == 2
    payments = {"namespace": NS, "identity": "payments"}

    assert found["mtls_identity_pods"] == {
        labels(**payments, state="served"): 2,
        labels(**payments, state="issued"): 2,
        labels(**payments, state="failed"): 0,
    }
    not_after = min(timestamp(s["metadata"]["annotations"][c.NOT_AFTER_ANNOTATION]) for s in secrets.values())
    assert found["mtls_certificate_expiration_timestamp_seconds"] == {labels(**payments): not_after}
    assert found["mtls_certificate_renewal_timestamp_seconds"] == {
        labels(**payments): timestamp(status["nextRenewalTime"])
    }
    issued = found["mtls_certificates_issued_total"]
    assert issued[labels(reason="new")] == 2
    assert sum(issued.values()) == 2
    assert found["mtls_issuance_duration_seconds_count"] == {labels(): 2}
    assert found["mtls_issuance_duration_seconds_sum"][labels()] > 0
    errors = found["mtls_issuance_errors_total"]
    assert errors[labels(reason="invalid-spec")] >= 1
    assert sum(errors.values()) == errors[labels(reason="invalid-spec")]
    assert found["mtls_ca_expiration_timestamp_seconds"].keys() == {labels(fingerprint=status["caFingerprint"])}

    pod_names = {"payments-0", "payments-1"}
    for name, series in found.items():
        for label_set in series:
            assert not {key for key, _ in label_set} & {"pod", "pod_name"}, name
            assert not {value for _, value in label_set} & pod_names, (name, label_set)

    emulator.delete(API, c.PLURAL, "payments", NS)
    await eventually(lambda: emulator.get(API, c.PLURAL, "payments", NS) is None, what="identity gone")
    await settle(operator)
    after = await asyncio.to_thread(scrape, port)
    for name, series in after.items():
        assert all(("identity", "payments") not in label_set for label_set in series), name
    # The counters keep their history; the CA is still there.
    assert after["mtls_certificates_issued_total"][labels(reason="new")] == 2
    assert after["mtls_ca_expiration_timestamp_seconds"].keys() == {labels(fingerprint=status["caFingerprint"])}


async def test_a_pod_whose_secret_name_is_taken_counts_as_failed(
    emulator: Emulator, metered: tuple[OperatorHandle, int]
) -> None:
    operator, port = metered
    emulator.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": "payments-payments-0", "namespace": NS}, "data": {}})
    emulator.create(identity("payments"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("reason") == "SecretConflict",
                     what="SecretConflict")
    await settle(operator)
    found = await asyncio.to_thread(scrape, port)
    payments = {"namespace": NS, "identity": "payments"}
    assert found["mtls_identity_pods"] == {
        labels(**payments, state="served"): 2,
        labels(**payments, state="issued"): 1,
        labels(**payments, state="failed"): 1,
    }
    assert found["mtls_issuance_errors_total"][labels(reason="secret-conflict")] >= 1
    assert found["mtls_certificates_issued_total"][labels(reason="new")] == 1


async def test_a_metrics_port_in_use_stops_start_up_with_one_line(server: EmulatorServer, tmp_path: Path) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 -- taken where the operator binds
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mtls_operator.cli", "run", "--kubeconfig", str(kubeconfig),
            "--namespace", OPERATOR_NS, "--metrics-port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 2
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"mtls-operator: MTLS_METRICS_PORT={port}: cannot serve metrics on 0.0.0.0:{port}"), last
    assert "Traceback" not in stderr.decode()


async def test_a_failing_renewal_keeps_expiry_visible(
    emulator: Emulator, metered: tuple[OperatorHandle, int], clock: FakeClock
) -> None:
    operator, port = metered
    emulator.create(identity("payments", duration="24h", renewBefore="8h"))
    emulator.create(pod("payments-0", "payments"))
    emulator.create(pod("payments-1", "payments"))
    await eventually(lambda: (ready(emulator, "payments") or {}).get("status") == "True", what="Ready")
    expiry = min(timestamp(s["metadata"]["annotations"][c.NOT_AFTER_ANNOTATION])
                 for s in managed_secrets(emulator).values())
    who = labels(namespace=NS, identity="payments")

    emulator.faults.add(verb="patch", resource="secrets", status=500, count=None)
    clock.advance(timedelta(hours=17))  # renewal due, 7h of validity left
    operator.poke()

    def failing() -> Scrape | None:
        found = scrape(port)
        failed = found.get("mtls_identity_pods", {}).get(labels(namespace=NS, identity="payments", state="failed"))
        # The pass sets the gauges before it writes the status: wait for both.
        reason = get_identity(emulator, "payments")["status"]["conditions"][0]["reason"]
        return found if failed == 2 and reason == "IssuanceFailed" else None

    found = await eventually(failing, what="both renewals failing")
    assert found["mtls_certificate_expiration_timestamp_seconds"][who] == expiry
    assert who in found["mtls_certificate_renewal_timestamp_seconds"]
    status = get_identity(emulator, "payments")["status"]
    assert status["nextRenewalTime"]
    assert status["spiffeIDs"] == ["spiffe://cluster.local/ns/shop/sa/default"]
    assert status["conditions"][0]["reason"] == "IssuanceFailed"


async def _run_until(kubeconfig: Path, port: int, done: Callable[[Scrape], bool], log: Path) -> Scrape:
    """``mtls-operator run`` as a process until ``done`` holds for its /metrics; what it last showed."""
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mtls_operator.cli", "run", "--kubeconfig", str(kubeconfig),
            "--namespace", OPERATOR_NS, "--metrics-port", str(port), "--health-port", "0", "--webhook-port", "0",
            "--leader-election", "false", stdout=output, stderr=output,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    found = await asyncio.to_thread(scrape, port)
                    if done(found):
                        return found
                await asyncio.sleep(0.1)
            tail = (await asyncio.to_thread(log.read_text))[-3000:]
            raise AssertionError(f"the operator's metrics never showed it; its log:\n{tail}")
        finally:
            process.terminate()
            await process.wait()


async def test_a_restart_lists_while_starting_writes_nothing_and_publishes_its_start_up(
    server: EmulatorServer, tmp_path: Path
) -> None:
    emulator = server.emulator
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    log = tmp_path / "operator.log"
    emulator.create(identity("payments"))
    for index in range(3):
        emulator.create(pod(f"payments-{index}", "payments"))
    issued = labels(namespace=NS, identity="payments", state="issued")
    await _run_until(kubeconfig, free_port(), lambda found: found.get("mtls_identity_pods", {}).get(issued) == 3,
                     log)
    before = {name: secret["metadata"]["resourceVersion"] for name, secret in managed_secrets(emulator).items()}

    found = await _run_until(kubeconfig, free_port(),
                             lambda found: labels(phase="first_look") in found.get("mtls_startup_seconds", {}), log)
    assert found["mtls_identity_pods"][issued] == 3
    phases = found["mtls_startup_seconds"]
    ended = [phases[labels(phase=phase)] for phase in ("imports", "runtime", "lists", "store", "first_look")]
    assert all(0 < seconds < 60 for seconds in ended)
    assert ended[0] <= ended[1] <= ended[4]
    assert ended[2] <= ended[3] <= ended[4]
    after = {name: secret["metadata"]["resourceVersion"] for name, secret in managed_secrets(emulator).items()}
    assert after == before, "the restart wrote no Secret"
    text = await asyncio.to_thread(log.read_text)
    assert "first full look at 1 identities done; start-up: imports" in text
    labelled = emulator.list("v1", "secrets", None, label_selector=f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}")
    assert f"watching from the lists made while starting: 3 pods, {len(labelled)} Secrets" in text, text
    assert "Traceback" not in text
