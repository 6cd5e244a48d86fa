"""crds/mtlsidentity.yaml: a valid CRD, named per DESIGN.md, and in step with the code's rules."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from mtls_operator import constants
from mtls_operator.models import KEY_SIZES, Delivery, KeyAlgorithm, Usage
from mtls_operator.rules import policy, spec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "mtlsidentity.yaml"
PACKAGE_CRD_PATH = ROOT / "operator" / "mtls_operator" / "crds" / "mtlsidentity.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    loaded = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    assert isinstance(only, dict)
    return only


@pytest.fixture(scope="module")
def spec_schema(version: dict[str, Any]) -> dict[str, Any]:
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert isinstance(schema, dict)
    return schema


@pytest.fixture(scope="module")
def status_schema(version: dict[str, Any]) -> dict[str, Any]:
    schema = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert isinstance(schema, dict)
    return schema


def _rule(rules: list[dict[str, Any]], message_start: str) -> dict[str, Any]:
    (found,) = [rule for rule in rules if rule["message"].startswith(message_start)]
    return found


def _re2_anchored(pattern: str) -> re.Pattern[str]:
    """Compile a CRD pattern with RE2's meaning of '$' (end of text, not before a final newline)."""
    assert pattern.startswith("^")
    assert pattern.endswith("$")
    return re.compile(pattern[:-1] + r"\Z")


def test_package_copy_is_identical() -> None:
    assert PACKAGE_CRD_PATH.read_bytes() == CRD_PATH.read_bytes()


def test_package_copy_is_package_data() -> None:
    resource = importlib.resources.files("mtls_operator") / "crds" / "mtlsidentity.yaml"
    assert resource.read_bytes() == CRD_PATH.read_bytes()


def test_validates_against_kubernetes_schemas(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, "1.32.0", strict=True)


