"""What the real operator logs: admission refusals at INFO (not kopf's ERROR "failed permanently"),
JSON lines with the identity/namespace/pod/reason keys, and never key material, in either format."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from kube_emulator import EmulatorServer
from mtls_operator import constants as c
from mtls_operator.observability.logs import JSONFormatter, TextFormatter
from mtls_operator.rules.plan import secret_data

from .conftest import (
    API,
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
)
from .test_webhooks import ca_bundles, free_port, register_webhooks


@pytest.fixture(params=["json", "text"])
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    """Everything logged (DEBUG and up, kopf included) in the given format, as `mtls-operator run -v` would."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JSONFormatter() if request.param == "json" else TextFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield request.param, buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def webhook_operator(server: EmulatorServer, clock: FakeClock) -> AsyncIterator[OperatorHandle]:
    port = free_port()
    register_webhooks(server.emulator, port)
    handle = OperatorHandle(server, clock, operator_settings(webhook_port=port))
    await handle.start()
    try:
        await eventually(lambda: all(ca_bundles(server.emulator)), what="caBundle in both configurations")
        await eventually(lambda: handle.runtime.serving is not None and handle.runtime.serving.state.ca_fingerprint,
                         what="a serving certificate from the CA")
        yield handle
    finally:
        await handle.stop()


def secret_material(server: EmulatorServer) -> list[str]:
    """Every private key the cluster holds (pods' and the CA's), as PEM lines, PEM and base64."""
    secrets = [*managed_secrets(server.emulator).values(),
               server.emulator.get("v1", "secrets", "mtls-operator-ca", OPERATOR_NS) or {}]
    found: list[str] = []
    for secret in secrets:
        key = secret_data(secret, c.TLS_KEY)
        assert key, "every Secret holds a key"
        found.append(base64.b64encode(key).decode())
        found.extend(line for line in key.decode().splitlines() if line and not line.startswith("-----"))
    return found


async def test_refusals_are_info_and_no_key_material_is_logged(
    server: EmulatorServer, webhook_operator: OperatorHandle, captured: tuple[str, io.StringIO]
) -> None:
    log_format, buffer = captured
    server.emulator.create(identity("payments"))
    for name in ("payments-0", "payments-1"):
        server.emulator.create(pod(name, "payments"))
    await eventually(lambda: ready(server.emulator, "payments"), what="payments Ready")
    # A refused apply (through the API server, so through the validating webhook).
    bad = identity("bad", dnsNames=["payments.example.com"])
    async with aiohttp.ClientSession() as session, session.post(
        f"{server.url}/apis/{API}/namespaces/{NS}/{c.PLURAL}", json=bad
    ) as response:
        assert response.status == 422
        assert "payments.example.com" in (await response.json())["message"]
    # A hand-broken Secret (its key replaced by the bundle) repaired: more issuing, more lines.
    secret = managed_secrets(server.emulator, "payments")["payments-payments-0"]
    server.emulator.patch("v1", "secrets", secret["metadata"]["name"], NS, {"data": {c.TLS_KEY: secret["data"][
        c.CA_CRT]}})
    await eventually(lambda: secret_data(managed_secrets(server.emulator, "payments")["payments-payments-0"],
                                         c.TLS_KEY) != secret_data(secret, c.TLS_KEY), what="the Secret repaired")
    await webhook_operator.wait_idle()
    webhook_operator.runtime.reconciler.issue_log.flush()  # issues are logged within a second: now

    text = buffer.getvalue()
    assert "admission refused identity shop/bad" in text
    assert "failed permanently" not in text
    for material in secret_material(server):
        assert material not in text
    assert "PRIVATE KEY" not in text
    assert "-----BEGIN" not in text

    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
        refusal = next(line for line in lines if "admission refused" in line["message"])
        assert (refusal["level"], refusal["identity"], refusal["namespace"], refusal["reason"]) == (
            "INFO", "bad", NS, "AdmissionRefused")
        # Its own line (with its pod field), or a line for the pods issued with it that names it.
        issued = [line for line in lines if line.get("reason") == "new" and (
            line.get("pod") == "payments-1" or "payments-1 (serial " in line["message"])]
        assert issued
        assert (issued[0]["identity"], issued[0]["namespace"]) == ("payments", NS)
        assert not [line for line in lines if line["level"] == "ERROR"]
    else:
        assert " INFO mtls_operator.handlers.webhooks: admission refused identity shop/bad" in text
        assert " ERROR " not in text
