"""Every ``x-kubernetes-validations`` rule of the MTLSIdentity CRD, evaluated with real CEL.

kube-apiserver runs these rules at ``kubectl apply``; the in-repo API emulator does not, so without
this file a wrong rule would only show on a real cluster. The rules are collected from the YAML
(each with its schema path) and evaluated with cel-python the way the apiserver does
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules):

* after defaulting: nulls of non-nullable fields are pruned, then schema defaults are applied
  (…/custom-resource-definitions/#defaulting-and-nullable);
* each rule with ``self`` bound to the value at its schema node, once per list item or map value,
  and only where that value is present; at the root, ``self.metadata`` holds only ``name`` and
  ``generateName``;
* a rule that evaluates to ``false`` *or fails to evaluate* rejects the object.

Every case is also given to the operator's own checks (``parse_identity_spec``, and the reconciler's
``metadata.name`` limit), which must agree: the CRD only gives early feedback, the operator decides.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from celpy import celtypes

from mtls_operator.errors import SpecError
from mtls_operator.models import KEY_SIZES, KeyAlgorithm
from mtls_operator.rules.plan import MAX_LABEL_VALUE_LENGTH
from mtls_operator.rules.spec import parse_identity_spec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "mtlsidentity.yaml"
NAMESPACE = "shop"


def _load_schema() -> dict[str, Any]:
    (version,) = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


SCHEMA = _load_schema()

# --- Kubernetes' duration() ------------------------------------------------------------------
# CEL's duration(string) in Kubernetes is cel-go's, which is Go's time.ParseDuration
# (https://kubernetes.io/docs/reference/using-api/cel/, https://pkg.go.dev/time#ParseDuration,
# cel-go common/types/string.go): nanosecond precision, units ns us µs μs ms s m h (no 'd'), and an
# error past ±2^63 ns (~2562047h), which rejects the object. cel-python's own duration() keeps
# microseconds via floats, accepts 'd' and allows 10000 years, so it is replaced by this port.

_GO_MAX = 1 << 63
_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


def go_parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration``, step for step (Go 1.22 src/time/format.go): nanoseconds."""
    invalid = ValueError(f"time: invalid duration {text!r}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        if not (rest[0] == "." or _is_digit(rest[0])):
            raise invalid
        # leadingInt: [0-9]*, an error on overflow.
        index, whole = 0, 0
        while index < len(rest) and _is_digit(rest[index]):
            if whole > _GO_MAX // 10:
                raise invalid
            whole = whole * 10 + int(rest[index])
            if whole > _GO_MAX:
                raise invalid
            index += 1
        before_point, rest = index > 0, rest[index:]
        # leadingFraction: (\.[0-9]*)?, which stops gathering precision instead of overflowing.
        fraction, scale, after_point = 0, 1.0, False
        if rest.startswith("."):
            rest = rest[1:]
            index, overflow = 0, False
            while index < len(rest) and _is_digit(rest[index]):
                if not overflow:
                    if fraction > (_GO_MAX - 1) // 10 or (widened := fraction * 10 + int(rest[index])) > _GO_MAX:
                        overflow = True
                    else:
                        fraction, scale = widened, scale * 10
                index += 1
            after_point, rest = index > 0, rest[index:]
        if not before_point and not after_point:
            raise invalid
        index = 0
        while index < len(rest) and rest[index] != "." and not _is_digit(rest[index]):
            index += 1
        if index == 0:
            raise ValueError(f"time: missing unit in duration {text!r}")
        unit_name, rest = rest[:index], rest[index:]
        if unit_name not in _GO_UNITS:
            raise ValueError(f"time: unknown unit {unit_name!r} in duration {text!r}")
        unit = _GO_UNITS[unit_name]
        if whole > _GO_MAX // unit:
            raise invalid
        whole *= unit
        if fraction > 0:
            # float64, as Go does: nanosecond-accurate for fractions of hours.
            whole += int(float(fraction) * (float(unit) / scale))
            if whole > _GO_MAX:
                raise invalid
        total += whole
        if total > _GO_MAX:
            raise invalid
    if negative:
        return -total
    if total > _GO_MAX - 1:
        raise invalid
    return total


class GoDuration(celtypes.DurationType):
    """A CEL duration compared at Go's nanosecond precision (the timedelta part is truncated)."""

    nanoseconds: int

    def __new__(cls, nanoseconds: int) -> GoDuration:
        value = super().__new__(cls, timedelta(microseconds=nanoseconds // 1000))
        value.nanoseconds = nanoseconds
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoDuration) and self.nanoseconds == other.nanoseconds

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, GoDuration):
            return NotImplemented
        return self.nanoseconds < other.nanoseconds

    def __le__(self, other: object) -> bool:
        if not isinstance(other, GoDuration):
            return NotImplemented
        return self.nanoseconds <= other.nanoseconds

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, GoDuration):
            return NotImplemented
        return self.nanoseconds > other.nanoseconds

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, GoDuration):
            return NotImplemented
        return self.nanoseconds >= other.nanoseconds

    def __hash__(self) -> int:
        return hash(self.nanoseconds)


