"""helm template over the matrix: valid objects for Kubernetes 1.29 and the newest, the names and
shapes of DESIGN.md and the webhook and HA contracts, and the same output from helm 3 and helm 4."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from mtls_operator import constants as c
from mtls_operator.observability.metrics import Metrics
from tests.chart.conftest import (
    HELMS,
    LONG_RELEASE,
    MATRIX,
    NAMESPACE,
    RELEASE,
    ROOT,
    Case,
    Rendered,
    render,
    run,
    tool,
)

OLDEST_KUBERNETES = "1.29.0"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version())
# Custom resources of the Prometheus Operator: kubernetes-validate has no schema for them, so
# test_service_monitor and test_prometheus_rule check them by hand.
PROMETHEUS_OPERATOR_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
PROMETHEUS_DURATION = re.compile(r"[0-9]+(ms|s|m|h)")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

FULLNAME = RELEASE  # the release name contains the chart name, so it is the full name as it is


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@pytest.mark.parametrize("name", MATRIX)
def test_helm3_renders_the_same(renders: dict[tuple[str, str], Rendered], name: str) -> None:
    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["kind"], obj["metadata"]["name"]

    # The same objects; the order differs (the helms sort kinds they do not know differently).
    assert sorted(renders[("helm3", name)].objects, key=key) == sorted(renders[("helm", name)].objects, key=key)


@pytest.mark.parametrize("helm", HELMS)
def test_lint_strict(helm: str) -> None:
    result = run(tool(helm), "lint", "--strict", str(ROOT / "charts" / "mtls-operator"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", MATRIX)
def test_objects_valid_for_kubernetes(rendered: dict[str, Rendered], name: str, version: str) -> None:
    oldest = MATRIX[name].kube_version
    if oldest is not None and _release(version) < _release(oldest):
        pytest.skip(f"rendered for Kubernetes {oldest}")
    validated = 0
    for obj in rendered[name].objects:
        if obj["kind"] not in PROMETHEUS_OPERATOR_KINDS:
            kubernetes_validate.validate(obj, version, strict=True)
            validated += 1
    assert validated >= 5  # Deployment, ServiceAccount and RBAC at the least


@pytest.mark.parametrize("name", MATRIX)
def test_every_namespaced_object_in_the_release_namespace(rendered: dict[str, Rendered], name: str) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                      "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
                      "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for obj in rendered[name].objects:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], obj["kind"]
        elif name == "dashboard-elsewhere" and obj["metadata"]["name"].endswith("-dashboard"):
            # The one exception, asked for: the Grafana dashboard where the sidecar looks.
            assert obj["metadata"]["namespace"] == "monitoring"
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_names_fit_in_63_characters(rendered: dict[str, Rendered]) -> None:
    long = rendered["long-release-name"]
    for obj in long.objects:
        if obj["kind"] != "CustomResourceDefinition":
            assert DNS_LABEL.fullmatch(obj["metadata"]["name"]), obj["metadata"]["name"]
        assert all(len(value) <= 63 for value in obj["metadata"]["labels"].values()), obj["kind"]
    fullname = f"{LONG_RELEASE}-mtls-operator"[:63]
    assert long.one("Deployment")["metadata"]["name"] == fullname
    # A suffix is kept whole and the full name cut before it, so the two Services stay apart.
    services = sorted(svc["metadata"]["name"] for svc in long.all("Service"))
    assert services == [fullname[:55] + "-metrics", fullname[:55] + "-webhook"]
    assert long.env["MTLS_WEBHOOK_SERVICE"] == services[1]


def test_deployment_runs_the_operator(rendered: dict[str, Rendered]) -> None:
    defaults = rendered["defaults"]
    deployment = defaults.one("Deployment")
    assert deployment["metadata"]["name"] == FULLNAME
    assert deployment["spec"]["replicas"] == 2
    container = defaults.container
    assert container["image"] == "mtls-operator:0.1.0"  # the chart's appVersion
    assert container["args"] == ["run"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090, "webhook": 9443}
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_probes_use_kopf_health_endpoint(rendered: dict[str, Rendered]) -> None:
    for name in ("defaults", "every-setting"):
        container = rendered[name].container
        health_port = next(port for port in container["ports"] if port["name"] == "health")
        assert str(health_port["containerPort"]) == rendered[name].env["MTLS_HEALTH_PORT"]
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe


def test_image_tag_and_digest() -> None:
    digest = "sha256:" + "ab" * 32
    pinned = render("helm", Case({"image": {"repository": "registry.example.com/mtls", "tag": "1.2.3"}}))
    assert pinned.container["image"] == "registry.example.com/mtls:1.2.3"
    by_digest = render("helm", Case({"image": {"repository": "registry.example.com/mtls", "digest": digest}}))
    assert by_digest.container["image"] == f"registry.example.com/mtls@{digest}"


def test_replicas_lease_and_disruption_budget(rendered: dict[str, Rendered]) -> None:
    budget = rendered["defaults"].one("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == rendered["defaults"].one("Deployment")["spec"]["selector"]
    assert rendered["defaults"].env["MTLS_LEADER_ELECTION"] == "true"
    assert rendered["defaults"].env["MTLS_LEASE_NAME"] == FULLNAME
    one = rendered["one-replica"]
    assert one.one("Deployment")["spec"]["replicas"] == 1
    assert one.all("PodDisruptionBudget") == []
    assert one.env["MTLS_LEADER_ELECTION"] == "false"
    assert one.all("Role") == []
    assert one.all("RoleBinding") == []


def test_webhook_objects_follow_the_contract(rendered: dict[str, Rendered]) -> None:
    defaults = rendered["defaults"]
    services = {svc["metadata"]["name"]: svc for svc in defaults.all("Service")}
    webhook_service = services[f"{FULLNAME}-webhook"]
    assert webhook_service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"},
    ]
    assert webhook_service["spec"]["selector"] == defaults.one("Deployment")["spec"]["selector"]["matchLabels"]
    env = defaults.env
    assert env["MTLS_WEBHOOK_PORT"] == "9443"
    assert env["MTLS_WEBHOOK_SERVICE"] == f"{FULLNAME}-webhook"
    assert env["MTLS_WEBHOOK_CONFIGURATION"] == FULLNAME
    client = {"service": {"name": f"{FULLNAME}-webhook", "namespace": NAMESPACE, "port": 443}}

    mutating = defaults.one("MutatingWebhookConfiguration")
    assert mutating["metadata"]["name"] == FULLNAME
    (inject,) = mutating["webhooks"]
    assert inject == {
        "name": c.INJECT_WEBHOOK_NAME,
        "clientConfig": {"service": {**client["service"], "path": f"/{c.INJECT_HANDLER_ID}"}},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                   "scope": "Namespaced"}],
        "objectSelector": {"matchLabels": {c.INJECT_LABEL: c.INJECT_VALUE}},
        "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]},
        ]},
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
        "reinvocationPolicy": "IfNeeded",
    }
    validating = defaults.one("ValidatingWebhookConfiguration")
    assert validating["metadata"]["name"] == FULLNAME
    (check,) = validating["webhooks"]
    assert check == {
        "name": c.IDENTITIES_WEBHOOK_NAME,
        "clientConfig": {"service": {**client["service"], "path": f"/{c.VALIDATE_HANDLER_ID}"}},
        "rules": [{"apiGroups": [c.GROUP], "apiVersions": [c.VERSION], "operations": ["CREATE", "UPDATE"],
                   "resources": [c.PLURAL], "scope": "Namespaced"}],
        "failurePolicy": "Ignore",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
    }


def test_webhook_values(rendered: dict[str, Rendered]) -> None:
    custom = rendered["every-setting"]
    (inject,) = custom.one("MutatingWebhookConfiguration")["webhooks"]
    (check,) = custom.one("ValidatingWebhookConfiguration")["webhooks"]
    assert inject["timeoutSeconds"] == check["timeoutSeconds"] == 9
    assert inject["failurePolicy"] == "Fail"  # opted-in pods never start without their mount
    assert check["failurePolicy"] == "Fail"
    webhook_port = next(port for port in custom.container["ports"] if port["name"] == "webhook")
    assert webhook_port["containerPort"] == 10443


def test_webhook_off(rendered: dict[str, Rendered]) -> None:
    off = rendered["webhook-off"]
    assert off.all("MutatingWebhookConfiguration") == off.all("ValidatingWebhookConfiguration") == []
    assert [svc["metadata"]["name"] for svc in off.all("Service")] == [f"{FULLNAME}-metrics"]
    assert off.env["MTLS_WEBHOOK_PORT"] == "0"
    assert "webhook" not in {port["name"] for port in off.container["ports"]}


def test_metrics_service_and_off(rendered: dict[str, Rendered]) -> None:
    services = {svc["metadata"]["name"]: svc for svc in rendered["defaults"].all("Service")}
    metrics = services[f"{FULLNAME}-metrics"]
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    off = rendered["metrics-off"]
    assert off.env["MTLS_METRICS_PORT"] == "0"
    assert "metrics" not in {port["name"] for port in off.container["ports"]}
    assert f"{FULLNAME}-metrics" not in {svc["metadata"]["name"] for svc in off.all("Service")}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector["matchLabels"].items() <= labels.items() and "matchExpressions" not in selector


def test_service_monitor(rendered: dict[str, Rendered]) -> None:
    """A hand check in place of a schema: the fields the Prometheus Operator reads, and what they select."""
    monitoring = rendered["monitoring"]
    monitor = monitoring.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selected = [svc["metadata"]["name"] for svc in monitoring.all("Service")
                if _selects(spec["selector"], svc["metadata"]["labels"])]
    assert selected == [f"{FULLNAME}-metrics"]  # not the webhook Service
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout", "honorLabels"}
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # the series' own `namespace` label is the identity's
    assert PROMETHEUS_DURATION.fullmatch(endpoint["interval"])
    assert PROMETHEUS_DURATION.fullmatch(endpoint["scrapeTimeout"])
    assert rendered["defaults"].all("ServiceMonitor") == rendered["defaults"].all("PrometheusRule") == []


def _exposed_metric_names() -> set[str]:
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            names.add(family.name)
    return names


EXPECTED_ALERTS = {
    "MTLSCertificateExpiringSoon": "mtls_certificate_expiration_timestamp_seconds",
    "MTLSIssuanceErrors": "mtls_issuance_errors_total",
    "MTLSCAExpiringSoon": "mtls_ca_expiration_timestamp_seconds",
    "MTLSNoLeader": "mtls_leader",
}


def test_prometheus_rule(rendered: dict[str, Rendered]) -> None:
    """A hand check in place of a schema: the shape the Prometheus Operator reads, and alerts on real series."""
    rule = rendered["monitoring"].one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    (group,) = rule["spec"]["groups"]
    assert set(group) == {"name", "rules"}
    alerts = {item["alert"]: item for item in group["rules"]}
    assert set(alerts) == set(EXPECTED_ALERTS)
    exposed = _exposed_metric_names()
    metric_name = re.compile(r"\bmtls_[a-z_]+\b")
    for name, metric in EXPECTED_ALERTS.items():
        alert = alerts[name]
        assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}, name
        expr = alert["expr"]
        assert metric in metric_name.findall(expr), name
        assert set(metric_name.findall(expr)) <= exposed, f"{name} reads a series the operator does not export"
        assert expr.count("(") == expr.count(")"), name
        assert expr.count("{") == expr.count("}"), name
        assert PROMETHEUS_DURATION.fullmatch(alert["for"]), name
        assert alert["labels"] == {"severity": "warning"}
        assert set(alert["annotations"]) == {"summary", "description"}
    # Prometheus's own templating survives helm's.
    assert "{{ $labels.identity }}" in alerts["MTLSCertificateExpiringSoon"]["annotations"]["summary"]
    assert "< 3600" in alerts["MTLSCertificateExpiringSoon"]["expr"]
    assert "< 2592000" in alerts["MTLSCAExpiringSoon"]["expr"]


def test_crd_rendered_from_the_single_source(rendered: dict[str, Rendered]) -> None:
    source = yaml.safe_load((ROOT / "crds" / "mtlsidentity.yaml").read_text())
    crd = rendered["defaults"].one("CustomResourceDefinition")
    assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    labels = crd["metadata"].pop("labels")
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert crd == source
    not_kept = rendered["crds-not-kept"].one("CustomResourceDefinition")
    assert "annotations" not in not_kept["metadata"]
    assert rendered["crds-off"].all("CustomResourceDefinition") == []


def test_service_account(rendered: dict[str, Rendered]) -> None:
    account = rendered["defaults"].one("ServiceAccount")
    assert account["metadata"]["name"] == FULLNAME
    assert account["automountServiceAccountToken"] is False
    pod = rendered["defaults"].one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is True


def test_notes_name_the_next_commands() -> None:
    result = run(tool("helm"), "install", RELEASE, str(ROOT / "charts" / "mtls-operator"), "--namespace", NAMESPACE,
                 "--dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"kubectl rollout status deployment/{FULLNAME} -n {NAMESPACE}" in notes
    assert "kubectl get mtlsid -A" in notes
    assert f"Secret {NAMESPACE}/{c.DEFAULT_CA_SECRET}" in notes
    # kubectl mtls with this release's names (the plugin's defaults are the chart's for release mtls-operator).
    assert (f"kubectl mtls check -n shop --operator-namespace {NAMESPACE} --ca-secret {c.DEFAULT_CA_SECRET} "
            f"--webhook-ca-secret {c.DEFAULT_WEBHOOK_CA_SECRET} --lease {FULLNAME} --webhook-configuration {FULLNAME} "
            f"--operator-service-account {FULLNAME}") in notes
