"""The Prometheus series (DESIGN.md, "Metrics"): names, labels, values, and what is removed when."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mtls_operator.errors import ConfigError
from mtls_operator.observability.metrics import IssuanceError, Metrics
from mtls_operator.rules.renewal import ReissueReason

NOT_AFTER = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
RENEW_AT = datetime(2026, 11, 28, 4, 0, 0, tzinfo=UTC)
CA_NOT_AFTER = datetime(2027, 11, 27, tzinfo=UTC)

# The contract: every series and its label names (the rotation phase comes with CA rotation).
SERIES = {
    "mtls_certificate_expiration_timestamp_seconds": {"namespace", "identity"},
    "mtls_certificate_renewal_timestamp_seconds": {"namespace", "identity"},
    "mtls_identity_pods": {"namespace", "identity", "state"},
    "mtls_certificates_issued_total": {"reason"},
    "mtls_issuance_errors_total": {"reason"},
    "mtls_issuance_duration_seconds_bucket": {"le"},
    "mtls_issuance_duration_seconds_count": set(),
    "mtls_issuance_duration_seconds_sum": set(),
    "mtls_ca_expiration_timestamp_seconds": {"fingerprint"},
    "mtls_pod_certificate_requests_total": {"namespace", "identity", "outcome", "reason"},
}


def samples(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the exposition, by sample name (as Prometheus would scrape it)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    matches = [v for got, v in samples(metrics).get(name, []) if got == labels]
    assert len(matches) <= 1
    return matches[0] if matches else None


def observed(metrics: Metrics, identity: str = "payments", *, failed: int = 0) -> None:
    metrics.identity_observed("shop", identity, served=3, issued=3 - failed, failed=failed,
                              earliest_not_after=NOT_AFTER, next_renewal=RENEW_AT)


def test_every_series_has_its_contracted_name_and_labels() -> None:
    metrics = Metrics()
    observed(metrics)
    metrics.certificate_signed(0.01)
    metrics.certificate_issued(ReissueReason.NEW)
    metrics.issuance_error(IssuanceError.PKI)
    metrics.ca_loaded("ab" * 32, CA_NOT_AFTER)
    metrics.pod_certificate_request("shop", "payments", "issued", "Issued")
    found = samples(metrics)
    for name, labels in SERIES.items():
        assert name in found, name
        assert all(set(got) == labels for got, _ in found[name]), (name, found[name])


def test_no_series_has_a_pod_label() -> None:
    metrics = Metrics()
    observed(metrics)
    for name, series in samples(metrics).items():
        assert all("pod" not in labels for labels, _ in series), name


def test_identity_gauges() -> None:
    metrics = Metrics()
    observed(metrics, failed=1)
    assert value(metrics, "mtls_identity_pods", namespace="shop", identity="payments", state="served") == 3
    assert value(metrics, "mtls_identity_pods", namespace="shop", identity="payments", state="issued") == 2
    assert value(metrics, "mtls_identity_pods", namespace="shop", identity="payments", state="failed") == 1
    assert value(metrics, "mtls_certificate_expiration_timestamp_seconds", namespace="shop",
                 identity="payments") == NOT_AFTER.timestamp()
    assert value(metrics, "mtls_certificate_renewal_timestamp_seconds", namespace="shop",
                 identity="payments") == RENEW_AT.timestamp()


def test_an_identity_without_certificates_has_no_timestamps() -> None:
    metrics = Metrics()
    observed(metrics)
    metrics.identity_observed("shop", "payments", served=0, issued=0, failed=0, earliest_not_after=None,
                              next_renewal=None)
    assert value(metrics, "mtls_certificate_expiration_timestamp_seconds", namespace="shop",
                 identity="payments") is None
    assert value(metrics, "mtls_certificate_renewal_timestamp_seconds", namespace="shop",
                 identity="payments") is None
    assert value(metrics, "mtls_identity_pods", namespace="shop", identity="payments", state="served") == 0


def test_identity_removed_drops_its_series_and_only_its() -> None:
    metrics = Metrics()
    observed(metrics, "payments")
    observed(metrics, "orders")
    metrics.pod_certificate_request("shop", "payments", "denied", "UnsupportedKeyType")
    metrics.pod_certificate_request("shop", "orders", "issued", "Issued")
    metrics.identity_removed("shop", "payments")
    for name, series in samples(metrics).items():
        assert all(labels.get("identity") != "payments" for labels, _ in series), name
    assert value(metrics, "mtls_identity_pods", namespace="shop", identity="orders", state="served") == 3
    assert value(metrics, "mtls_pod_certificate_requests_total", namespace="shop", identity="orders",
                 outcome="issued", reason="Issued") == 1
    metrics.identity_removed("shop", "never-seen")  # harmless


@pytest.mark.parametrize("reason", list(ReissueReason))
def test_issued_counts_by_reason(reason: ReissueReason) -> None:
    metrics = Metrics()
    metrics.certificate_issued(reason)
    metrics.certificate_issued(reason)
    assert value(metrics, "mtls_certificates_issued_total", reason=reason.value) == 2


def test_every_reason_is_exported_from_the_start() -> None:
    found = samples(Metrics())
    issued = {labels["reason"]: v for labels, v in found["mtls_certificates_issued_total"]}
    errors = {labels["reason"]: v for labels, v in found["mtls_issuance_errors_total"]}
    assert issued == {"new": 0, "renewal": 0, "spec-change": 0, "ca-rotation": 0, "repair": 0,
                      "manual": 0}
    assert errors == {"invalid-spec": 0, "ca-unavailable": 0, "pki": 0, "secret-conflict": 0, "api": 0}


def test_errors_count_by_reason() -> None:
    metrics = Metrics()
    metrics.issuance_error(IssuanceError.API, 3)
    metrics.issuance_error(IssuanceError.INVALID_SPEC)
    assert value(metrics, "mtls_issuance_errors_total", reason="api") == 3
    assert value(metrics, "mtls_issuance_errors_total", reason="invalid-spec") == 1


def test_duration_histogram() -> None:
    metrics = Metrics()
    metrics.certificate_signed(0.004)
    metrics.certificate_signed(2.0)
    assert value(metrics, "mtls_issuance_duration_seconds_count") == 2
    assert value(metrics, "mtls_issuance_duration_seconds_sum") == pytest.approx(2.004)
    assert value(metrics, "mtls_issuance_duration_seconds_bucket", le="0.005") == 1
    assert value(metrics, "mtls_issuance_duration_seconds_bucket", le="+Inf") == 2


def test_only_the_current_ca_has_a_series() -> None:
    metrics = Metrics()
    metrics.ca_loaded("aa" * 32, CA_NOT_AFTER)
    metrics.ca_loaded("aa" * 32, CA_NOT_AFTER)
    metrics.ca_loaded("bb" * 32, datetime(2028, 1, 1, tzinfo=UTC))
    series = samples(metrics)["mtls_ca_expiration_timestamp_seconds"]
    assert series == [({"fingerprint": "bb" * 32}, datetime(2028, 1, 1, tzinfo=UTC).timestamp())]


def test_registries_are_private() -> None:
    one, two = Metrics(), Metrics()
    one.certificate_issued(ReissueReason.NEW)
    assert value(two, "mtls_certificates_issued_total", reason="new") == 0


def test_serve_and_close() -> None:
    metrics = Metrics()
    metrics.certificate_issued(ReissueReason.RENEWAL)
    metrics.serve(0, addr="127.0.0.1")
    try:
        assert metrics.port
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    assert 'mtls_certificates_issued_total{reason="renewal"} 1.0' in text
    assert metrics.port is None
    metrics.close()  # idempotent


def test_a_port_in_use_is_one_clear_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 -- taken where serve() binds
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            Metrics().serve(port)
    message = str(caught.value)
    assert message.startswith(f"MTLS_METRICS_PORT={port}: cannot serve metrics on 0.0.0.0:{port}")
    assert "\n" not in message