def kubernetes_duration(value: Any) -> GoDuration:
    """CEL ``duration(string)`` (and ``duration(duration)``) as kube-apiserver evaluates it."""
    if isinstance(value, GoDuration):
        return value
    if not isinstance(value, celtypes.StringType):
        raise TypeError(f"no such overload: duration({type(value).__name__})")
    return GoDuration(go_parse_duration(str(value)))


# Functions whose cel-python implementation was checked against Kubernetes' (cel-go plus the
# Kubernetes libraries, https://kubernetes.io/docs/reference/using-api/cel/), or replaced above. A
# rule calling anything else fails test_rules_call_only_checked_functions: check cel-python's
# version or add a faithful one to KUBERNETES_FUNCTIONS, with a link to its documented semantics.
KUBERNETES_FUNCTIONS = {"duration": kubernetes_duration}
CHECKED_FUNCTIONS = frozenset({"has", "size", *KUBERNETES_FUNCTIONS})

# --- the rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    path: str  # schema path of the node the rule sits on: "" (root), ".spec", ".spec.x[*]"
    rule: str
    message: str
    field_path: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


def collect_rules(node: dict[str, Any], path: str = "") -> list[Rule]:
    rules = [
        Rule(path, entry["rule"], entry.get("message", ""), entry.get("fieldPath", ""))
        for entry in node.get("x-kubernetes-validations", [])
    ]
    for name, child in node.get("properties", {}).items():
        rules.extend(collect_rules(child, f"{path}.{name}"))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            rules.extend(collect_rules(node[key], f"{path}[*]"))
    return rules


RULES = collect_rules(SCHEMA)

# Short names for the cases below: schema path and the start of the rule's message.
RULE_NAMES: dict[str, tuple[str, str]] = {
    "name-length": ("", "metadata.name must be at most 63 characters"),
    "expression-values": (".spec.selector.matchExpressions[*]", "values must be non-empty for In and NotIn"),
    "selector-not-empty": (".spec.selector", "selector must name at least one label or expression"),
    "ecdsa-size": (".spec.privateKey", "ECDSA supports size 256 or 384"),
    "rsa-size": (".spec.privateKey", "RSA supports size 2048, 3072 or 4096"),
    "ed25519-no-size": (".spec.privateKey", "Ed25519 keys have no size"),
    "duration-bounds": (".spec", "duration must be between 1h and 8760h"),
    "renew-before-minimum": (".spec", "renewBefore must be at least 1m"),
    "renew-before-shorter": (".spec", "renewBefore must be shorter than duration"),
    "keystore-password": (".spec.keystores.pkcs12", "passwordSecretRef is required with create: true"),
    "pod-certificate-key": (".spec", "delivery PodCertificate needs a key the kubelet can generate"),
    "pod-certificate-keystores": (".spec", "keystores are written into pod Secrets"),
}


def rule_name(rule: Rule) -> str:
    names = [
        name for name, (path, message) in RULE_NAMES.items() if rule.path == path and rule.message.startswith(message)
    ]
    assert len(names) == 1, f"rule {rule} has {len(names)} names in RULE_NAMES; give it exactly one, and cases"
    return names[0]


