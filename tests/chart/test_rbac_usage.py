"""The chart's RBAC against what the real operator does: every request it makes is granted, and
every granted verb is one it makes.

The operator runs on the emulator with the settings the chart renders (webhooks and leader election
on) and the chart's own webhook configurations installed, through a scenario that reaches every
path: CA bootstrap, identity create/update/delete, issuance for pods (one admitted through the
mutating webhook, an identity through the validating one), the trust bundle repaired, a managed
Secret deleted behind its back, a refused spec (a Warning Event), the Lease taken, renewed and
released. The emulator logs every request with its group, subresource and namespace, as the RBAC
authorizer sees them; the test's own writes are made in-process (not logged), except the two
HTTP creates that must pass the webhooks, which name themselves (User-Agent) and are left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from kube_emulator import EmulatorServer, RequestLog
from mtls_operator import constants as c
from mtls_operator.config import ENV_POD_NAME, Settings, settings_from_env
from mtls_operator.demo.run import project_crds
from tests.chart.conftest import NAMESPACE, RELEASE, Rendered
from tests.chart.rbac import Request, grants, permits
from tests.integration.conftest import API, NS, FakeClock, OperatorHandle, eventually, identity, managed_secrets, pod

WEBHOOK_SERVICE_PORT = 443
# The User-Agent of the test's own HTTP requests, which are not the operator's.
TEST_CLIENT = "mtls-operator-rbac-test"


class AuthorizedRequestLog(RequestLog):
    """The emulator's request log, also keeping every request as the RBAC authorizer sees it."""

    def __init__(self) -> None:
        super().__init__()
        self._seen_lock = threading.Lock()
        self.seen: list[Request] = []

    def record(
        self,
        verb: str,
        group: str,
        resource: str,
        subresource: str | None,
        namespace: str | None,
        name: str | None,
        status: int,
        *,
        user_agent: str | None = None,
    ) -> None:
        super().record(verb, group, resource, subresource, namespace, name, status, user_agent=user_agent)
        if user_agent == TEST_CLIENT:
            return
        full = f"{resource}/{subresource}" if subresource else resource
        with self._seen_lock:
            self.seen.append(Request(group, full, verb, namespace, name))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _chart_settings(rendered: Rendered, webhook_port: int) -> Settings:
    """The operator's settings as the chart renders them, on ports free on this machine."""
    env = {name: value for name, value in rendered.env.items() if isinstance(value, str)}
    settings = settings_from_env({**env, ENV_POD_NAME: f"{RELEASE}-0"})
    assert settings.webhooks_enabled
    assert settings.leader_election
    # Shorter than the chart's 15s so that the Lease is renewed within the test; metrics and the
    # health endpoint make no API requests.
    return dataclasses.replace(settings, webhook_port=webhook_port, lease_duration=timedelta(seconds=2),
                               metrics_port=0, health_port=0)


@pytest.fixture
async def chart_server(rendered: dict[str, Rendered]) -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(crds=project_crds()) as server:
        server.emulator.requests = AuthorizedRequestLog()
        for namespace in (NAMESPACE, NS):
            server.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        yield server


async def _http_create(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, json=body) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 201, answer
        return answer


async def test_rbac_grants_exactly_what_the_operator_uses(
    chart_server: EmulatorServer, rendered: dict[str, Rendered]
) -> None:
    chart = rendered["defaults"]
    emulator = chart_server.emulator
    log = emulator.requests
    assert isinstance(log, AuthorizedRequestLog)
    settings = _chart_settings(chart, _free_port())
    for configuration in chart.all("MutatingWebhookConfiguration") + chart.all("ValidatingWebhookConfiguration"):
        emulator.create(configuration)
    # No cluster network: the chart's webhook Service leads to this operator's admission server.
    emulator.route_service(NAMESPACE, settings.webhook_service, WEBHOOK_SERVICE_PORT,
                           f"127.0.0.1:{settings.webhook_port}")

    operator = OperatorHandle(chart_server, FakeClock(), settings)
    await operator.start()
    try:
        await _scenario(chart_server, operator)
    finally:
        await operator.stop()  # the leader releases the Lease: an update

    used = set(log.seen)
    granted = grants(chart, chart.one("ServiceAccount")["metadata"]["name"], NAMESPACE)

    refused = sorted({r for r in used if not any(permits(grant, r) for grant in granted)}, key=str)
    assert refused == [], f"the operator made requests its RBAC does not grant: {refused}"
    unused = sorted((g for g in granted if not any(permits(g, r) for r in used)), key=str)
    assert unused == [], f"granted but never used by the operator (least privilege): {unused}"


