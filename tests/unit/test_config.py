"""config.py: settings from MTLS_* variables and CLI overrides, failing fast with one clear line."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from mtls_operator.config import ENV_VARS, Settings, settings_from_env
from mtls_operator.errors import ConfigError
from mtls_operator.rules.policy import AdminPattern


def test_defaults() -> None:
    settings = settings_from_env({})
    assert settings == Settings()
    assert settings == Settings(
        trust_domain="cluster.local",
        cluster_domain="cluster.local",
        namespace="mtls-system",
        ca_secret="mtls-operator-ca",
        default_duration=timedelta(hours=24),
        max_issuance_per_second=50.0,
        allowed_dns_patterns=(),
        metrics_port=9090,
    )
    assert settings.metrics_enabled


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().namespace = "other"  # type: ignore[misc]


def test_other_variables_are_ignored() -> None:
    assert settings_from_env({"MTLS_E2E_KUBECONFIG": "/tmp/k", "PATH": "/bin"}) == Settings()


GOOD_VALUES = [
    pytest.param("MTLS_TRUST_DOMAIN", "prod.example.org", "trust_domain", "prod.example.org", id="trust-domain"),
    pytest.param("MTLS_TRUST_DOMAIN", "my_td-1", "trust_domain", "my_td-1", id="trust-domain-underscore"),
    pytest.param("MTLS_CLUSTER_DOMAIN", "corp.internal", "cluster_domain", "corp.internal", id="cluster-domain"),
    pytest.param("MTLS_CLUSTER_DOMAIN", "k8s", "cluster_domain", "k8s", id="cluster-domain-one-label"),
    pytest.param("MTLS_NAMESPACE", "security", "namespace", "security", id="namespace"),
    pytest.param("MTLS_NAMESPACE", " security ", "namespace", "security", id="namespace-stripped"),
    pytest.param("MTLS_CA_SECRET", "my.ca-secret", "ca_secret", "my.ca-secret", id="ca-secret"),
    pytest.param("MTLS_DEFAULT_DURATION", "12h", "default_duration", timedelta(hours=12), id="duration"),
    pytest.param("MTLS_DEFAULT_DURATION", "1h", "default_duration", timedelta(hours=1), id="duration-minimum"),
    pytest.param("MTLS_DEFAULT_DURATION", "8760h", "default_duration", timedelta(hours=8760), id="duration-max"),
    pytest.param("MTLS_DEFAULT_DURATION", "90m", "default_duration", timedelta(minutes=90), id="duration-minutes"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "5", "max_issuance_per_second", 5.0, id="rate-int"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "0.5", "max_issuance_per_second", 0.5, id="rate-fraction"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "10000", "max_issuance_per_second", 10000.0, id="rate-max"),
    pytest.param(
        "MTLS_ALLOWED_DNS_PATTERNS",
        "*.example.com",
        "allowed_dns_patterns",
        (AdminPattern("*.example.com"),),
        id="one-unscoped-pattern",
    ),
    pytest.param(
        "MTLS_ALLOWED_DNS_PATTERNS",
        " *.Example.com , api.corp.internal,,*.example.com ",
        "allowed_dns_patterns",
        (AdminPattern("*.example.com"), AdminPattern("api.corp.internal")),
        id="patterns-trimmed-lowered-deduplicated",
    ),
    pytest.param(
        "MTLS_ALLOWED_DNS_PATTERNS",
        "shop,payments:*.shop.example.com;web:*.web.example.com",
        "allowed_dns_patterns",
        (
            AdminPattern("*.shop.example.com", frozenset({"shop", "payments"})),
            AdminPattern("*.web.example.com", frozenset({"web"})),
        ),
        id="scoped-patterns",
    ),
    pytest.param("MTLS_ALLOW_SHORT_DNS_NAMES", "false", "allow_short_dns_names", False, id="short-names-off"),
    pytest.param("MTLS_ALLOW_SHORT_DNS_NAMES", "true", "allow_short_dns_names", True, id="short-names-on"),
    pytest.param("MTLS_MAX_DURATION", "720h", "max_duration", timedelta(hours=720), id="max-duration"),
    pytest.param("MTLS_MAX_DURATION", "24h", "max_duration", timedelta(hours=24), id="max-duration-the-default"),
    pytest.param("MTLS_METRICS_PORT", "8080", "metrics_port", 8080, id="port"),
    pytest.param("MTLS_METRICS_PORT", "1", "metrics_port", 1, id="port-min"),
    pytest.param("MTLS_METRICS_PORT", "65535", "metrics_port", 65535, id="port-max"),
    pytest.param("MTLS_METRICS_PORT", "0", "metrics_port", 0, id="port-zero-disables"),
    pytest.param("MTLS_CA_PROPAGATION_DELAY", "30s", "ca_propagation_delay", timedelta(seconds=30), id="delay"),
    pytest.param("MTLS_CA_PROPAGATION_DELAY", "0s", "ca_propagation_delay", timedelta(0), id="delay-zero"),
    pytest.param("MTLS_CA_DURATION", "43800h", "ca_duration", timedelta(hours=43800), id="ca-duration"),
    pytest.param("MTLS_WEBHOOK_PORT", "8443", "webhook_port", 8443, id="webhook-port"),
    pytest.param("MTLS_WEBHOOK_PORT", "0", "webhook_port", 0, id="webhook-port-zero-disables"),
    pytest.param("MTLS_WEBHOOK_SERVICE", "hooks", "webhook_service", "hooks", id="webhook-service"),
    pytest.param("MTLS_WEBHOOK_CONFIGURATION", "my.hooks", "webhook_configuration", "my.hooks", id="webhook-config"),
    pytest.param("MTLS_WEBHOOK_CA_SECRET", "hooks-ca", "webhook_ca_secret", "hooks-ca", id="webhook-ca-secret"),
    pytest.param("MTLS_LEADER_ELECTION", "false", "leader_election", False, id="leader-election-off"),
    pytest.param("MTLS_LEADER_ELECTION", "TRUE", "leader_election", True, id="leader-election-on"),
    pytest.param("MTLS_LEASE_NAME", "mtls-leader", "lease_name", "mtls-leader", id="lease-name"),
    pytest.param("MTLS_LEASE_DURATION", "30s", "lease_duration", timedelta(seconds=30), id="lease-duration"),
    pytest.param("MTLS_POD_NAME", "mtls-operator-7d9f-abcde", "pod_name", "mtls-operator-7d9f-abcde", id="pod"),
    pytest.param("MTLS_HEALTH_PORT", "0", "health_port", 0, id="health-port-zero-disables"),
    pytest.param("MTLS_LOG_FORMAT", "json", "log_format", "json", id="log-format-json"),
    pytest.param("MTLS_LOG_FORMAT", "JSON", "log_format", "json", id="log-format-any-case"),
    pytest.param("MTLS_LOG_FORMAT", "text", "log_format", "text", id="log-format-text"),
    pytest.param("MTLS_POD_CERTIFICATES", "true", "pod_certificates", True, id="pod-certificates"),
    pytest.param("MTLS_POD_CERTIFICATE_SIGNER", "example.com/spiffe.prod", "pod_certificate_signer",
                 "example.com/spiffe.prod", id="pod-certificate-signer"),
]


@pytest.mark.parametrize(("name", "value", "attribute", "expected"), GOOD_VALUES)
def test_good_values(name: str, value: str, attribute: str, expected: Any) -> None:
    settings = settings_from_env({name: value})
    assert getattr(settings, attribute) == expected
    others = {field.name for field in dataclasses.fields(Settings)} - {attribute}
    for other in others:
        assert getattr(settings, other) == getattr(Settings(), other)


BAD_VALUES = [
    pytest.param("MTLS_TRUST_DOMAIN", "Cluster.Local", "lower-case letters", id="trust-domain-upper"),
    pytest.param("MTLS_TRUST_DOMAIN", "spiffe://td", "lower-case letters", id="trust-domain-scheme"),
    pytest.param("MTLS_TRUST_DOMAIN", "td:443", "lower-case letters", id="trust-domain-port"),
    pytest.param("MTLS_TRUST_DOMAIN", "x" * 256, "at most 255", id="trust-domain-long"),
    pytest.param("MTLS_CLUSTER_DOMAIN", "Cluster.Local", "lower-case DNS name", id="cluster-domain-upper"),
    pytest.param("MTLS_CLUSTER_DOMAIN", "cluster.local.", "trailing dot", id="cluster-domain-trailing-dot"),
    pytest.param("MTLS_CLUSTER_DOMAIN", "*.local", "without wildcards", id="cluster-domain-wildcard"),
    pytest.param("MTLS_CLUSTER_DOMAIN", "a..b", "empty label", id="cluster-domain-empty-label"),
    pytest.param("MTLS_NAMESPACE", "Security", "namespace name", id="namespace-upper"),
    pytest.param("MTLS_NAMESPACE", "a.b", "namespace name", id="namespace-dotted"),
    pytest.param("MTLS_NAMESPACE", "x" * 64, "at most 63", id="namespace-long"),
    pytest.param("MTLS_CA_SECRET", "CA", "object name", id="ca-secret-upper"),
    pytest.param("MTLS_CA_SECRET", "ca_secret", "object name", id="ca-secret-underscore"),
    pytest.param("MTLS_DEFAULT_DURATION", "1d", "no days", id="duration-days"),
    pytest.param("MTLS_DEFAULT_DURATION", "24", "invalid duration", id="duration-no-unit"),
    pytest.param("MTLS_DEFAULT_DURATION", "-1h", "invalid duration", id="duration-negative"),
    pytest.param("MTLS_DEFAULT_DURATION", "30m", "between 1h and 8760h", id="duration-short"),
    pytest.param("MTLS_DEFAULT_DURATION", "0h", "between 1h and 8760h", id="duration-zero"),
    pytest.param("MTLS_DEFAULT_DURATION", "8761h", "between 1h and 8760h", id="duration-long"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "fast", "must be a number", id="rate-text"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "0", "greater than 0", id="rate-zero"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "-1", "greater than 0", id="rate-negative"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "10001", "at most 10000", id="rate-high"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "inf", "at most 10000", id="rate-inf"),
    pytest.param("MTLS_MAX_ISSUANCE_PER_SECOND", "nan", "greater than 0", id="rate-nan"),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "*.example.com,api-*.corp", "'*' must be a whole label", id="partial"),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "*", "at least one literal label", id="pattern-star"),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "example.com.", "must not end with a dot", id="pattern-dot"),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "a_b.com", "pattern 'a_b.com'", id="pattern-underscore"),
    pytest.param(
        "MTLS_ALLOWED_DNS_PATTERNS", "*.*.svc", "(for every namespace): it could match in-cluster names", id="svc"
    ),
    pytest.param(
        "MTLS_ALLOWED_DNS_PATTERNS", "shop:*.*.svc.cluster.local", "in-cluster names", id="scoped-in-cluster"
    ),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "*.corp", "scope it to that namespace only", id="unscoped-short"),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "shop:*.com", "'com' is a public suffix", id="public-suffix"),
    pytest.param("MTLS_ALLOWED_DNS_PATTERNS", "Shop:*.example.com", "not a namespace name", id="bad-namespace"),
    pytest.param("MTLS_ALLOW_SHORT_DNS_NAMES", "sometimes", "true or false", id="short-names-text"),
    pytest.param("MTLS_MAX_DURATION", "30m", "between 1h and 8760h", id="max-duration-short"),
    pytest.param("MTLS_MAX_DURATION", "1y", "invalid duration", id="max-duration-text"),
    pytest.param("MTLS_METRICS_PORT", "http", "TCP port 1..65535, or 0 to disable", id="port-text"),
    pytest.param("MTLS_METRICS_PORT", "65536", "TCP port", id="port-high"),
    pytest.param("MTLS_METRICS_PORT", "-1", "TCP port", id="port-negative"),
    pytest.param("MTLS_METRICS_PORT", "90_90", "TCP port", id="port-underscore"),
    pytest.param("MTLS_METRICS_PORT", "9090.0", "TCP port", id="port-float"),
    pytest.param("MTLS_METRICS_PORT", "1" * 100, "TCP port", id="port-huge"),
    pytest.param("MTLS_CA_PROPAGATION_DELAY", "25h", "between 0s and 24h", id="delay-long"),
    pytest.param("MTLS_CA_PROPAGATION_DELAY", "2", "invalid duration", id="delay-no-unit"),
    pytest.param("MTLS_CA_DURATION", "30m", "between 1h and 87600h", id="ca-duration-short"),
    pytest.param("MTLS_WEBHOOK_PORT", "https", "or 0 to disable the admission webhooks", id="webhook-port-text"),
    pytest.param("MTLS_WEBHOOK_SERVICE", "my.service", "Service name", id="webhook-service-dotted"),
    pytest.param("MTLS_WEBHOOK_SERVICE", "1hooks", "starting with a letter", id="webhook-service-digit"),
    pytest.param("MTLS_WEBHOOK_CONFIGURATION", "Hooks", "object name", id="webhook-config-upper"),
    pytest.param("MTLS_WEBHOOK_CA_SECRET", "hooks_ca", "object name", id="webhook-ca-secret-underscore"),
    pytest.param("MTLS_LEADER_ELECTION", "maybe", "true or false", id="leader-election-text"),
    pytest.param("MTLS_LEASE_NAME", "lease_1", "object name", id="lease-name-underscore"),
    pytest.param("MTLS_LEASE_DURATION", "1s", "between 2s and 10m", id="lease-duration-short"),
    pytest.param("MTLS_POD_NAME", "Pod!", "downward API", id="pod-name-bad"),
    pytest.param("MTLS_HEALTH_PORT", "70000", "or 0 to disable the health endpoint", id="health-port-high"),
    pytest.param("MTLS_LOG_FORMAT", "logfmt", "must be one of text, json", id="log-format-unknown"),
    pytest.param("MTLS_POD_CERTIFICATES", "on", "must be true or false", id="pod-certificates-not-boolean"),
    pytest.param("MTLS_POD_CERTIFICATE_SIGNER", "spiffe", "<domain>/<name>", id="signer-without-domain"),
    pytest.param("MTLS_POD_CERTIFICATE_SIGNER", "localhost/spiffe", "<domain>/<name>", id="signer-single-label"),
    pytest.param("MTLS_POD_CERTIFICATE_SIGNER", "mtls.dev/a/b", "<domain>/<name>", id="signer-two-slashes"),
]


@pytest.mark.parametrize(("name", "value", "phrase"), BAD_VALUES)
def test_bad_values_fail_with_one_clear_line(name: str, value: str, phrase: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is invalid: ")
    assert phrase in message
    assert "\n" not in message


def test_a_value_with_a_newline_stays_on_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"MTLS_NAMESPACE": "a\nb"})
    assert "\n" not in str(caught.value)
    assert "'a\\nb'" in str(caught.value)


@pytest.mark.parametrize("name", ENV_VARS)
@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_empty_values_mean_the_default(name: str, value: str) -> None:
    assert settings_from_env({name: value}) == Settings()


def test_overrides_win_over_the_environment() -> None:
    env = {"MTLS_NAMESPACE": "from-env", "MTLS_METRICS_PORT": "8080", "MTLS_TRUST_DOMAIN": "env.td"}
    settings = settings_from_env(env, {"MTLS_NAMESPACE": "from-flag", "MTLS_METRICS_PORT": None})
    assert settings.namespace == "from-flag"
    assert settings.metrics_port == 8080
    assert settings.trust_domain == "env.td"


def test_an_empty_override_means_the_default() -> None:
    settings = settings_from_env({"MTLS_ALLOWED_DNS_PATTERNS": "*.example.com"}, {"MTLS_ALLOWED_DNS_PATTERNS": ""})
    assert settings.allowed_dns_patterns == ()


def test_patterns_are_checked_against_the_cluster_domain_in_use() -> None:
    env = {"MTLS_ALLOWED_DNS_PATTERNS": "*.corp.internal"}
    assert settings_from_env(env).allowed_dns_patterns == (AdminPattern("*.corp.internal"),)
    with pytest.raises(ConfigError, match=r"^MTLS_ALLOWED_DNS_PATTERNS='\*\.corp\.internal' is invalid: .*in-cluster"):
        settings_from_env({**env, "MTLS_CLUSTER_DOMAIN": "corp.internal"})


def test_the_default_duration_must_be_within_the_maximum() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"MTLS_MAX_DURATION": "12h"})
    assert str(caught.value) == (
        "MTLS_MAX_DURATION='12h' is invalid: it is shorter than MTLS_DEFAULT_DURATION (24h); "
        "the default must be within the maximum"
    )
    assert settings_from_env({"MTLS_MAX_DURATION": "12h", "MTLS_DEFAULT_DURATION": "12h"}).max_duration == (
        timedelta(hours=12)
    )


def test_a_bad_override_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^MTLS_DEFAULT_DURATION='1d' is invalid: "):
        settings_from_env({"MTLS_DEFAULT_DURATION": "12h"}, {"MTLS_DEFAULT_DURATION": "1d"})


def test_a_bad_environment_value_hidden_by_an_override_is_not_read() -> None:
    settings = settings_from_env({"MTLS_METRICS_PORT": "http"}, {"MTLS_METRICS_PORT": "9100"})
    assert settings.metrics_port == 9100


def test_unknown_overrides_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*MTLS_TRUST_DOMIAN"):
        settings_from_env({}, {"MTLS_TRUST_DOMIAN": "x"})


def test_the_webhook_ca_secret_must_not_be_the_pod_ca_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"MTLS_CA_SECRET": "one-ca", "MTLS_WEBHOOK_CA_SECRET": "one-ca"})
    assert str(caught.value) == (
        "MTLS_WEBHOOK_CA_SECRET='one-ca' is invalid: it must differ from MTLS_CA_SECRET, the CA that signs pod "
        "certificates"
    )
    with pytest.raises(ConfigError, match="must differ from MTLS_CA_SECRET"):
        settings_from_env({"MTLS_WEBHOOK_CA_SECRET": "mtls-operator-ca"})


def test_port_zero_disables_metrics() -> None:
    assert not settings_from_env({"MTLS_METRICS_PORT": "0"}).metrics_enabled


def test_all_variables_together() -> None:
    settings = settings_from_env(
        {
            "MTLS_TRUST_DOMAIN": "prod.example.org",
            "MTLS_CLUSTER_DOMAIN": "corp.internal",
            "MTLS_NAMESPACE": "security",
            "MTLS_CA_SECRET": "root-ca",
            "MTLS_DEFAULT_DURATION": "48h",
            "MTLS_MAX_ISSUANCE_PER_SECOND": "20",
            "MTLS_ALLOWED_DNS_PATTERNS": "*.example.com",
            "MTLS_ALLOW_SHORT_DNS_NAMES": "false",
            "MTLS_MAX_DURATION": "720h",
            "MTLS_METRICS_PORT": "9100",
        }
    )
    assert settings == Settings(
        trust_domain="prod.example.org",
        cluster_domain="corp.internal",
        namespace="security",
        ca_secret="root-ca",
        default_duration=timedelta(hours=48),
        max_issuance_per_second=20.0,
        allowed_dns_patterns=(AdminPattern("*.example.com"),),
        allow_short_dns_names=False,
        max_duration=timedelta(hours=720),
        metrics_port=9100,
    )


@pytest.mark.parametrize(("value", "expected"), [
    ("mtls.dev/shard=a", "mtls.dev/shard=a"),
    ("mtls.dev/shard==a", "mtls.dev/shard==a"),
    ("mtls.dev/shard notin (a, b),!legacy", "mtls.dev/shard notin (a, b),!legacy"),
    (" tier in (x) , team!=y ", "tier in (x),team!=y"),
    ("has-label", "has-label"),
])
def test_shard_namespace_selector_is_a_label_selector(value: str, expected: str) -> None:
    settings = settings_from_env({"MTLS_SHARD_NAMESPACE_SELECTOR": value})
    assert settings.shard_namespace_selector == expected
    assert settings.sharded


@pytest.mark.parametrize(("value", "phrase"), [
    ("a=b=c", "is not a label selector requirement"),
    ("a in b", "is not a label selector requirement"),
    ("!a=b", "is not a label selector requirement"),
    ("a=b,,c=d", "is not a label selector requirement"),
    ("Bad/x=1", "prefix 'Bad'"),
    ("x=-bad-", "a label value must be"),
    ("tier in (ok, -bad)", "a label value must be"),
])
def test_bad_shard_namespace_selectors_are_refused(value: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match="MTLS_SHARD_NAMESPACE_SELECTOR") as caught:
        settings_from_env({"MTLS_SHARD_NAMESPACE_SELECTOR": value})
    assert phrase in str(caught.value)


def test_unsharded_by_default_and_ca_rotation_on() -> None:
    settings = settings_from_env({})
    assert not settings.sharded
    assert settings.ca_rotation
    assert not settings_from_env({"MTLS_CA_ROTATION": "false"}).ca_rotation