# --- the apiserver's view: defaulting, then CEL at every node ------------------------------------


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Prune nulls of non-nullable fields, then apply schema defaults, recursively (in place)."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in [name for name, child in value.items() if child is None]:
            if not properties.get(name, {}).get("nullable", False):
                del value[name]
        for name, child_schema in properties.items():
            if name not in value and "default" in child_schema:
                value[name] = copy.deepcopy(child_schema["default"])
            if name in value:
                apply_defaults(child_schema, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for child in value.values():
                apply_defaults(schema["additionalProperties"], child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


@cache
def _program(text: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(text), functions=KUBERNETES_FUNCTIONS)


def evaluate_rule(rule: Rule, value: Any) -> str | None:
    """``None`` if the rule holds for ``value`` (bound to ``self``), else why it rejects."""
    if rule.path == "":
        metadata = value.get("metadata", {})
        value = {**value, "metadata": {key: metadata[key] for key in ("name", "generateName") if key in metadata}}
    try:
        result = _program(rule.rule).evaluate({"self": celpy.json_to_cel(value)})
    except celpy.CELEvalError as error:
        return f"evaluation error: {error.args[0]}"
    if not isinstance(result, celtypes.BoolType):
        return f"evaluated to {result!r}, not a bool"
    return None if result else "false"


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    where: str  # the field path the apiserver reports: "spec.selector.matchExpressions[1]"
    rejection: str | None


def evaluate(schema: dict[str, Any], value: Any, path: str = "", where: str = "") -> list[Outcome]:
    outcomes = []
    for entry in schema.get("x-kubernetes-validations", []):
        rule = Rule(path, entry["rule"], entry.get("message", ""), entry.get("fieldPath", ""))
        outcomes.append(Outcome(rule, f"{where}{rule.field_path}".lstrip("."), evaluate_rule(rule, value)))
    if isinstance(value, dict):
        for name, child_schema in schema.get("properties", {}).items():
            if name in value:
                outcomes.extend(evaluate(child_schema, value[name], f"{path}.{name}", f"{where}.{name}"))
        if isinstance(schema.get("additionalProperties"), dict):
            for key, child in value.items():
                outcomes.extend(evaluate(schema["additionalProperties"], child, f"{path}[*]", f"{where}[{key}]"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            outcomes.extend(evaluate(schema["items"], item, f"{path}[*]", f"{where}[{index}]"))
    return outcomes


def operator_error(obj: dict[str, Any], **settings: Any) -> SpecError | None:
    """What the operator refuses the object with: the reconciler's name check, then the parser."""
    try:
        name = obj["metadata"]["name"]
        if len(name) > MAX_LABEL_VALUE_LENGTH:  # as controller/reconciler.py does before parsing
            raise SpecError("metadata.name", f"must be at most {MAX_LABEL_VALUE_LENGTH} characters")
        parse_identity_spec(obj["spec"], namespace=NAMESPACE, **settings)
    except SpecError as error:
        return error
    return None


# --- the cases -------------------------------------------------------------------------------

SELECTOR = {"matchLabels": {"app": "payments"}}


@dataclass(frozen=True)
class Case:
    id: str
    spec: dict[str, Any]
    fails: frozenset[str] = frozenset()  # names of the rules that must reject; empty: a good object
    name: str = "payments"

    @property
    def identity(self) -> dict[str, Any]:
        """The whole object, as sent to the apiserver (a fresh copy every time)."""
        return copy.deepcopy(
            {
                "apiVersion": "mtls.dev/v1alpha1",
                "kind": "MTLSIdentity",
                "metadata": {"name": self.name, "namespace": NAMESPACE},
                "spec": self.spec,
            }
        )


def good(case_id: str, *, name: str = "payments", **spec: Any) -> Case:
    return Case(case_id, {"selector": SELECTOR, **spec}, name=name)


def bad(case_id: str, *fails: str, name: str = "payments", **spec: Any) -> Case:
    assert fails, "a bad case names the rules that reject it"
    return Case(case_id, {"selector": SELECTOR, **spec}, frozenset(fails), name=name)


def _key_cases() -> list[Case]:
    """Every algorithm with every size the schema's enum allows, and with none."""
    failing_rule = {
        KeyAlgorithm.ECDSA: "ecdsa-size",
        KeyAlgorithm.RSA: "rsa-size",
        KeyAlgorithm.ED25519: "ed25519-no-size",
    }
    enum = SCHEMA["properties"]["spec"]["properties"]["privateKey"]["properties"]["size"]["enum"]
    cases = [
        good(f"key-{algorithm}-default-size", privateKey={"algorithm": str(algorithm)}) for algorithm in KeyAlgorithm
    ]
    for algorithm in KeyAlgorithm:
        for size in enum:
            key = {"algorithm": str(algorithm), "size": size}
            if size in KEY_SIZES[algorithm]:
                cases.append(good(f"key-{algorithm}-{size}", privateKey=key))
            else:
                cases.append(bad(f"key-{algorithm}-{size}", failing_rule[algorithm], privateKey=key))
    return cases


CASES: list[Case] = [
    good("minimal"),
    good(
        "design-example",
        serviceAccountName="payments",
        dnsNames=["payments", "payments.shop.svc", "payments.shop.svc.cluster.local"],
        usages=["server", "client"],
        privateKey={"algorithm": "ECDSA", "size": 256},
        duration="24h",
        renewBefore="8h",
        secretTemplate={"labels": {"team": "payments"}, "annotations": {"owner": "payments team"}},
    ),
    # Headless pod names (StatefulSets) are the namespace's own: schema and operator both accept them.
    good("dns-headless-pod-names", dnsNames=["payments-0.payments.shop.svc", "*.payments.shop.svc.cluster.local"]),
    # metadata.name: it becomes the mtls.dev/identity label value.
    good("name-63-characters", name="p" * 63),
    bad("name-64-characters", "name-length", name="p" * 64),
    # selector: never empty, expressions with values exactly when the operator needs them.
    good(
        "selector-expressions-only",
        selector={
            "matchExpressions": [
                {"key": "app", "operator": "In", "values": ["payments"]},
                {"key": "tier", "operator": "NotIn", "values": ["db", "cache"]},
                {"key": "mtls", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
            ]
        },
    ),
    good("selector-labels-and-no-expressions", selector={"matchLabels": {"app": "payments"}, "matchExpressions": []}),
    good(
        "selector-no-labels-and-an-expression",
        selector={"matchLabels": {}, "matchExpressions": [{"key": "app", "operator": "Exists"}]},
    ),
    bad("selector-empty", "selector-not-empty", selector={}),
    bad("selector-empty-labels", "selector-not-empty", selector={"matchLabels": {}}),
    bad("selector-empty-expressions", "selector-not-empty", selector={"matchExpressions": []}),
    bad("selector-both-empty", "selector-not-empty", selector={"matchLabels": {}, "matchExpressions": []}),
    bad("in-without-values", "expression-values", selector={"matchExpressions": [{"key": "app", "operator": "In"}]}),
    bad(
        "in-with-empty-values",
        "expression-values",
        selector={"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
    ),
    bad(
        "notin-without-values",
        "expression-values",
        selector={"matchExpressions": [{"key": "app", "operator": "NotIn"}]},
    ),
    bad(
        "exists-with-values",
        "expression-values",
        selector={"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
    ),
    bad(
        "doesnotexist-with-values",
        "expression-values",
        selector={"matchExpressions": [{"key": "app", "operator": "DoesNotExist", "values": ["x"]}]},
    ),
    bad(
        "second-expression-bad",
        "expression-values",
        selector={
            "matchLabels": {"app": "payments"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}, {"key": "x", "operator": "In"}],
        },
    ),
    # privateKey: the algorithm defaults to ECDSA before the rules run.
    good("key-omitted"),
    good("key-empty", privateKey={}),
    good("key-size-without-algorithm-is-ecdsa", privateKey={"size": 384}),
    bad("key-rsa-size-without-algorithm", "ecdsa-size", privateKey={"size": 3072}),
    *_key_cases(),
    # duration: 1h..8760h, Go syntax restricted to h, m, s by the schema's pattern.
    good("duration-minimum", duration="1h"),
    good("duration-maximum", duration="8760h"),
    good("duration-maximum-in-minutes", duration="525600m"),
    good("duration-hours-and-minutes", duration="1h30m"),
    good("duration-minutes", duration="90m"),
    good("duration-fraction", duration="1.5h"),
    good("duration-minimum-as-parts", duration="0.5h30m"),
    good("duration-minimum-in-seconds", duration="3600s"),
    bad("duration-below-minimum", "duration-bounds", duration="59m59s"),
    bad("duration-below-minimum-by-1us", "duration-bounds", duration="59m59.999999s"),
    bad("duration-zero", "duration-bounds", duration="0h"),
    bad("duration-above-maximum", "duration-bounds", duration="8760h1s"),
    bad("duration-above-maximum-in-minutes", "duration-bounds", duration="525601m"),
    bad("duration-beyond-go-range", "duration-bounds", duration="2562048h"),  # an evaluation error
    # renewBefore: at least 1m, shorter than duration when both are set.
    good("renew-before-minimum", duration="1h", renewBefore="1m"),
    good("renew-before-just-shorter", duration="1h", renewBefore="59m59.999999s"),
    good("renew-before-without-duration", renewBefore="8h"),
    good("renew-before-below-default-duration", renewBefore="23h59m59s"),
    good("renew-before-long-duration", duration="8760h", renewBefore="8759h"),
    bad("renew-before-below-minimum", "renew-before-minimum", renewBefore="59s"),
    bad("renew-before-zero", "renew-before-minimum", renewBefore="0s"),
    bad("renew-before-below-minimum-with-duration", "renew-before-minimum", duration="1h", renewBefore="59.999999s"),
    bad("renew-before-equal", "renew-before-shorter", duration="1h", renewBefore="1h"),
    bad("renew-before-equal-spelt-differently", "renew-before-shorter", duration="1h", renewBefore="3600s"),
    bad("renew-before-longer", "renew-before-shorter", duration="24h", renewBefore="25h"),
    bad(
        "renew-before-beyond-go-range",
        "renew-before-minimum",
        "renew-before-shorter",
        duration="24h",
        renewBefore="2562048h",
    ),
    bad(
        "duration-and-renew-before-too-short",
        "duration-bounds",
        "renew-before-minimum",
        duration="30m",
        renewBefore="30s",
    ),
    bad(
        "duration-and-renew-before-too-long",
        "duration-bounds",
        "renew-before-shorter",
        duration="8761h",
        renewBefore="8762h",
    ),
    bad("renew-before-beyond-any-default-duration", "renew-before-shorter", renewBefore="8761h"),
    # keystores: a PKCS#12 keystore is never written without a password.
    good("keystore-pkcs12", keystores={"pkcs12": {"create": True, "profile": "Modern2023",
                                                  "passwordSecretRef": {"name": "p12-pass", "key": "password"}}}),
    good("keystore-legacy-des", keystores={"pkcs12": {"create": True, "profile": "LegacyDES",
                                                      "passwordSecretRef": {"name": "p12-pass", "key": "p.w_d-1"}}}),
    good("keystore-default-profile", keystores={"pkcs12": {"create": True,
                                                           "passwordSecretRef": {"name": "p12-pass", "key": "pw"}}}),
    good("keystore-not-created", keystores={"pkcs12": {"create": False}}),
    good("keystores-empty", keystores={}),
    bad("keystore-without-password", "keystore-password", keystores={"pkcs12": {"create": True}}),
    # delivery: PodCertificate only with a key type the kubelet generates, and without keystores.
    good("delivery-secret", delivery="Secret", privateKey={"algorithm": "RSA"}),
    good("delivery-pod-certificate", delivery="PodCertificate"),
    good("delivery-pod-certificate-ed25519", delivery="PodCertificate", privateKey={"algorithm": "Ed25519"}),
    good("delivery-pod-certificate-rsa-3072", delivery="PodCertificate", privateKey={"algorithm": "RSA", "size": 3072}),
    good("delivery-pod-certificate-keystore-not-created", delivery="PodCertificate",
         keystores={"pkcs12": {"create": False}}),
    bad("delivery-pod-certificate-rsa-default-size", "pod-certificate-key", delivery="PodCertificate",
        privateKey={"algorithm": "RSA"}),
    bad("delivery-pod-certificate-rsa-2048", "pod-certificate-key", delivery="PodCertificate",
        privateKey={"algorithm": "RSA", "size": 2048}),
    bad("delivery-pod-certificate-keystores", "pod-certificate-keystores", delivery="PodCertificate",
        keystores={"pkcs12": {"create": True, "passwordSecretRef": {"name": "p12-pass", "key": "pw"}}}),
]

# --- the tests -------------------------------------------------------------------------------


def test_rules_are_found_and_named() -> None:
    assert RULES, "no x-kubernetes-validations found in the CRD"
    named = sorted(rule_name(rule) for rule in RULES)
    assert named == sorted(RULE_NAMES), "every rule has exactly one name, and every name one rule"


def test_no_rule_is_a_transition_rule() -> None:
    """Cases here are creates (no ``oldSelf``). A transition rule needs old objects and correlation."""
    for rule in RULES:
        tree = celpy.Environment().compile(rule.rule)
        identifiers = {str(node.children[0]) for node in tree.iter_subtrees() if node.data == "ident"}
        assert "oldSelf" not in identifiers, f"{rule} is a transition rule: add update cases with old objects"


def _called_functions(text: str) -> set[str]:
    tree = celpy.Environment().compile(text)
    return {
        next(str(child) for child in node.children if getattr(child, "type", None) == "IDENT")
        for node in tree.iter_subtrees()
        if node.data in ("ident_arg", "member_dot_arg", "dot_ident_arg")
    }


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_rules_call_only_checked_functions(rule: Rule) -> None:
    unchecked = _called_functions(rule.rule) - CHECKED_FUNCTIONS
    assert not unchecked, f"{rule} calls {sorted(unchecked)}: check or implement them (see CHECKED_FUNCTIONS)"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_case(case: Case) -> None:
    raw = case.identity
    obj = apply_defaults(SCHEMA, copy.deepcopy(raw))
    jsonschema.Draft4Validator(SCHEMA).validate(obj)  # the case is valid but for the CEL rules

    outcomes = evaluate(SCHEMA, obj)
    rejected = {rule_name(outcome.rule): outcome.rejection for outcome in outcomes if outcome.rejection}
    assert set(rejected) == case.fails, f"rules that rejected the object: {rejected}"

    for spec_source in (raw, obj):  # what the user wrote, and what the operator reads back
        error = operator_error(spec_source)
        if not case.fails:
            assert error is None, f"the CRD accepts it but the operator refuses it: {error}"
            continue
        assert error is not None, f"the CRD rejects it ({rejected}) but the operator accepts it"
        where = [outcome.where for outcome in outcomes if outcome.rejection]
        assert any(error.field.startswith(path) for path in where), f"{error.field} is not under {where}"


def test_every_rule_has_a_passing_and_a_failing_case() -> None:
    passing: set[Rule] = set()
    failing: set[Rule] = set()
    for case in CASES:
        for outcome in evaluate(SCHEMA, apply_defaults(SCHEMA, case.identity)):
            (failing if outcome.rejection else passing).add(outcome.rule)
    assert {str(rule) for rule in RULES if rule not in passing} == set(), "rules without a case they accept"
    assert {str(rule) for rule in RULES if rule not in failing} == set(), "rules without a case they reject"


def test_renew_before_without_duration_is_the_operators_to_check() -> None:
    """The operator's default duration is a setting (MTLS_DEFAULT_DURATION), unknown to the CRD."""
    case = good("renew-before-of-the-default-duration", renewBefore="24h")
    obj = apply_defaults(SCHEMA, case.identity)
    assert not [outcome for outcome in evaluate(SCHEMA, obj) if outcome.rejection]
    refused = operator_error(obj)
    assert refused is not None
    assert refused.field == "spec.renewBefore"
    assert operator_error(obj, default_duration=timedelta(hours=48)) is None


# Go's own test table (src/time/time_test.go, parseDurationTests and parseDurationErrorTests).
@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0", 0),
        ("-0", 0),
        ("5s", 5_000_000_000),
        ("+5s", 5_000_000_000),
        ("-5s", -5_000_000_000),
        ("5.s", 5_000_000_000),
        (".5s", 500_000_000),
        ("1.004s", 1_004_000_000),
        ("12µs", 12_000),
        ("12μs", 12_000),
        ("3h30m", 12_600_000_000_000),
        ("10.5s4m", 250_500_000_000),
        ("1h2m3s4ms5us6ns", 3_723_004_005_006),
        ("0.3333333333333333333h", 1_200_000_000_000),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("9223372036854775.807us", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("0.100000000000000000000h", 360_000_000_000),
        ("0.830103483285477580700h", 2_988_372_539_827),
        ("8760.0000000001h", 31_536_000_000_000_360),
    ],
)
def test_go_parse_duration(text: str, nanoseconds: int) -> None:
    assert go_parse_duration(text) == nanoseconds


@pytest.mark.parametrize(
    "text",
    ["", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "1h ", "\x85\x85", "9223372036854775808ns", "2562048h"],
    ids=repr,
)
def test_go_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"^time: "):
        go_parse_duration(text)


def test_cel_durations_compare_at_nanoseconds() -> None:
    """cel-python's own duration() would call these equal (microseconds); Kubernetes does not."""
    program = _program("duration('8760.0000000001h') > duration('8760h') && duration('1ns') != duration('0s')")
    assert program.evaluate({}) == celtypes.BoolType(True)
