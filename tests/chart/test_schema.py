"""Bad values are refused before anything is rendered, with a message naming the value and the rule.

helm 4 and helm 3 word schema errors differently (different JSON-schema libraries), so each row
holds the fragment each prints; rules across values (a `fail` in _helpers.tpl) read the same in both.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.chart.conftest import CHART, HELMS, helm_template

# (values, what helm 4 says, what helm 3 says)
BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"bogus": 1}, "additional properties 'bogus' not allowed", "Additional property bogus is not allowed"),
    ({"metrics": {"serviceMonitor": {"enable": True}}}, "at '/metrics/serviceMonitor': additional properties 'enable'",
     "metrics.serviceMonitor: Additional property enable is not allowed"),
    ({"trustDomain": "Prod.Example"}, "at '/trustDomain': 'Prod.Example' does not match pattern",
     "trustDomain: Does not match pattern"),
    ({"clusterDomain": "*.local"}, "at '/clusterDomain': '*.local' does not match pattern",
     "clusterDomain: Does not match pattern"),
    ({"defaultDuration": "1d"}, "at '/defaultDuration': '1d' does not match pattern",
     "defaultDuration: Does not match pattern"),
    ({"defaultDuration": 24}, "at '/defaultDuration': got number, want string",
     "defaultDuration: Invalid type. Expected: string, given: integer"),
    ({"maxIssuancePerSecond": 0}, "at '/maxIssuancePerSecond': exclusiveMinimum: got 0, want 0",
     "maxIssuancePerSecond: Must be greater than 0"),
    ({"maxIssuancePerSecond": "fast"}, "at '/maxIssuancePerSecond': got string, want number",
     "maxIssuancePerSecond: Invalid type. Expected: number, given: string"),
    ({"allowedDNSPatterns": "*.example.com"}, "at '/allowedDNSPatterns': got string, want array",
     "allowedDNSPatterns: Invalid type. Expected: array, given: string"),
    ({"allowedDNSPatterns": ["api-*.example.com"]}, "at '/allowedDNSPatterns/0': 'api-*.example.com' does not match",
     "allowedDNSPatterns.0: Does not match pattern"),
    ({"allowedDNSPatterns": [{"namespaces": ["shop"]}]}, "at '/allowedDNSPatterns/0'",
     "allowedDNSPatterns.0: Must validate one and only one schema"),
    ({"allowedDNSPatterns": [{"namespaces": ["Shop"], "patterns": ["*.example.com"]}]},
     "at '/allowedDNSPatterns/0'", "allowedDNSPatterns.0: Must validate one and only one schema"),
    ({"allowedDNSPatterns": ["single"]}, "at '/allowedDNSPatterns/0'",
     "allowedDNSPatterns.0: Must validate one and only one schema"),
    ({"maxDuration": "1y"}, "at '/maxDuration': '1y' does not match pattern", "maxDuration: Does not match pattern"),
    ({"allowShortDNSNames": "no"}, "at '/allowShortDNSNames': got string, want boolean",
     "allowShortDNSNames: Invalid type. Expected: boolean, given: string"),
    ({"ca": {"existingSecret": "My_CA"}}, "at '/ca/existingSecret': 'My_CA' does not match pattern",
     "ca.existingSecret: Does not match pattern"),
    ({"replicaCount": 0}, "at '/replicaCount': minimum: got 0, want 1",
     "replicaCount: Must be greater than or equal to 1"),
    ({"replicaCount": "2"}, "at '/replicaCount': got string, want integer",
     "replicaCount: Invalid type. Expected: integer, given: string"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent'",
     'image.pullPolicy must be one of the following: "Always", "IfNotPresent", "Never"'),
    ({"image": {"digest": "latest"}}, "at '/image/digest': 'latest' does not match pattern",
     "image.digest: Does not match pattern"),
    ({"securityContext": {"runAsUser": 0}}, "at '/securityContext/runAsUser': minimum: got 0, want 1",
     "securityContext.runAsUser: Must be greater than or equal to 1"),
    ({"webhook": {"timeoutSeconds": 60}}, "at '/webhook/timeoutSeconds': maximum: got 60, want 30",
     "webhook.timeoutSeconds: Must be less than or equal to 30"),
    ({"webhook": {"failurePolicy": "Maybe"}}, "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
     'webhook.failurePolicy must be one of the following: "Fail", "Ignore"'),
    ({"metrics": {"port": 70000}}, "at '/metrics/port': maximum: got 70,000, want 65,535",
     "metrics.port: Must be less than or equal to 65535"),
    ({"leaderElection": {"leaseDuration": "fifteen"}}, "at '/leaderElection/leaseDuration': 'fifteen' does not match",
     "leaderElection.leaseDuration: Does not match pattern"),
    ({"nodeSelector": {"disktype": 1}}, "at '/nodeSelector/disktype': got number, want string",
     "nodeSelector.disktype: Invalid type. Expected: string, given: integer"),
    ({"tolerations": [{"key": "k", "operator": "Equals"}]}, "at '/tolerations/0/operator': value must be one of",
     "tolerations.0.operator must be one of the following"),
    ({"crds": {"keep": "yes"}}, "at '/crds/keep': got string, want boolean",
     "crds.keep: Invalid type. Expected: boolean, given: string"),
    # Rules across values: the same message from both helms.
    ({"leaderElection": {"enabled": False}},
     "replicaCount > 1 needs leaderElection.enabled=true", "replicaCount > 1 needs leaderElection.enabled=true"),
    ({"metrics": {"enabled": False, "prometheusRule": {"enabled": True}}},
     "metrics.prometheusRule.enabled needs metrics.enabled=true",
     "metrics.prometheusRule.enabled needs metrics.enabled=true"),
    ({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
     "metrics.serviceMonitor.enabled needs metrics.service.enabled=true",
     "metrics.serviceMonitor.enabled needs metrics.service.enabled=true"),
    ({"metrics": {"port": 8080}}, "health.port, metrics.port and webhook.port must differ (got 8080, 8080, 9443)",
     "health.port, metrics.port and webhook.port must differ (got 8080, 8080, 9443)"),
    ({"serviceAccount": {"create": False}},
     "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false",
     "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false"),
]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(("values", "helm4_says", "helm3_says"), BAD_VALUES, ids=lambda v: json.dumps(v)[:60])
def test_bad_values_refused_readably(helm: str, values: dict[str, Any], helm4_says: str, helm3_says: str) -> None:
    result = helm_template(helm, values)
    assert result.returncode != 0, f"{values} was accepted"
    expected = helm4_says if helm == "helm" else helm3_says
    assert expected in result.stderr
    assert result.stdout == ""


def _walk(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for key, sub in (schema.get("properties") or {}).items():
        found += _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        found += _walk(schema["items"], f"{path}[]")
    return found


def test_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for path, node in _walk(schema, "values"):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"


def _keys(values: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    found: list[str] = []
    for key, value in values.items():
        found.append(f"{path}{key}")
        sub = schema["properties"].get(key)
        assert sub is not None, f"{path}{key} is not in values.schema.json"
        if isinstance(value, dict) and "properties" in sub:
            found += _keys(value, sub, f"{path}{key}.")
    return found


def _key_lines(text: str) -> dict[str, bool]:
    """{dotted key: whether a comment line is right above it} for every key of a block-style YAML file."""
    found: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"( *)([A-Za-z0-9_.-]+):", line)
        if match is None:
            continue
        indent = len(match[1])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match[2]))
        found[".".join(key for _, key in stack)] = index > 0 and lines[index - 1].lstrip().startswith("#")
    return found


def test_every_value_is_in_the_schema_and_commented() -> None:
    """values.yaml: every key has a schema entry and a comment above it (cert-manager's convention)."""
    text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load(text)
    jsonschema.Draft7Validator(schema).validate(values)
    commented = _key_lines(text)
    # The chart's own keys; entries of free-form maps (resources.requests.cpu) are examples, not settings.
    keys = _keys(values, schema, "")
    assert [key for key in keys if not commented[key]] == []


def test_every_value_is_in_the_chart_readme() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    # Sections (ca, metrics.service...) are headings; the settings are the keys without sub-keys.
    settings = [key for key in _keys(values, schema, "") if not any(other.startswith(f"{key}.")
                                                                    for other in _keys(values, schema, ""))]
    assert [key for key in settings if f"| `{key}` |" not in readme] == []
