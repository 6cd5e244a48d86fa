"""No private key, in any form, in any log line, Event, status or metric during a full scenario.

The scenario issues every key type, renews, repairs a Secret a tenant broke (its key put into the
certificate field, where a careless error message would echo it), rotates the CA, and refuses bad
specs; the scan then looks for every private key the cluster holds at the end and every one seen on
the way, as PEM, as base64 of the PEM, and as lines of the PEM body.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.rules.plan import b64text, secret_data

from ..integration.conftest import (
    NS,
    OPERATOR_NS,
    FakeClock,
    OperatorHandle,
    eventually,
    identity,
    managed_secrets,
    operator_settings,
    pod,
    ready,
    settle,
)
from ..integration.test_metrics import free_port

KEY_TYPES = {
    "ecdsa": {"algorithm": "ECDSA", "size": 384},
    "ed": {"algorithm": "Ed25519"},
    "rsa": {"algorithm": "RSA", "size": 2048},
}


def _needles(key_pem: bytes) -> set[str]:
    """The forms a leaked key could take: its PEM, its base64, and each line of its body."""
    text = key_pem.decode()
    lines = {line for line in text.splitlines() if line and not line.startswith("-----") and len(line) >= 32}
    return {text.strip(), b64text(key_pem)[:60], *lines}


def _keys(emulator: Emulator) -> set[bytes]:
    found: set[bytes] = set()
    for namespace in (NS, OPERATOR_NS):
        for secret in emulator.list("v1", "secrets", namespace):
            for field in (c.TLS_KEY, "next.key"):
                value = secret_data(secret, field)
                if value and b"PRIVATE KEY" in value:
                    found.add(value)
    return found


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


@pytest.fixture
async def watched(server: EmulatorServer, clock: FakeClock) -> Any:
    port = free_port()
    handle = OperatorHandle(server, clock, operator_settings(metrics_port=port,
                                                             ca_propagation_delay=timedelta(seconds=1)))
    await handle.start()
    try:
        yield handle, port
    finally:
        await handle.stop()


async def test_no_private_key_reaches_logs_events_status_or_metrics(
    emulator: Emulator, watched: tuple[OperatorHandle, int], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    operator, port = watched
    caplog.set_level(logging.DEBUG)
    seen: set[bytes] = set()
    phases: set[str | None] = set()
    for name, key in KEY_TYPES.items():
        emulator.create(identity(name, privateKey=key, duration="1h"))
        emulator.create(pod(f"{name}-0", name))
    emulator.create(identity("broken", duration="24h", renewBefore="30h"))
    for name in KEY_TYPES:
        await eventually(lambda name=name: (ready(emulator, name) or {}).get("status") == "True", within=20,
                         what=f"{name} Ready")
    seen |= _keys(emulator)

    # A tenant moves the key into the certificate field: the repair must not quote what it read.
    victim = managed_secrets(emulator, "ecdsa")["ecdsa-ecdsa-0"]
    stolen = secret_data(victim, c.TLS_KEY) or b""
    emulator.patch("v1", "secrets", "ecdsa-ecdsa-0", NS, {"data": {c.TLS_CRT: base64.b64encode(stolen).decode()}})
    await eventually(lambda: b"CERTIFICATE" in (secret_data(managed_secrets(emulator, "ecdsa")["ecdsa-ecdsa-0"],
                                                             c.TLS_CRT) or b""), what="repair")
    seen |= _keys(emulator)

    # Renewal, then a CA rotation run to its end.
    clock.advance(timedelta(minutes=50))
    operator.poke()
    await settle(operator)
    seen |= _keys(emulator)
    emulator.patch("v1", "secrets", "mtls-operator-ca", OPERATOR_NS,
                   {"metadata": {"annotations": {"mtls.dev/rotate": "true"}}})
    for _ in range(300):
        seen |= _keys(emulator)
        annotations = emulator.get("v1", "secrets", "mtls-operator-ca", OPERATOR_NS)["metadata"]["annotations"]
        phases.add(annotations.get("mtls.dev/rotation-phase"))
        if annotations.get("mtls.dev/rotation-phase") == "Idle" and len(phases) > 1:
            break
        clock.advance(timedelta(seconds=5))
        await asyncio.sleep(0.05)
    await settle(operator)
    seen |= _keys(emulator)
    # A phase moves on as soon as its last object is written: Retiring (no propagation delay to wait) can
    # begin and end between two samples here, so the CA Secret's Events show that it ran.
    assert phases >= {"Distributing", "Reissuing", "Idle"}, phases
    reasons = {event["reason"] for event in emulator.list("v1", "events", OPERATOR_NS)
               if event["involvedObject"]["name"] == "mtls-operator-ca"}
    assert {"RotationReissuing", "RotationRetiring", "RotationComplete"} <= reasons, reasons
    assert len(seen) >= 8, "the scenario should have seen keys of every kind (pods, CA, next CA)"
    metrics = await asyncio.to_thread(_scrape, port)
    haystacks = {
        "log": "\n".join(f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records),
        "events": "\n".join(str(event) for namespace in (NS, OPERATOR_NS)
                            for event in emulator.list("v1", "events", namespace)),
        "status": "\n".join(str(body.get("status")) for body in emulator.list(f"{c.GROUP}/{c.VERSION}", c.PLURAL, NS)),
        "metrics": metrics,
    }
    # pytest.fail, not assert: a failing assert would print the key it found.
    for where, text in haystacks.items():
        if "PRIVATE KEY" in text:
            pytest.fail(f"a PEM private key appears in the {where}")
        if any(needle in text for key in seen for needle in _needles(key)):
            pytest.fail(f"a private key appears in the {where}")