def test_names(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{constants.PLURAL}.{constants.GROUP}" == "mtlsidentities.mtls.dev"
    assert crd["spec"]["group"] == constants.GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"] == {
        "kind": constants.KIND,
        "listKind": f"{constants.KIND}List",
        "plural": constants.PLURAL,
        "singular": "mtlsidentity",
        "shortNames": [constants.SHORT_NAME],
        "categories": ["mtls"],
    }
    assert (version["name"], version["served"], version["storage"]) == (constants.VERSION, True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = [
        (column["name"].upper(), column["type"], column["jsonPath"])
        for column in version["additionalPrinterColumns"]
        if column.get("priority", 0) == 0
    ]
    assert columns == [
        ("READY", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("PODS", "integer", ".status.pods"),
        ("ISSUED", "integer", ".status.issued"),
        # A string: kubectl would print a future date column as "<invalid>".
        ("NEXT-RENEWAL", "string", ".status.nextRenewalTime"),
        ("AGE", "date", ".metadata.creationTimestamp"),
    ]


def test_spec_fields_match_the_parser(spec_schema: dict[str, Any]) -> None:
    assert list(spec_schema["properties"]) == list(spec.SPEC_FIELDS)
    assert spec_schema["required"] == ["selector"]


def test_enums_match_the_models(spec_schema: dict[str, Any]) -> None:
    properties = spec_schema["properties"]
    usages = properties["usages"]
    assert usages["items"]["enum"] == [usage.value for usage in Usage]
    assert usages["default"] == [usage.value for usage in Usage]
    assert (usages["minItems"], usages["maxItems"], usages["x-kubernetes-list-type"]) == (1, len(Usage), "set")
    key = properties["privateKey"]["properties"]
    assert key["algorithm"]["enum"] == [algorithm.value for algorithm in KeyAlgorithm]
    assert key["algorithm"]["default"] == KeyAlgorithm.ECDSA.value
    assert key["size"]["enum"] == sorted({size for sizes in KEY_SIZES.values() for size in sizes})
    assert properties["delivery"]["enum"] == [delivery.value for delivery in Delivery]
    assert properties["delivery"]["default"] == Delivery.SECRET.value
    operators = properties["selector"]["properties"]["matchExpressions"]["items"]["properties"]["operator"]
    assert operators["enum"] == list(spec.SELECTOR_OPERATORS)


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=str)
def test_key_size_rules_match_the_models(spec_schema: dict[str, Any], algorithm: KeyAlgorithm) -> None:
    rules = spec_schema["properties"]["privateKey"]["x-kubernetes-validations"]
    rule = _rule(rules, f"{algorithm} ")
    assert rule["fieldPath"] == ".size"
    assert f"'{algorithm}'" in rule["rule"]
    sizes = KEY_SIZES[algorithm]
    if sizes:
        assert f"self.size in [{', '.join(map(str, sizes))}]" in rule["rule"]
        assert rule["message"].startswith(f"{algorithm} supports size ")
        assert re.findall(r"[0-9]+", rule["message"]) == [str(size) for size in sizes]
    else:
        assert "have no size" in rule["message"]


def test_duration_rules_match_the_parser(spec_schema: dict[str, Any]) -> None:
    rules = spec_schema["x-kubernetes-validations"]
    bounds = _rule(rules, "duration must be between")
    assert f"duration('{spec.format_duration(spec.MIN_DURATION)}')" in bounds["rule"]
    assert f"duration('{spec.format_duration(spec.MAX_DURATION)}')" in bounds["rule"]
    assert bounds["fieldPath"] == ".duration"
    minimum = _rule(rules, "renewBefore must be at least")
    assert f"duration('{spec.format_duration(spec.MIN_RENEW_BEFORE)}')" in minimum["rule"]
    assert minimum["fieldPath"] == ".renewBefore"
    shorter = _rule(rules, "renewBefore must be shorter than duration")
    assert "duration(self.renewBefore) < duration(self.duration)" in shorter["rule"]
    assert shorter["fieldPath"] == ".renewBefore"


def test_duration_has_no_default_so_the_operator_setting_applies(spec_schema: dict[str, Any]) -> None:
    assert "default" not in spec_schema["properties"]["duration"]


def test_limits_match_the_parser(spec_schema: dict[str, Any]) -> None:
    properties = spec_schema["properties"]
    assert properties["dnsNames"]["maxItems"] == spec.MAX_DNS_NAMES
    assert properties["dnsNames"]["items"]["maxLength"] == policy.MAX_DNS_NAME_LENGTH
    assert properties["serviceAccountName"]["maxLength"] == policy.MAX_DNS_NAME_LENGTH
    for name in ("duration", "renewBefore"):
        assert properties[name]["maxLength"] == spec.MAX_DURATION_TEXT_LENGTH
        assert properties[name]["pattern"] == spec.DURATION_PATTERN


DURATION_TEXTS = [
    "24h",
    "8h",
    "1h30m",
    "90m",
    "2h45m30s",
    "8760h",
    "1.5h",
    "0h",
    "45s",
    "1h5s",
    "",
    "-1h",
    "+1h",
    "1d",
    "abc",
    "24",
    "h",
    "1H",
    "1h1h",
    "30m1h",
    "1ms",
    "1us",
    "1ns",
    "1.h",
    ".5h",
    " 1h",
    "1h ",
    "1h\n",
    "1" * 33 + "h",
]


@pytest.mark.parametrize("field", ["duration", "renewBefore"])
@pytest.mark.parametrize("text", DURATION_TEXTS, ids=repr)
def test_duration_schema_agrees_with_parse_duration(spec_schema: dict[str, Any], field: str, text: str) -> None:
    schema = spec_schema["properties"][field]
    schema_accepts = (
        schema["minLength"] <= len(text) <= schema["maxLength"]
        and _re2_anchored(schema["pattern"]).search(text) is not None
    )
    try:
        spec.parse_duration(text)
    except ValueError:
        parser_accepts = False
    else:
        parser_accepts = True
    assert schema_accepts is parser_accepts


DNS_NAMES = [
    "payments",
    "Payments.Shop.svc",
    "*.shop.svc",
    "1.2.3",
    "x" * 63,
    "x" * 64,
    "*",
    "a.*.b",
    "**.shop",
    "*shop",
    "shop.*",
    "a..b",
    "a.",
    ".a",
    "-a",
    "a-",
    "pay_ments",
    "a b",
    "",
    ("a" * 60 + ".") * 4 + "a",
    ("a" * 60 + ".") * 4 + "a" * 20,
]


@pytest.mark.parametrize("name", DNS_NAMES, ids=repr)
def test_dns_name_schema_agrees_with_the_parser(spec_schema: dict[str, Any], name: str) -> None:
    schema = spec_schema["properties"]["dnsNames"]["items"]
    schema_accepts = len(name) <= schema["maxLength"] and _re2_anchored(schema["pattern"]).search(name) is not None
    assert schema_accepts is (policy.dns_name_problem(name) is None)


@pytest.mark.parametrize(
    "name", ["payments", "a.b-c", "A", "a_b", "-a", "a.", "", "x" * 253, "x" * 254, "a\n"], ids=repr
)
def test_service_account_schema_agrees_with_the_parser(spec_schema: dict[str, Any], name: str) -> None:
    schema = spec_schema["properties"]["serviceAccountName"]
    schema_accepts = len(name) <= schema["maxLength"] and _re2_anchored(schema["pattern"]).search(name) is not None
    assert schema_accepts is policy.is_dns1123_subdomain(name)


def test_every_validation_rule_has_a_message(version: dict[str, Any]) -> None:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.extend(node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(version["schema"])
    assert len(found) >= 8
    for rule in found:
        assert rule["rule"].strip()
        assert rule["message"].strip()


def test_status_schema(status_schema: dict[str, Any]) -> None:
    properties = status_schema["properties"]
    assert set(properties) == {
        "observedGeneration",
        "conditions",
        "spiffeIDs",
        "pods",
        "issued",
        "nextRenewalTime",
        "caFingerprint",
        "caRotationPhase",
        "podCertificatePods",
        "lastIssuance",
    }
    conditions = properties["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    condition = conditions["items"]["properties"]
    assert set(condition) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert condition["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["lastTransitionTime"]["format"] == "date-time"
    assert properties["nextRenewalTime"]["format"] == "date-time"
    assert properties["spiffeIDs"]["items"]["type"] == "string"


@pytest.mark.parametrize("text", ["8760.0000000001h", "1.0000001m", "0.0000001s", "1.1234567h"])
def test_durations_finer_than_a_microsecond_are_refused_by_crd_and_parser(text: str) -> None:
    """Six fractional digits at most: the operator's microseconds and Kubernetes' nanoseconds agree."""
    assert re.fullmatch(spec.DURATION_PATTERN, text) is None
    with pytest.raises(ValueError, match="invalid duration"):
        spec.parse_duration(text)
