"""Every MTLS_* setting is wired from a value, and the operator accepts what the chart renders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mtls_operator.config import ENV_POD_NAME, ENV_VARS, Settings, settings_from_env
from mtls_operator.constants import DEFAULT_CA_SECRET
from mtls_operator.rules.policy import AdminPattern
from tests.chart.conftest import EVERY_SETTING_CHANGED, MATRIX, NAMESPACE, RELEASE, Rendered

DOWNWARD_POD_NAME = {"fieldRef": {"fieldPath": "metadata.name"}}


def _settings(rendered: Rendered) -> Settings:
    """What `mtls-operator run` would read in the rendered pod (the kubelet fills in the pod name)."""
    env: dict[str, Any] = dict(rendered.env)
    assert env.pop(ENV_POD_NAME) == DOWNWARD_POD_NAME
    assert all(isinstance(value, str) for value in env.values())
    return settings_from_env({**env, ENV_POD_NAME: f"{RELEASE}-7d9f8b6c5-x2x4q"})


@pytest.mark.parametrize("name", MATRIX)
def test_every_setting_is_set_and_accepted(rendered: dict[str, Rendered], name: str) -> None:
    env = rendered[name].env
    assert sorted(env) == sorted(ENV_VARS)
    _settings(rendered[name])  # raises ConfigError, naming the variable, when the operator would refuse it


def test_defaults_are_the_operators(rendered: dict[str, Rendered]) -> None:
    settings = _settings(rendered["defaults"])
    defaults = Settings()
    assert settings == Settings(
        **{**defaults.__dict__, "namespace": NAMESPACE, "pod_name": settings.pod_name,
           "webhook_service": f"{RELEASE}-webhook", "webhook_configuration": RELEASE, "lease_name": RELEASE}
    )
    assert settings.ca_secret == DEFAULT_CA_SECRET


def test_every_value_reaches_its_setting(rendered: dict[str, Rendered]) -> None:
    """Non-default values for every setting: each arrives in the operator's Settings."""
    values = EVERY_SETTING_CHANGED
    settings = _settings(rendered["every-setting"])
    assert settings == Settings(
        trust_domain=values["trustDomain"],
        cluster_domain=values["clusterDomain"],
        namespace=NAMESPACE,
        ca_secret=values["ca"]["existingSecret"],
        default_duration=timedelta(hours=12),
        max_issuance_per_second=7.5,
        allowed_dns_patterns=(
            AdminPattern("api.example.com"),
            AdminPattern("*.shop.example.com", frozenset({"shop", "payments"})),
            AdminPattern("shop.example.org", frozenset({"shop", "payments"})),
            AdminPattern("*.web.example.com", frozenset({"web"})),
        ),
        allow_short_dns_names=False,
        max_duration=timedelta(hours=720),
        metrics_port=9191,
        ca_propagation_delay=timedelta(minutes=5),
        ca_duration=timedelta(hours=4380),
        webhook_port=10443,
        webhook_service=f"{RELEASE}-webhook",
        webhook_configuration=RELEASE,
        webhook_ca_secret=values["webhook"]["caSecret"],
        leader_election=True,
        lease_name="mtls-leader",
        lease_duration=timedelta(seconds=30),
        pod_name=settings.pod_name,
        health_port=8081,
        log_format="json",
        pod_certificates=True,
        pod_certificate_signer="example.com/spiffe.prod",
    )
    # The Settings comparison covers every field, so a new setting fails here until it is wired.
    assert len(Settings.__dataclass_fields__) == len(ENV_VARS)


@pytest.mark.parametrize(
    ("name", "variable", "value"),
    [
        ("metrics-off", "MTLS_METRICS_PORT", "0"),
        ("webhook-off", "MTLS_WEBHOOK_PORT", "0"),
        ("one-replica", "MTLS_LEADER_ELECTION", "false"),
        ("existing-ca", "MTLS_CA_SECRET", "corp-intermediate-ca"),
        ("every-setting", "MTLS_ALLOWED_DNS_PATTERNS",
         "api.example.com;shop,payments:*.shop.example.com,shop.example.org;web:*.web.example.com"),
        ("defaults", "MTLS_ALLOWED_DNS_PATTERNS", ""),
        ("defaults", "MTLS_ALLOW_SHORT_DNS_NAMES", "true"),
        ("defaults", "MTLS_MAX_DURATION", "8760h"),
        ("defaults", "MTLS_WEBHOOK_CA_SECRET", "mtls-operator-webhook-ca"),
    ],
)
def test_switches(rendered: dict[str, Rendered], name: str, variable: str, value: str) -> None:
    assert rendered[name].env[variable] == value