async def _scenario(server: EmulatorServer, operator: OperatorHandle) -> None:
    emulator = server.emulator
    settings = operator.settings

    def ca_bundles_set() -> bool:
        configs = [emulator.get("admissionregistration.k8s.io/v1", kind, settings.webhook_configuration)
                   for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")]
        return all(config and all(hook["clientConfig"].get("caBundle") for hook in config["webhooks"])
                   for config in configs)

    await eventually(ca_bundles_set, within=20, what="the leader to set both webhook configurations' caBundle")

    async with aiohttp.ClientSession(headers={"User-Agent": TEST_CLIENT}) as session:
        # Through the validating webhook (the chart's configuration, the operator's server).
        await _http_create(session, f"{server.url}/apis/{API}/namespaces/{NS}/{c.PLURAL}",
                           identity("payments", dnsNames=["payments", "payments.shop.svc"]))
        emulator.create(pod("payments-0", "payments"))
        await eventually(lambda: "payments-payments-0" in managed_secrets(emulator), within=20, what="first Secret")
        # Through the mutating webhook: a generated name, the Secret name injected.
        admitted = await _http_create(session, f"{server.url}/api/v1/namespaces/{NS}/pods",
                                      {**pod("unused", "payments"), "metadata": {
                                          "generateName": "payments-", "namespace": NS,
                                          "labels": {"app": "payments", c.INJECT_LABEL: c.INJECT_VALUE}}})
    injected = admitted["metadata"]["annotations"][c.SECRET_NAME_ANNOTATION]
    await eventually(lambda: injected in managed_secrets(emulator), within=20, what="the injected Secret")

    # A spec change re-issues (Secret patches).
    before = managed_secrets(emulator)["payments-payments-0"]["metadata"]["annotations"][c.SERIAL_ANNOTATION]
    emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": ["payments"]}})
    await eventually(
        lambda: managed_secrets(emulator)["payments-payments-0"]["metadata"]["annotations"][c.SERIAL_ANNOTATION]
        != before, within=20, what="re-issue on a spec change")

    # The trust bundle edited by hand is put back (a ConfigMap patch).
    emulator.patch("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS, {"data": {c.CA_CRT: "edited"}})
    operator.poke()
    await eventually(
        lambda: (emulator.get("v1", "configmaps", c.TRUST_BUNDLE_CONFIGMAP, NS) or {})["data"][c.CA_CRT] != "edited",
        within=20, what="the trust bundle repaired")

    # A managed Secret deleted behind the operator's back is re-issued (the Secret watch).
    emulator.delete("v1", "secrets", "payments-payments-0", NS)
    await eventually(lambda: "payments-payments-0" in managed_secrets(emulator), within=20, what="the repair")

    # A spec the operator refuses: a Warning Event (core/v1 Events; created in-process, so the
    # validating webhook does not stop it first).
    emulator.create(identity("foreign", dnsNames=["db.other-namespace.svc"]))
    await eventually(lambda: any(event["reason"] == "PolicyViolation" for event in emulator.list("v1", "events", NS)),
                     within=20, what="the PolicyViolation Event")

    # Deleting the identity deletes its Secrets (the finalizer, then the Secret deletes).
    emulator.delete(API, c.PLURAL, "payments", NS)
    await eventually(lambda: emulator.get(API, c.PLURAL, "payments", NS) is None and not managed_secrets(
        emulator, "payments"), within=20, what="the identity and its Secrets gone")

    # Long enough for the leader to renew its Lease at least once.
    await asyncio.sleep(settings.lease_duration.total_seconds())
