"""Opt-in end-to-end suite against a real cluster: set MTLS_E2E_KUBECONFIG to run it.

The cluster needs the CRD (``kubectl apply -f crds/``) and a namespace the kubeconfig may write
to; the operator runs in-process with that kubeconfig. Everything it creates is deleted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.demo.handshake import TLSFiles, mutual_tls_handshake
from mtls_operator.errors import NotFoundError
from mtls_operator.k8s import KubeAPI, core_path, group_path
from mtls_operator.k8s.config import load_configuration
from mtls_operator.main import run_operator
from mtls_operator.rules.plan import secret_data

KUBECONFIG = os.environ.get("MTLS_E2E_KUBECONFIG")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not KUBECONFIG, reason="set MTLS_E2E_KUBECONFIG to run against a real cluster"),
]


@pytest.fixture
async def namespace() -> AsyncIterator[tuple[KubeAPI, str]]:
    api = KubeAPI.from_configuration(load_configuration(KUBECONFIG))
    name = f"mtls-e2e-{uuid.uuid4().hex[:8]}"
    await api.request("POST", core_path("namespaces"), body={"metadata": {"name": name}})
    try:
        yield api, name
    finally:
        with contextlib.suppress(NotFoundError):
            await api.request("DELETE", core_path("namespaces", None, name))
        api.close()


def _pod(name: str, namespace: str, app: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
    }


async def test_real_cluster_issues_and_handshakes(namespace: tuple[KubeAPI, str]) -> None:
    api, ns = namespace
    for app in ("server", "client"):
        await api.request("POST", group_path(c.GROUP, c.VERSION, c.PLURAL, ns), body={
            "apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": c.KIND,
            "metadata": {"name": app, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": app}}, "dnsNames": [app]},
        })
        await api.request("POST", core_path("pods", ns), body=_pod(f"{app}-0", ns, app))
    stop = asyncio.Event()
    settings = Settings(namespace=ns, metrics_port=0, webhook_port=0, health_port=0, leader_election=False)
    task = asyncio.create_task(run_operator(settings, load_configuration(KUBECONFIG), stop_flag=stop))
    try:
        deadline = time.monotonic() + 120
        secrets: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(secrets) < 2:
            listing = await api.request("GET", core_path("secrets", ns),
                                        query={"labelSelector": f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"})
            secrets = {s["metadata"]["name"]: s for s in listing.get("items", []) if c.IDENTITY_LABEL in
                       s["metadata"].get("labels", {})}
            await asyncio.sleep(1)
        assert set(secrets) == {"server-server-0", "client-client-0"}

        def files(secret: dict[str, Any]) -> TLSFiles:
            return TLSFiles(secret_data(secret, c.TLS_CRT) or b"", secret_data(secret, c.TLS_KEY) or b"",
                            secret_data(secret, c.CA_CRT) or b"")

        result = mutual_tls_handshake(files(secrets["server-server-0"]), files(secrets["client-client-0"]),
                                      server_hostname="server")
        assert result.ok, result.error
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
