"""DNS names a tenant asks for: nothing that resolves outside its namespace, whatever it or the admin writes."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from kube_emulator import EmulatorThread
from mtls_operator import constants as c
from mtls_operator.config import settings_from_env
from mtls_operator.errors import ConfigError
from mtls_operator.rules.plan import secret_data
from mtls_operator.rules.policy import AdminPattern

from .conftest import parts

API = f"{c.GROUP}/{c.VERSION}"


def _identity(namespace: str, dns_names: list[str]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "dnsNames": dns_names}}


def _pod(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": namespace,
                         "labels": {"app": "web", c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running"}}


def _issued_names(threaded: EmulatorThread, namespace: str) -> list[str]:
    secret = threaded.emulator.get("v1", "secrets", "web-web-0", namespace)
    assert secret is not None, "no certificate was issued"
    leaf = x509.load_pem_x509_certificate(secret_data(secret, c.TLS_CRT) or b"")
    return list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                .get_values_for_type(x509.DNSName))


def _ready(threaded: EmulatorThread, namespace: str) -> dict[str, Any]:
    status = threaded.emulator.get(API, c.PLURAL, "web", namespace)["status"]
    return next(cond for cond in status["conditions"] if cond["type"] == "Ready")


async def test_a_namespace_named_like_a_top_level_domain_gets_no_public_name(threaded_server: EmulatorThread) -> None:
    threaded_server.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}})
    threaded_server.emulator.create(_identity("dev", ["google.dev", "*.dev", "dev", "localhost", "web.dev.svc"]))
    threaded_server.emulator.create(_pod("dev"))
    async with parts(threaded_server) as bench:
        await bench.reconciler.reconcile(("dev", "web"))
    assert _issued_names(threaded_server, "dev") == ["web.dev.svc"]
    ready = _ready(threaded_server, "dev")
    assert ready["reason"] == "PolicyViolation"
    assert "'google.dev'" in ready["message"]
    assert "'localhost' is a special-use domain name" in ready["message"]


async def test_an_admin_wildcard_over_svc_never_reaches_another_namespace(threaded_server: EmulatorThread) -> None:
    # The admin's setting is refused at start-up with one line...
    with pytest.raises(ConfigError, match=r"^MTLS_ALLOWED_DNS_PATTERNS='\*\.\*\.svc' is invalid: .*in-cluster"):
        settings_from_env({"MTLS_ALLOWED_DNS_PATTERNS": "*.*.svc"})
    # ...and even a pattern that got past it grants no other namespace's Service, the webhook's least of all.
    threaded_server.emulator.create(_identity("attacker", [
        "mtls-operator-webhook.mtls-system.svc", "web.shop.svc.cluster.local", "web.attacker.svc"]))
    threaded_server.emulator.create(_pod("attacker"))
    async with parts(threaded_server, allowed_dns_patterns=(AdminPattern("*.*.svc"),
                                                             AdminPattern("*.*.svc.cluster.local"))) as bench:
        await bench.reconciler.reconcile(("attacker", "web"))
    assert _issued_names(threaded_server, "attacker") == ["web.attacker.svc"]


async def test_a_tightened_policy_revokes_the_names_it_no_longer_allows(threaded_server: EmulatorThread) -> None:
    threaded_server.emulator.create(_identity("attacker", ["web.attacker.svc", "login.example.com"]))
    threaded_server.emulator.create(_pod("attacker"))
    granted = settings_from_env({"MTLS_ALLOWED_DNS_PATTERNS": "attacker:*.example.com"}).allowed_dns_patterns
    async with parts(threaded_server, allowed_dns_patterns=granted) as bench:
        await bench.reconciler.reconcile(("attacker", "web"))
    assert _issued_names(threaded_server, "attacker") == ["web.attacker.svc", "login.example.com"]
    # The admin takes the grant back: the next pass re-issues without it, it does not wait for expiry.
    async with parts(threaded_server) as bench:
        await bench.reconciler.reconcile(("attacker", "web"))
    assert _issued_names(threaded_server, "attacker") == ["web.attacker.svc"]
    assert _ready(threaded_server, "attacker")["reason"] == "PolicyViolation"
