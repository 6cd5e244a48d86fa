"""One tenant stalls nobody (issue 10, item 4): the real operator while a tenant stuffs its own Secrets.

A tenant writes 400 KB of ``-----BEGIN CERTIFICATE-----`` lines into one of its managed Secrets and
1 MB of garbage into another. Parsed on the event loop with the old quadratic regex, the first froze
the operator for minutes (bench/parsing_bench.py), and the fail-closed webhook refused every pod
meanwhile. Here, while both are read and repaired, a pod in another namespace is admitted by the
webhook (within the webhook's own timeoutSeconds, which the emulator enforces as kube-apiserver does)
and gets its Secret, the health endpoint answers within the chart's probe timeout, and the leader
keeps renewing its Lease.
"""

from __future__ import annotations

import base64
import logging
import os
from typing import Any

import aiohttp
import pytest

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.pki import parse_pem_certificates
from mtls_operator.rules.election import LeaseRecord
from mtls_operator.rules.plan import secret_data

from .conftest import (
    OPERATOR_NS,
    FakeClock,
    OperatorHandle,
    eventually,
    identity,
    managed_secrets,
    operator_settings,
    pod,
)
from .test_webhooks import PODS, Http, ca_bundles, free_port, generated_pod, register_webhooks, volume_secret

TENANT = "tenant"
# The chart's livenessProbe timeoutSeconds: past it, the kubelet counts a failure.
PROBE_TIMEOUT = 5.0
BEGIN_LINE = b"-----BEGIN CERTIFICATE-----\n"


def tenant_secrets(emulator: Emulator) -> dict[str, dict[str, Any]]:
    selector = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME},{c.IDENTITY_LABEL}=web"
    return {s["metadata"]["name"]: s for s in emulator.list("v1", "secrets", TENANT, label_selector=selector)}


def serial(secret: dict[str, Any]) -> str:
    return str(secret["metadata"]["annotations"][c.SERIAL_ANNOTATION])


@pytest.fixture
async def http(server: EmulatorServer) -> Any:
    async with aiohttp.ClientSession() as session:
        yield Http(session, server.url)


async def test_a_tenant_stuffing_its_secrets_stalls_no_one(
    server: EmulatorServer, emulator: Emulator, clock: FakeClock, http: Http, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TENANT}})
    webhook_port, health_port = free_port(), free_port()
    register_webhooks(emulator, webhook_port)
    handle = OperatorHandle(server, clock, operator_settings(webhook_port=webhook_port, health_port=health_port,
                                                             leader_election=True, pod_name="operator-0"))
    await handle.start()
    try:
        await eventually(lambda: all(ca_bundles(emulator)), within=20, what="caBundle in both configurations")
        web = identity("web")
        web["metadata"]["namespace"] = TENANT
        emulator.create(web)
        for name in ("web-0", "web-1"):
            body = pod(name, "web")
            body["metadata"]["namespace"] = TENANT
            emulator.create(body)
        emulator.create(identity("payments"))
        issued = await eventually(lambda: len(tenant_secrets(emulator)) == 2 and tenant_secrets(emulator),
                                  within=20, what="the tenant's two Secrets")
        lease_before = LeaseRecord.from_lease(emulator.get("coordination.k8s.io/v1", "leases", "mtls-operator",
                                                           OPERATOR_NS))
        assert lease_before is not None

        # The tenant writes into its own Secrets: 400 KB of BEGIN lines, and 1 MB of garbage.
        stuffed = BEGIN_LINE * (400_000 // len(BEGIN_LINE))
        garbage = os.urandom(1_000_000)
        for name, value in (("web-web-0", stuffed), ("web-web-1", garbage)):
            emulator.patch("v1", "secrets", name, TENANT, {"data": {c.TLS_CRT: base64.b64encode(value).decode()}})

        # Meanwhile: a pod elsewhere is admitted by the fail-closed webhook, and health answers.
        status, admitted = await http.request("POST", PODS, generated_pod())
        assert status == 201, admitted
        secret_name = volume_secret(admitted)
        assert secret_name is not None
        probe = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT))
        async with probe, probe.get(f"http://127.0.0.1:{health_port}/healthz") as response:
            assert response.status == 200
        await eventually(lambda: secret_name in managed_secrets(emulator, "payments"), within=20,
                         what="the admitted pod's Secret")

        # Both stuffed Secrets are repaired: a fresh certificate that parses.
        def repaired() -> dict[str, dict[str, Any]] | None:
            now = tenant_secrets(emulator)
            fresh = all(serial(now[name]) != serial(issued[name]) for name in issued)
            return now if fresh else None

        healed = await eventually(repaired, within=30, what="both stuffed Secrets repaired")
        for secret in healed.values():
            assert parse_pem_certificates(secret_data(secret, c.TLS_CRT) or b"")
        await eventually(lambda: any("repair: " in e["message"] for e in emulator.list("v1", "events", TENANT)),
                         what="a repair Event")

        # The leader kept its Lease all along: renewed since, never lost.
        elector = handle.runtime.elector
        assert elector is not None
        assert elector.leading
        lease_after = await eventually(
            lambda: (record := LeaseRecord.from_lease(emulator.get("coordination.k8s.io/v1", "leases",
                                                                   "mtls-operator", OPERATOR_NS)))
            and record.renew_time != lease_before.renew_time and record,
            what="a Lease renewal")
        assert lease_after.holder == lease_before.holder
        assert lease_after.transitions == lease_before.transitions
        assert not [r.getMessage() for r in caplog.records if "stopped leading" in r.getMessage()]
    finally:
        await handle.stop()
