"""spec.py: durations, label selectors and the MTLSIdentity spec, table-driven."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from mtls_operator.errors import PolicyError, SpecError
from mtls_operator.models import Delivery, KeyAlgorithm, KeySpec, Usage
from mtls_operator.rules.policy import parse_admin_patterns
from mtls_operator.rules.spec import (
    POD_CERTIFICATE_KEY_TYPES,
    SPEC_FIELDS,
    IdentitySpec,
    LabelSelector,
    PolicyRefusal,
    SelectorRequirement,
    default_renew_before,
    format_duration,
    parse_duration,
    parse_identity_spec,
    parse_label_selector,
)

H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)

# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("24h", 24 * H, id="24h"),
        pytest.param("8h", 8 * H, id="8h"),
        pytest.param("1h30m", 90 * M, id="1h30m"),
        pytest.param("90m", 90 * M, id="90m"),
        pytest.param("2h45m30s", 2 * H + 45 * M + 30 * S, id="2h45m30s"),
        pytest.param("8760h", 8760 * H, id="8760h"),
        pytest.param("1.5h", 90 * M, id="fractional-hours"),
        pytest.param("0.5m", 30 * S, id="fractional-minutes"),
        pytest.param("45s", 45 * S, id="seconds"),
        pytest.param("1h0m0s", H, id="explicit-zeros"),
        pytest.param("1h5s", H + 5 * S, id="no-minutes"),
        pytest.param("0h", timedelta(0), id="zero-parses-bounds-are-callers"),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        pytest.param("", "empty duration", id="empty"),
        pytest.param("-1h", "invalid duration '-1h'", id="negative"),
        pytest.param("+1h", "invalid duration", id="plus-sign"),
        pytest.param("1d", "no days", id="days"),
        pytest.param("abc", "invalid duration 'abc'", id="garbage"),
        pytest.param("24", "invalid duration", id="no-unit"),
        pytest.param("h", "invalid duration", id="unit-only"),
        pytest.param("1H", "invalid duration", id="upper-case-unit"),
        pytest.param("1h1h", "in that order", id="repeated-unit"),
        pytest.param("30m1h", "in that order", id="wrong-order"),
        pytest.param("1ms", "invalid duration", id="milliseconds"),
        pytest.param("1ns", "invalid duration", id="nanoseconds"),
        pytest.param("1.h", "invalid duration", id="dangling-dot"),
        pytest.param(".5h", "invalid duration", id="leading-dot"),
        pytest.param(" 1h", "invalid duration", id="leading-space"),
        pytest.param("1h\n", "invalid duration", id="trailing-newline"),
        pytest.param("\u0661h", "invalid duration", id="non-ascii-digit"),
        pytest.param("9" * 30 + "h", "out of range", id="overflow"),
        pytest.param("1" * 40 + "h", "longer than 32", id="too-long"),
    ],
)
def test_parse_duration_refuses(text: str, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase) as caught:
        parse_duration(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("value", [24, 1.5, None, ["24h"]], ids=["int", "float", "none", "list"])
def test_parse_duration_refuses_non_strings(value: Any) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        pytest.param(24 * H, "24h", id="24h"),
        pytest.param(8 * H, "8h", id="8h"),
        pytest.param(90 * M, "1h30m", id="1h30m"),
        pytest.param(7 * H + 59 * M, "7h59m", id="7h59m"),
        pytest.param(2 * H + 45 * M + 30 * S, "2h45m30s", id="all-units"),
        pytest.param(90 * S, "1m30s", id="seconds-carry"),
        pytest.param(H + 5 * S, "1h5s", id="no-minutes"),
        pytest.param(8760 * H, "8760h", id="days-as-hours"),
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(milliseconds=1500), "1s", id="truncates-subseconds"),
        pytest.param(timedelta(milliseconds=500), "0s", id="below-a-second"),
        pytest.param(-H, "-1h", id="negative"),
    ],
)
def test_format_duration(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@pytest.mark.parametrize("td", [S, 59 * S, H, 25 * H + 1 * S, 8760 * H, 7 * H + 59 * M + 59 * S])
def test_format_then_parse_round_trips(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        pytest.param(24 * H, 8 * H, id="24h"),
        pytest.param(H, 20 * M, id="1h"),
        pytest.param(H + S, 20 * M, id="truncated-to-seconds"),
        pytest.param(10 * S, 3 * S, id="10s"),
        pytest.param(8760 * H, 2920 * H, id="a-year"),
    ],
)
def test_default_renew_before(duration: timedelta, expected: timedelta) -> None:
    assert default_renew_before(duration) == expected


# --- label selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param(LabelSelector((("app", "a"),)), {"app": "a", "x": "y"}, True, id="labels-match"),
        pytest.param(LabelSelector((("app", "a"),)), {"app": "b"}, False, id="labels-differ"),
        pytest.param(LabelSelector((("app", "a"),)), {}, False, id="labels-missing"),
        pytest.param(LabelSelector((("app", ""),)), {"app": ""}, True, id="empty-value-matches"),
        pytest.param(
            LabelSelector(match_expressions=(SelectorRequirement("t", "In", ("a", "b")),)),
            {"t": "b"},
            True,
            id="in",
        ),
        pytest.param(
            LabelSelector(match_expressions=(SelectorRequirement("t", "In", ("a",)),)),
            {},
            False,
            id="in-missing-key",
        ),
        pytest.param(
            LabelSelector(match_expressions=(SelectorRequirement("t", "NotIn", ("a",)),)),
            {},
            True,
            id="notin-missing-key",
        ),
        pytest.param(
            LabelSelector(match_expressions=(SelectorRequirement("t", "NotIn", ("a",)),)),
            {"t": "a"},
            False,
            id="notin-listed",
        ),
        pytest.param(
            LabelSelector(match_expressions=(SelectorRequirement("t", "Exists"),)),
            {"t": ""},
            True,
            id="exists",
        ),
        pytest.param(
            LabelSelector(match_expressions=(SelectorRequirement("t", "DoesNotExist"),)),
            {"t": "x"},
            False,
            id="does-not-exist",
        ),
        pytest.param(
            LabelSelector((("app", "a"),), (SelectorRequirement("t", "Exists"),)),
            {"app": "a"},
            False,
            id="all-must-hold",
        ),
    ],
)
def test_selector_matches(selector: LabelSelector, labels: dict[str, str], expected: bool) -> None:
    assert selector.matches(labels) is expected


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        pytest.param({"matchLabels": {"app": "payments"}}, "app=payments", id="label"),
        pytest.param({"matchLabels": {"z": "1", "a": "2"}}, "a=2,z=1", id="labels-sorted"),
        pytest.param(
            {
                "matchLabels": {"app": "payments"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["b", "a", "b"]},
                    {"key": "x", "operator": "DoesNotExist"},
                    {"key": "y", "operator": "Exists"},
                    {"key": "z", "operator": "NotIn", "values": ["q"]},
                ],
            },
            "app=payments,tier in (a,b),!x,y,z notin (q)",
            id="all-operators",
        ),
    ],
)
def test_selector_to_query(raw: dict[str, Any], query: str) -> None:
    assert parse_label_selector(raw).to_query() == query


def test_parse_selector_normalises_to_equal_values() -> None:
    one = parse_label_selector(
        {
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}],
        }
    )
    two = parse_label_selector(
        {
            "matchLabels": {"a": "1", "b": "2"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}],
        }
    )
    assert one == two
    assert hash(one) == hash(two)
    assert one.match_expressions[0].values == ("x", "y")


def test_parse_selector_treats_null_lists_as_absent() -> None:
    selector = parse_label_selector({"matchLabels": {"app": "a"}, "matchExpressions": None})
    assert selector.match_expressions == ()
    selector = parse_label_selector({"matchLabels": None, "matchExpressions": [{"key": "a", "operator": "Exists"}]})
    assert selector.match_labels == ()


def test_parse_selector_accepts_prefixed_keys_and_empty_values() -> None:
    selector = parse_label_selector({"matchLabels": {"app.kubernetes.io/name": "", "Team_1.x": "A-b_c.9"}})
    assert selector.match_labels == (("Team_1.x", "A-b_c.9"), ("app.kubernetes.io/name", ""))


def _expr(**fields: Any) -> dict[str, Any]:
    return {"matchExpressions": [fields]}


BAD_SELECTORS = [
    pytest.param(None, "spec.selector", "must be a label selector", id="null"),
    pytest.param([], "spec.selector", "not a list", id="list"),
    pytest.param("app=payments", "spec.selector", "not a string", id="string"),
    pytest.param({}, "spec.selector", "at least one label", id="empty"),
    pytest.param({"matchLabels": {}}, "spec.selector", "would select every pod", id="empty-labels"),
    pytest.param({"matchLabels": {}, "matchExpressions": []}, "spec.selector", "at least one", id="both-empty"),
    pytest.param({"matchLabel": {"a": "b"}}, "spec.selector.matchLabel", "unknown field", id="unknown-field"),
    pytest.param({"matchLabels": ["app"]}, "spec.selector.matchLabels", "must be a map", id="labels-list"),
    pytest.param({"matchLabels": "app=x"}, "spec.selector.matchLabels", "must be a map", id="labels-string"),
    pytest.param(
        {"matchLabels": {"bad key": "x"}}, "spec.selector.matchLabels[bad key]", "invalid key", id="key-space"
    ),
    pytest.param({"matchLabels": {"a" * 64: "x"}}, f"spec.selector.matchLabels[{'a' * 64}]", "1..63", id="key-long"),
    pytest.param({"matchLabels": {"-app": "x"}}, "spec.selector.matchLabels[-app]", "start", id="key-dash"),
    pytest.param({"matchLabels": {"/app": "x"}}, "spec.selector.matchLabels[/app]", "prefix", id="key-empty-prefix"),
    pytest.param(
        {"matchLabels": {"Example.com/app": "x"}},
        "spec.selector.matchLabels[Example.com/app]",
        "lower-case DNS subdomain",
        id="key-upper-prefix",
    ),
    pytest.param({"matchLabels": {"a/": "x"}}, "spec.selector.matchLabels[a/]", "name part", id="key-no-name"),
    pytest.param({"matchLabels": {1: "x"}}, "spec.selector.matchLabels[1]", "keys must be strings", id="key-int"),
    pytest.param({"matchLabels": {"app": "a b"}}, "spec.selector.matchLabels[app]", "invalid value", id="value-space"),
    pytest.param({"matchLabels": {"app": "x" * 64}}, "spec.selector.matchLabels[app]", "1..63", id="value-long"),
    pytest.param({"matchLabels": {"app": 1}}, "spec.selector.matchLabels[app]", "must be a string", id="value-int"),
    pytest.param({"matchLabels": {"app": True}}, "spec.selector.matchLabels[app]", "not a boolean", id="value-bool"),
    pytest.param({"matchLabels": {"app": None}}, "spec.selector.matchLabels[app]", "not null", id="value-null"),
    pytest.param(
        {"matchExpressions": {"key": "a"}}, "spec.selector.matchExpressions", "must be a list", id="exprs-map"
    ),
    pytest.param(
        {"matchExpressions": ["a"]}, "spec.selector.matchExpressions[0]", "must be an object", id="expr-string"
    ),
    pytest.param(
        _expr(key="t", operator="Equals", values=["x"]),
        "spec.selector.matchExpressions[0].operator",
        "unknown operator 'Equals'; allowed: In, NotIn, Exists, DoesNotExist",
        id="bad-operator",
    ),
    pytest.param(
        _expr(key="t", operator="in", values=["x"]),
        "spec.selector.matchExpressions[0].operator",
        "unknown operator 'in'",
        id="operator-case",
    ),
    pytest.param(
        _expr(key="t", operator=1), "spec.selector.matchExpressions[0].operator", "must be a string", id="operator-int"
    ),
    pytest.param(_expr(key="t"), "spec.selector.matchExpressions[0].operator", "required", id="operator-missing"),
    pytest.param(_expr(operator="Exists"), "spec.selector.matchExpressions[0].key", "required", id="key-missing"),
    pytest.param(
        _expr(key=5, operator="Exists"), "spec.selector.matchExpressions[0].key", "not a number", id="expr-key-int"
    ),
    pytest.param(
        _expr(key="bad key", operator="Exists"),
        "spec.selector.matchExpressions[0].key",
        "invalid label key",
        id="expr-key-invalid",
    ),
    pytest.param(
        _expr(key="t", operator="In"),
        "spec.selector.matchExpressions[0].values",
        "at least one value for operator In",
        id="in-without-values",
    ),
    pytest.param(
        _expr(key="t", operator="NotIn", values=[]),
        "spec.selector.matchExpressions[0].values",
        "at least one value",
        id="notin-empty-values",
    ),
    pytest.param(
        _expr(key="t", operator="Exists", values=["x"]),
        "spec.selector.matchExpressions[0].values",
        "must be empty for operator Exists",
        id="exists-with-values",
    ),
    pytest.param(
        _expr(key="t", operator="DoesNotExist", values=["x"]),
        "spec.selector.matchExpressions[0].values",
        "must be empty",
        id="doesnotexist-with-values",
    ),
    pytest.param(
        _expr(key="t", operator="In", values="x"),
        "spec.selector.matchExpressions[0].values",
        "must be a list",
        id="values-string",
    ),
    pytest.param(
        _expr(key="t", operator="In", values=["ok", 1]),
        "spec.selector.matchExpressions[0].values[1]",
        "must be a string",
        id="value-item-int",
    ),
    pytest.param(
        _expr(key="t", operator="In", values=["a b"]),
        "spec.selector.matchExpressions[0].values[0]",
        "invalid value",
        id="value-item-invalid",
    ),
    pytest.param(
        _expr(key="t", operator="Exists", value=["x"]),
        "spec.selector.matchExpressions[0].value",
        "unknown field",
        id="expr-unknown-field",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "In"}]},
        "spec.selector.matchExpressions[1].values",
        "at least one value",
        id="second-expression",
    ),
]


@pytest.mark.parametrize(("raw", "field", "phrase"), BAD_SELECTORS)
def test_parse_selector_refuses(raw: Any, field: str, phrase: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_label_selector(raw)
    assert caught.value.field == field
    assert phrase in caught.value.message


def test_unprintable_keys_stay_on_one_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_label_selector({"matchLabels": {"a\nb": "x"}})
    assert caught.value.field == "spec.selector.matchLabels['a\\nb']"
    assert "\n" not in str(caught.value)


def test_parse_selector_uses_the_given_field() -> None:
    with pytest.raises(SpecError) as caught:
        parse_label_selector({"matchLabels": {"a": 1}}, "webhook.selector")
    assert caught.value.field == "webhook.selector.matchLabels[a]"


# --- the identity spec -------------------------------------------------------------------------

NS = "shop"
DROP = object()  # in a table of fields: leave this field out of the spec
SELECTOR = {"matchLabels": {"app": "payments"}}


def parse(namespace: str = NS, **fields: Any) -> IdentitySpec:
    raw: dict[str, Any] = {"selector": SELECTOR, **fields}
    return parse_identity_spec(raw, namespace=namespace)


def test_minimal_spec_gets_the_defaults() -> None:
    spec = parse()
    assert spec.selector == LabelSelector((("app", "payments"),))
    assert spec.service_account_name is None
    assert spec.dns_names == ()
    assert spec.usages == frozenset({Usage.SERVER, Usage.CLIENT})
    assert spec.private_key == KeySpec(KeyAlgorithm.ECDSA, 256)
    assert spec.duration == 24 * H
    assert spec.renew_before == 8 * H
    assert dict(spec.secret_labels) == {}
    assert dict(spec.secret_annotations) == {}


def test_design_example_parses() -> None:
    spec = parse(
        serviceAccountName="payments",
        dnsNames=["payments", "payments.shop.svc", "payments.shop.svc.cluster.local"],
        usages=["server", "client"],
        privateKey={"algorithm": "ECDSA", "size": 256},
        duration="24h",
        renewBefore="8h",
        secretTemplate={"labels": {}, "annotations": {}},
    )
    assert spec.service_account_name == "payments"
    assert spec.dns_names == ("payments", "payments.shop.svc", "payments.shop.svc.cluster.local")
    assert (spec.duration, spec.renew_before) == (24 * H, 8 * H)


def test_null_fields_count_as_absent() -> None:
    spec = parse(serviceAccountName=None, dnsNames=None, usages=None, privateKey=None, duration=None, renewBefore=None)
    assert spec == parse()


def test_configured_default_duration_applies() -> None:
    spec = parse_identity_spec({"selector": SELECTOR}, namespace=NS, default_duration=12 * H)
    assert (spec.duration, spec.renew_before) == (12 * H, 4 * H)


@pytest.mark.parametrize(
    ("duration", "renew_before", "expected"),
    [
        pytest.param("1h", None, (H, 20 * M), id="minimum-duration"),
        pytest.param("8760h", None, (8760 * H, 2920 * H), id="maximum-duration"),
        pytest.param("1h", "59m", (H, 59 * M), id="renew-just-below-duration"),
        pytest.param("24h", "1m", (24 * H, M), id="minimum-renew-before"),
        pytest.param("1.5h", "1h", (90 * M, H), id="fractional"),
        pytest.param(None, "23h", (24 * H, 23 * H), id="renew-before-with-default-duration"),
    ],
)
def test_durations(duration: str | None, renew_before: str | None, expected: tuple[timedelta, timedelta]) -> None:
    spec = parse(duration=duration, renewBefore=renew_before)
    assert (spec.duration, spec.renew_before) == expected


def test_dns_names_are_lower_cased_and_deduplicated_in_order() -> None:
    spec = parse(dnsNames=["Payments.Shop.svc", "payments", "payments.shop.svc", "PAYMENTS", "*.shop.svc"])
    assert spec.dns_names == ("payments.shop.svc", "payments", "*.shop.svc")


def test_dns_names_may_match_admin_patterns() -> None:
    spec = parse_identity_spec(
        {"selector": SELECTOR, "dnsNames": ["api.example.com", "payments"]},
        namespace=NS,
        allowed_dns_patterns=parse_admin_patterns("shop:*.example.com", cluster_domain="cluster.local"),
    )
    assert spec.dns_names == ("api.example.com", "payments")


def test_headless_pod_names_are_allowed() -> None:
    names = ["db-0.db.shop.svc", "*.db.shop.svc", "db-1.db.shop.svc.cluster.local", "*.db.shop.svc.cluster.local"]
    assert parse(dnsNames=names).dns_names == tuple(names)


def test_dns_names_follow_the_cluster_domain() -> None:
    raw = {"selector": SELECTOR, "dnsNames": ["payments.shop.svc.corp.internal"]}
    assert parse_identity_spec(raw, namespace=NS, cluster_domain="corp.internal").dns_names == (
        "payments.shop.svc.corp.internal",
    )
    with pytest.raises(PolicyError):
        parse_identity_spec(raw, namespace=NS)


@pytest.mark.parametrize(
    ("private_key", "expected"),
    [
        pytest.param({}, KeySpec(KeyAlgorithm.ECDSA, 256), id="empty"),
        pytest.param({"algorithm": "ECDSA"}, KeySpec(KeyAlgorithm.ECDSA, 256), id="ecdsa-default"),
        pytest.param({"algorithm": "ECDSA", "size": 384}, KeySpec(KeyAlgorithm.ECDSA, 384), id="ecdsa-384"),
        pytest.param({"size": 384}, KeySpec(KeyAlgorithm.ECDSA, 384), id="size-only-means-ecdsa"),
        pytest.param({"algorithm": "RSA"}, KeySpec(KeyAlgorithm.RSA, 2048), id="rsa-default"),
        pytest.param({"algorithm": "RSA", "size": 4096}, KeySpec(KeyAlgorithm.RSA, 4096), id="rsa-4096"),
        pytest.param({"algorithm": "Ed25519"}, KeySpec(KeyAlgorithm.ED25519, None), id="ed25519"),
        pytest.param({"algorithm": "Ed25519", "size": None}, KeySpec(KeyAlgorithm.ED25519, None), id="ed25519-null"),
    ],
)
def test_private_key(private_key: dict[str, Any], expected: KeySpec) -> None:
    assert parse(privateKey=private_key).private_key == expected


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        pytest.param(["server"], {Usage.SERVER}, id="server"),
        pytest.param(["client"], {Usage.CLIENT}, id="client"),
        pytest.param(["client", "server"], {Usage.SERVER, Usage.CLIENT}, id="both"),
    ],
)
def test_usages(usages: list[str], expected: set[Usage]) -> None:
    assert parse(usages=usages).usages == expected


def test_secret_template_is_copied_read_only() -> None:
    spec = parse(
        secretTemplate={
            "labels": {"team": "payments", "example.com/tier": "gold"},
            "annotations": {"example.com/note": "free text, any characters: ok!", "owner": ""},
        }
    )
    assert dict(spec.secret_labels) == {"team": "payments", "example.com/tier": "gold"}
    assert dict(spec.secret_annotations) == {"example.com/note": "free text, any characters: ok!", "owner": ""}
    with pytest.raises(TypeError):
        spec.secret_labels["team"] = "other"  # type: ignore[index]


def test_spec_is_hashable_and_compares_by_value() -> None:
    one = parse(secretTemplate={"labels": {"a": "b"}}, dnsNames=["payments"])
    two = parse(secretTemplate={"labels": {"a": "b"}}, dnsNames=["payments"])
    assert one == two
    assert hash(one) == hash(two)
    assert one != parse(secretTemplate={"labels": {"a": "c"}}, dnsNames=["payments"])


def test_identity_spec_refuses_inconsistent_renew_before() -> None:
    selector = LabelSelector((("app", "a"),))
    with pytest.raises(ValueError, match="shorter than duration"):
        IdentitySpec(selector, duration=H, renew_before=H)
    with pytest.raises(ValueError, match="positive"):
        IdentitySpec(selector, renew_before=timedelta(0))


@pytest.mark.parametrize(
    ("labels", "service_account", "expected"),
    [
        pytest.param({"app": "payments"}, "payments", True, id="match"),
        pytest.param({"app": "payments"}, "other", False, id="other-account"),
        pytest.param({"app": "payments"}, None, False, id="unknown-account"),
        pytest.param({"app": "web"}, "payments", False, id="other-labels"),
    ],
)
def test_selects_checks_labels_and_service_account(
    labels: dict[str, str], service_account: str | None, expected: bool
) -> None:
    spec = parse(serviceAccountName="payments")
    assert spec.selects(labels, service_account) is expected


def test_selects_any_account_when_none_is_named() -> None:
    assert parse().selects({"app": "payments"}, "anything")


# --- certificate hash --------------------------------------------------------------------------

HASH_BASE: dict[str, Any] = {
    "dnsNames": ["payments", "payments.shop.svc"],
    "usages": ["server", "client"],
    "privateKey": {"algorithm": "ECDSA", "size": 256},
    "duration": "24h",
    "renewBefore": "8h",
}


def test_certificate_hash_is_pinned() -> None:
    # Every Secret carries this hash: changing its format re-issues every certificate in every
    # cluster on upgrade. Change this value only on purpose.
    assert parse(**HASH_BASE).certificate_hash() == "c7f87d04e9a7c6cd"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"selector": {"matchLabels": {"app": "other"}}}, id="selector"),
        pytest.param({"serviceAccountName": "payments"}, id="service-account"),
        pytest.param({"secretTemplate": {"labels": {"a": "b"}, "annotations": {"c": "d"}}}, id="secret-template"),
        pytest.param({"dnsNames": ["payments.shop.svc", "PAYMENTS", "payments"]}, id="dns-order-case-duplicates"),
        pytest.param({"usages": ["client", "server"]}, id="usage-order"),
        pytest.param({"privateKey": {}}, id="explicit-vs-default-key"),
        pytest.param({"duration": "1440m", "renewBefore": "480m"}, id="same-durations-spelt-differently"),
        pytest.param({"delivery": "PodCertificate"}, id="delivery"),
    ],
)
def test_certificate_hash_ignores(change: dict[str, Any]) -> None:
    assert parse(**{**HASH_BASE, **change}).certificate_hash() == parse(**HASH_BASE).certificate_hash()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"dnsNames": ["payments"]}, id="dns-names"),
        pytest.param({"usages": ["server"]}, id="usages"),
        pytest.param({"privateKey": {"algorithm": "ECDSA", "size": 384}}, id="key-size"),
        pytest.param({"privateKey": {"algorithm": "Ed25519"}}, id="key-algorithm"),
        pytest.param({"duration": "48h"}, id="duration"),
        pytest.param({"renewBefore": "7h"}, id="renew-before"),
    ],
)
def test_certificate_hash_changes_with(change: dict[str, Any]) -> None:
    changed = parse(**{**HASH_BASE, **change}).certificate_hash()
    assert changed != parse(**HASH_BASE).certificate_hash()
    assert len(changed) == 16
    assert int(changed, 16) >= 0


# --- refusals ----------------------------------------------------------------------------------

BAD_SPECS = [
    # Top level.
    pytest.param({"selector": DROP}, "spec.selector", "required", id="selector-missing"),
    pytest.param({"selector": None}, "spec.selector", "required", id="selector-null"),
    pytest.param({"selector": {}}, "spec.selector", "at least one label", id="selector-empty"),
    pytest.param(
        {"dnsname": ["a"]},
        "spec.dnsname",
        "unknown field; allowed fields: selector, serviceAccountName",
        id="unknown-field-typo",
    ),
    pytest.param({"issuerRef": {}}, "spec.issuerRef", "unknown field", id="unknown-field"),
    pytest.param(
        {"selector": DROP, "issuerRef": {}}, "spec.issuerRef", "unknown field", id="unknown-field-reported-first"
    ),
    # serviceAccountName.
    pytest.param({"serviceAccountName": 5}, "spec.serviceAccountName", "not a number", id="sa-int"),
    pytest.param({"serviceAccountName": ["a"]}, "spec.serviceAccountName", "not a list", id="sa-list"),
    pytest.param({"serviceAccountName": ""}, "spec.serviceAccountName", "not a valid service account", id="sa-empty"),
    pytest.param({"serviceAccountName": "Payments"}, "spec.serviceAccountName", "lower-case", id="sa-upper"),
    pytest.param({"serviceAccountName": "pay_ments"}, "spec.serviceAccountName", "not a valid", id="sa-underscore"),
    pytest.param({"serviceAccountName": "a" * 254}, "spec.serviceAccountName", "253", id="sa-long"),
    # dnsNames: types and syntax.
    pytest.param({"dnsNames": "payments"}, "spec.dnsNames", "must be a list of DNS names", id="dns-string"),
    pytest.param({"dnsNames": {"a": "b"}}, "spec.dnsNames", "not a map", id="dns-map"),
    pytest.param({"dnsNames": [1]}, "spec.dnsNames[0]", "must be a DNS name string, not a number", id="dns-int"),
    pytest.param({"dnsNames": ["payments", None]}, "spec.dnsNames[1]", "not null", id="dns-null-item"),
    pytest.param({"dnsNames": ["payments", ["x"]]}, "spec.dnsNames[1]", "not a list", id="dns-list-item"),
    pytest.param({"dnsNames": [f"n{i}" for i in range(101)]}, "spec.dnsNames", "at most 100", id="dns-too-many"),
    pytest.param({"dnsNames": [""]}, "spec.dnsNames[0]", "empty", id="dns-empty"),
    pytest.param({"dnsNames": ["a.*.shop.svc"]}, "spec.dnsNames[0]", "entire left-most label", id="wildcard-middle"),
    pytest.param({"dnsNames": ["**.shop"]}, "spec.dnsNames[0]", "entire left-most label", id="double-wildcard"),
    pytest.param({"dnsNames": ["*shop"]}, "spec.dnsNames[0]", "entire left-most label", id="partial-wildcard"),
    pytest.param({"dnsNames": ["*.*.shop"]}, "spec.dnsNames[0]", "entire left-most label", id="two-wildcards"),
    pytest.param({"dnsNames": ["*"]}, "spec.dnsNames[0]", "followed by a domain", id="bare-wildcard"),
    pytest.param({"dnsNames": ["payments.shop.svc."]}, "spec.dnsNames[0]", "trailing dot", id="trailing-dot"),
    pytest.param({"dnsNames": ["pay_ments"]}, "spec.dnsNames[0]", "letters, digits and '-'", id="underscore"),
    pytest.param({"dnsNames": ["-payments"]}, "spec.dnsNames[0]", "start and end", id="leading-dash"),
    pytest.param({"dnsNames": ["a..shop"]}, "spec.dnsNames[0]", "empty label", id="empty-label"),
    pytest.param({"dnsNames": ["x" * 64]}, "spec.dnsNames[0]", "longer than 63", id="long-label"),
    pytest.param({"dnsNames": [("a" * 60 + ".") * 5]}, "spec.dnsNames[0]", "longer than 253", id="long-name"),
    pytest.param({"dnsNames": ["ok", "10.0.0.1/8"]}, "spec.dnsNames[1]", "not a valid DNS name", id="second-bad"),
    # usages.
    pytest.param({"usages": "server"}, "spec.usages", "must be a list of usages", id="usages-string"),
    pytest.param({"usages": []}, "spec.usages", "at least one usage; allowed: server, client", id="usages-empty"),
    pytest.param({"usages": ["server", "server"]}, "spec.usages[1]", "duplicate usage 'server'", id="usages-dup"),
    pytest.param({"usages": ["Server"]}, "spec.usages[0]", "unknown usage 'Server'", id="usages-case"),
    pytest.param({"usages": ["client", "peer"]}, "spec.usages[1]", "allowed: server, client", id="usages-unknown"),
    pytest.param({"usages": [1]}, "spec.usages[0]", "one of server, client", id="usages-int"),
    # privateKey.
    pytest.param({"privateKey": "ECDSA"}, "spec.privateKey", "must be an object", id="key-string"),
    pytest.param({"privateKey": []}, "spec.privateKey", "not a list", id="key-list"),
    pytest.param({"privateKey": {"bits": 256}}, "spec.privateKey.bits", "unknown field", id="key-unknown-field"),
    pytest.param(
        {"privateKey": {"algorithm": "DSA"}},
        "spec.privateKey.algorithm",
        "unknown algorithm 'DSA'; allowed (case-sensitive): ECDSA, Ed25519, RSA",
        id="algorithm-dsa",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "ecdsa"}}, "spec.privateKey.algorithm", "case-sensitive", id="algorithm-case"
    ),
    pytest.param(
        {"privateKey": {"algorithm": "ED25519"}}, "spec.privateKey.algorithm", "unknown", id="algorithm-upper"
    ),
    pytest.param({"privateKey": {"algorithm": 1}}, "spec.privateKey.algorithm", "not a number", id="algorithm-int"),
    pytest.param(
        {"privateKey": {"algorithm": "ECDSA", "size": 2048}},
        "spec.privateKey.size",
        "ECDSA supports 256 or 384",
        id="ecdsa-2048",
    ),
    pytest.param(
        {"privateKey": {"size": 2048}}, "spec.privateKey.size", "ECDSA supports 256 or 384", id="size-default-ecdsa"
    ),
    pytest.param(
        {"privateKey": {"algorithm": "RSA", "size": 1024}},
        "spec.privateKey.size",
        "RSA supports 2048, 3072 or 4096",
        id="rsa-1024",
    ),
    pytest.param(
        {"privateKey": {"algorithm": "RSA", "size": 256}}, "spec.privateKey.size", "RSA does not support", id="rsa-256"
    ),
    pytest.param(
        {"privateKey": {"algorithm": "Ed25519", "size": 256}},
        "spec.privateKey.size",
        "Ed25519 keys have no size",
        id="ed25519-with-size",
    ),
    pytest.param({"privateKey": {"size": "256"}}, "spec.privateKey.size", "must be an integer", id="size-string"),
    pytest.param({"privateKey": {"size": 256.0}}, "spec.privateKey.size", "must be an integer", id="size-float"),
    pytest.param({"privateKey": {"size": True}}, "spec.privateKey.size", "must be an integer", id="size-bool"),
    # duration.
    pytest.param({"duration": ""}, "spec.duration", "empty duration", id="duration-empty"),
    pytest.param({"duration": "0h"}, "spec.duration", "out of range; allowed: 1h..8760h", id="duration-zero"),
    pytest.param({"duration": "-1h"}, "spec.duration", "invalid duration '-1h'", id="duration-negative"),
    pytest.param({"duration": "1d"}, "spec.duration", "no days", id="duration-days"),
    pytest.param({"duration": "abc"}, "spec.duration", "such as '24h'", id="duration-garbage"),
    pytest.param({"duration": "30m"}, "spec.duration", "'30m' is out of range", id="duration-below-minimum"),
    pytest.param({"duration": "59m59s"}, "spec.duration", "out of range", id="duration-just-below-minimum"),
    pytest.param({"duration": "8761h"}, "spec.duration", "allowed: 1h..8760h", id="duration-above-maximum"),
    pytest.param({"duration": 24}, "spec.duration", "duration string such as '24h', not a number", id="duration-int"),
    pytest.param({"duration": ["24h"]}, "spec.duration", "not a list", id="duration-list"),
    # renewBefore.
    pytest.param({"renewBefore": "24h"}, "spec.renewBefore", "shorter than the duration (24h)", id="renew-equal"),
    pytest.param(
        {"duration": "2h", "renewBefore": "2h"}, "spec.renewBefore", "shorter than the duration (2h)", id="renew-eq-2h"
    ),
    pytest.param({"duration": "2h", "renewBefore": "3h"}, "spec.renewBefore", "shorter", id="renew-longer"),
    pytest.param({"renewBefore": "30s"}, "spec.renewBefore", "at least 1m", id="renew-too-short"),
    pytest.param({"renewBefore": "0s"}, "spec.renewBefore", "at least 1m", id="renew-zero"),
    pytest.param({"renewBefore": "-1h"}, "spec.renewBefore", "invalid duration", id="renew-negative"),
    pytest.param({"renewBefore": "8x"}, "spec.renewBefore", "invalid duration '8x'", id="renew-garbage"),
    pytest.param({"renewBefore": 8}, "spec.renewBefore", "not a number", id="renew-int"),
    # secretTemplate.
    pytest.param({"secretTemplate": "x"}, "spec.secretTemplate", "must be an object", id="template-string"),
    pytest.param({"secretTemplate": {"extra": {}}}, "spec.secretTemplate.extra", "unknown field", id="template-extra"),
    pytest.param(
        {"secretTemplate": {"labels": ["a"]}}, "spec.secretTemplate.labels", "must be a map", id="labels-list"
    ),
    pytest.param(
        {"secretTemplate": {"annotations": "a=b"}}, "spec.secretTemplate.annotations", "not a string", id="annots-str"
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"app.kubernetes.io/managed-by": "me"}}},
        "spec.secretTemplate.labels[app.kubernetes.io/managed-by]",
        "reserved for the operator",
        id="reserved-managed-by",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"mtls.dev/identity": "x"}}},
        "spec.secretTemplate.labels[mtls.dev/identity]",
        "reserved",
        id="reserved-label",
    ),
    pytest.param(
        {"secretTemplate": {"annotations": {"mtls.dev/spec-hash": "x"}}},
        "spec.secretTemplate.annotations[mtls.dev/spec-hash]",
        "choose another key",
        id="reserved-annotation",
    ),
    pytest.param(
        {"secretTemplate": {"annotations": {"x.mtls.dev/anything": "x"}}},
        "spec.secretTemplate.annotations[x.mtls.dev/anything]",
        "reserved",
        id="reserved-subdomain",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"team": 5}}},
        "spec.secretTemplate.labels[team]",
        "must be a string",
        id="lbl-int",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"team": "a b"}}},
        "spec.secretTemplate.labels[team]",
        "invalid value",
        id="lbl-val",
    ),
    pytest.param(
        {"secretTemplate": {"labels": {"bad key": "a"}}},
        "spec.secretTemplate.labels[bad key]",
        "invalid key",
        id="lbl-key",
    ),
    pytest.param(
        {"secretTemplate": {"annotations": {"bad key!": "x"}}},
        "spec.secretTemplate.annotations[bad key!]",
        "invalid key",
        id="annotation-key",
    ),
    pytest.param(
        {"secretTemplate": {"annotations": {"note": ["x"]}}},
        "spec.secretTemplate.annotations[note]",
        "must be a string",
        id="annotation-value-list",
    ),
    pytest.param({"delivery": "podcertificate"}, "spec.delivery", "allowed (case-sensitive): Secret, PodCertificate",
                 id="delivery-case"),
    pytest.param({"delivery": 1}, "spec.delivery", "must be one of Secret, PodCertificate", id="delivery-type"),
    pytest.param({"delivery": "PodCertificate", "privateKey": {"algorithm": "RSA"}}, "spec.privateKey",
                 "RSA-2048 keys cannot be delivered as PodCertificate", id="delivery-rsa-2048"),
    pytest.param({"delivery": "PodCertificate",
                  "keystores": {"pkcs12": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}}}},
                 "spec.keystores", "with delivery: PodCertificate there is none", id="delivery-keystores"),
]


@pytest.mark.parametrize(("fields", "field", "phrase"), BAD_SPECS)
def test_parse_identity_spec_refuses(fields: dict[str, Any], field: str, phrase: str) -> None:
    raw = {key: value for key, value in {"selector": SELECTOR, **fields}.items() if value is not DROP}
    with pytest.raises(SpecError) as caught:
        parse_identity_spec(raw, namespace=NS)
    assert type(caught.value) is SpecError
    assert caught.value.field == field
    assert phrase in caught.value.message
    assert "\n" not in str(caught.value)


def test_spec_must_be_a_mapping() -> None:
    with pytest.raises(SpecError) as caught:
        parse_identity_spec([], namespace=NS)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.message) == ("spec", "must be an object, not a list")


FOREIGN_DNS_NAMES = [
    pytest.param(["db.other.svc"], 0, id="other-namespace"),
    pytest.param(["db.other"], 0, id="other-namespace-short"),
    pytest.param(["db.other.svc.cluster.local"], 0, id="other-namespace-fqdn"),
    pytest.param(["*.svc"], 0, id="wildcard-svc"),
    pytest.param(["*.cluster.local"], 0, id="wildcard-cluster-domain"),
    pytest.param(["svc"], 0, id="bare-svc"),
    pytest.param(["shop.svc"], 0, id="bare-namespace-domain"),
    pytest.param(["a.b.c.shop.svc"], 0, id="extra-label"),
    pytest.param(["localhost"], 0, id="localhost"),
    pytest.param(["payments.shop"], 0, id="namespace-is-a-public-suffix"),
    pytest.param(["mtls-operator-webhook.mtls-system.svc"], 0, id="the-operator-webhook"),
    pytest.param(["example.com"], 0, id="public-name"),
    pytest.param(["payments.shop.svc.example.com"], 0, id="other-cluster-domain"),
    pytest.param(["payments", "payments.shop.svc", "db.other.svc"], 2, id="index-is-the-users"),
    pytest.param(["payments", "payments", "evil.com"], 2, id="index-counts-duplicates"),
]


@pytest.mark.parametrize(("names", "index"), FOREIGN_DNS_NAMES)
def test_foreign_dns_names_are_a_policy_error(names: list[str], index: int) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(dnsNames=names)
    assert caught.value.field == f"spec.dnsNames[{index}]"
    assert f"'{names[index]}' is not allowed for an identity in namespace 'shop'" in caught.value.message


def test_a_policy_refusal_carries_the_spec_without_the_refused_names() -> None:
    with pytest.raises(PolicyRefusal) as caught:
        parse(dnsNames=["payments", "db.other.svc", "payments.shop.svc", "localhost", "db.other.svc"], duration="48h")
    refusal = caught.value
    assert isinstance(refusal, PolicyError)
    assert refusal.field == "spec.dnsNames[1]"
    assert refusal.allowed == parse(dnsNames=["payments", "payments.shop.svc"], duration="48h")
    assert refusal.refused_dns_names == ("db.other.svc", "localhost")
    assert not refusal.capped
    assert str(refusal) == (
        "spec.dnsNames[1]: 'db.other.svc' is not allowed for an identity in namespace 'shop': it names namespace "
        "'other': an identity may only name its own namespace's Services; "
        "spec.dnsNames[3]: 'localhost' is not allowed for an identity in namespace 'shop': 'localhost' is a "
        "special-use domain name (RFC 6761 and later), never a Service; "
        "spec.dnsNames[4]: 'db.other.svc' is not allowed for an identity in namespace 'shop': it names namespace "
        "'other': an identity may only name its own namespace's Services; "
        "allowed are <service>.shop.svc[.cluster.local] and the headless pod names "
        "<host>.<service>.shop.svc[.cluster.local] (the left-most label may be '*'), and short names "
        "(<service>, <service>.shop) that are not public or special-use names"
    )
    assert refusal.outcome == "certificates are issued without 'db.other.svc', 'localhost'"


def test_a_policy_message_lists_at_most_five_names() -> None:
    with pytest.raises(PolicyRefusal) as caught:
        parse(dnsNames=[f"db{i}.other.svc" for i in range(8)])
    assert "spec.dnsNames[4]: 'db4.other.svc'" in caught.value.message
    assert "db5.other.svc" not in caught.value.message
    assert "; 3 more DNS names are refused; allowed are" in caught.value.message
    assert caught.value.outcome.endswith("'db4.other.svc' and 3 more")
    assert caught.value.allowed.dns_names == ()


def test_short_names_refused_when_turned_off() -> None:
    raw = {"selector": SELECTOR, "dnsNames": ["payments", "payments.shop.svc"]}
    with pytest.raises(PolicyRefusal, match=r"MTLS_ALLOW_SHORT_DNS_NAMES=false") as caught:
        parse_identity_spec(raw, namespace=NS, allow_short_dns_names=False)
    assert caught.value.allowed.dns_names == ("payments.shop.svc",)


@pytest.mark.parametrize(
    ("fields", "duration", "renew_before"),
    [
        pytest.param({"duration": "8760h"}, 720 * H, 240 * H, id="default-renew-before-of-the-maximum"),
        pytest.param({"duration": "1000h", "renewBefore": "100h"}, 720 * H, 100 * H, id="renew-before-kept"),
        pytest.param({"duration": "1000h", "renewBefore": "800h"}, 720 * H, 240 * H, id="renew-before-too-long"),
    ],
)
def test_a_duration_above_the_maximum_is_issued_at_the_maximum(
    fields: dict[str, Any], duration: timedelta, renew_before: timedelta
) -> None:
    with pytest.raises(PolicyRefusal) as caught:
        parse_identity_spec({"selector": SELECTOR, **fields}, namespace=NS, max_duration=720 * H)
    refusal = caught.value
    assert refusal.field == "spec.duration"
    assert refusal.message == (
        f"{fields['duration']} is longer than the maximum the cluster admin allows (720h, MTLS_MAX_DURATION)"
    )
    assert (refusal.allowed.duration, refusal.allowed.renew_before) == (duration, renew_before)
    assert refusal.capped
    assert refusal.outcome == "certificates are issued for 720h"


def test_the_maximum_duration_itself_is_allowed() -> None:
    spec = parse_identity_spec({"selector": SELECTOR, "duration": "720h"}, namespace=NS, max_duration=720 * H)
    assert spec.duration == 720 * H


def test_names_and_duration_refused_together() -> None:
    with pytest.raises(PolicyRefusal) as caught:
        parse_identity_spec(
            {"selector": SELECTOR, "dnsNames": ["localhost"], "duration": "48h"}, namespace=NS, max_duration=24 * H
        )
    assert caught.value.field == "spec.dnsNames[0]"
    assert caught.value.message.endswith("; spec.duration: 48h is longer than the maximum the cluster admin allows "
                                         "(24h, MTLS_MAX_DURATION)")
    assert caught.value.outcome == "certificates are issued without 'localhost' for 24h"
    assert caught.value.allowed.dns_names == ()


def test_policy_is_checked_after_the_rest_of_the_spec() -> None:
    with pytest.raises(SpecError) as caught:
        parse(dnsNames=["db.other.svc"], duration="1d")
    assert caught.value.field == "spec.duration"


WRONG_VALUES: list[Any] = [1, 1.5, True, "x", [], ["x"], {}, {"x": 1}, [1], [{}]]


@pytest.mark.parametrize("name", SPEC_FIELDS)
@pytest.mark.parametrize("value", WRONG_VALUES, ids=[repr(v) for v in WRONG_VALUES])
def test_wrong_types_are_spec_errors_never_crashes(name: str, value: Any) -> None:
    raw: dict[str, Any] = {"selector": SELECTOR, name: value}
    try:
        parse_identity_spec(raw, namespace=NS)
    except SpecError as error:
        field = error.field
    else:
        return
    assert field.startswith(f"spec.{name}")


@pytest.mark.parametrize(
    ("delivery", "expected"),
    [(None, Delivery.SECRET), ("Secret", Delivery.SECRET), ("PodCertificate", Delivery.POD_CERTIFICATE)],
)
def test_delivery(delivery: str | None, expected: Delivery) -> None:
    assert parse(delivery=delivery).delivery is expected


@pytest.mark.parametrize("key", sorted(POD_CERTIFICATE_KEY_TYPES, key=str), ids=str)
def test_every_key_the_kubelet_generates_may_be_delivered_as_pod_certificate(key: KeySpec) -> None:
    raw_key = {"algorithm": str(key.algorithm)} | ({"size": key.size} if key.size else {})
    assert parse(delivery="PodCertificate", privateKey=raw_key).private_key == key
