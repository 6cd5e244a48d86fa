"""Label and field selectors: parsing, matching and the apiserver's error messages."""

from __future__ import annotations

from typing import Any

import pytest

from kube_emulator.selectors import (
    FieldRequirement,
    LabelOperator,
    LabelRequirement,
    SelectorError,
    escape_field_value,
    field_value,
    is_qualified_name,
    is_valid_label_value,
    parse_field_selector,
    parse_label_selector,
    unescape_field_value,
)

LABELS = {"app": "payments", "tier": "backend", "mtls.dev/inject": "true", "replicas": "3", "empty": ""}

# (selector, labels, matches)
LABEL_MATCHES: list[tuple[str | None, dict[str, str] | None, bool]] = [
    (None, LABELS, True),
    ("", LABELS, True),
    ("   ", {}, True),
    ("app=payments", LABELS, True),
    ("app==payments", LABELS, True),
    ("app=orders", LABELS, False),
    ("app!=orders", LABELS, True),
    ("app!=payments", LABELS, False),
    ("missing!=x", LABELS, True),  # != matches objects without the key
    ("missing=x", LABELS, False),
    ("app in (orders,payments)", LABELS, True),
    ("app in (orders)", LABELS, False),
    ("missing in (x)", LABELS, False),
    ("app notin (orders)", LABELS, True),
    ("app notin (payments,orders)", LABELS, False),
    ("missing notin (x)", LABELS, True),  # notin matches objects without the key
    ("app", LABELS, True),
    ("missing", LABELS, False),
    ("!missing", LABELS, True),
    ("!app", LABELS, False),
    ("app=payments,tier=backend", LABELS, True),
    ("app=payments,tier=frontend", LABELS, False),
    (" app = payments , tier in ( backend , x ) , !gone ", LABELS, True),
    ("mtls.dev/inject=true", LABELS, True),
    ("mtls.dev/inject=false", LABELS, False),
    ("empty=", LABELS, True),
    ("empty in ()", LABELS, True),
    ("app=", LABELS, False),
    ("replicas>2", LABELS, True),
    ("replicas>3", LABELS, False),
    ("replicas<4", LABELS, True),
    ("app>1", LABELS, False),  # a non-integer label never compares
    ("missing<4", LABELS, False),
    ("app=payments", None, False),
    ("!app", None, True),
    ("app notin (x)", {}, True),
    ("in in (in)", {"in": "in"}, True),  # keywords are identifiers where a key or value is expected
    ("notin notin (in)", {"notin": "x"}, True),
    ("a in (x,,y)", {"a": ""}, True),
]


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    LABEL_MATCHES,
    ids=[f"{sel!r}-{'match' if exp else 'nomatch'}-{i}" for i, (sel, _, exp) in enumerate(LABEL_MATCHES)],
)
def test_label_selector_matches(selector: str | None, labels: dict[str, str] | None, expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


QNAME_HINT = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_HINT = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

# (selector, exact error message)
LABEL_ERRORS = [
    pytest.param(
        "a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt", id="no-operator"
    ),
    pytest.param("a=b c", "found 'c', expected: ',' or 'end of string'", id="two-values"),
    pytest.param("a,", "found '', expected: identifier after ','", id="trailing-comma"),
    pytest.param(",a", "found ',', expected: !, identifier, or 'end of string'", id="leading-comma"),
    pytest.param("a in (b", "unable to parse requirement: found '', expected: ',' or ')'", id="unclosed-set"),
    pytest.param("a in b", "unable to parse requirement: found 'b' expected: '('", id="set-without-parens"),
    pytest.param("a=(b)", "unable to parse requirement: found '(', expected: identifier", id="paren-value"),
    pytest.param("a=!b", "unable to parse requirement: found '!', expected: identifier", id="bang-value"),
    pytest.param("!a=b", "found '=', expected: ',' or 'end of string'", id="not-exists-with-value"),
    pytest.param("!", "unable to parse requirement: found '', expected: identifier", id="bare-bang"),
    pytest.param(
        "-a", f'unable to parse requirement: <nil>: Invalid value: "-a": name part {QNAME_HINT}', id="bad-key"
    ),
    pytest.param(
        "a=b_", f'unable to parse requirement: values[0][a]: Invalid value: "b_": {VALUE_HINT}', id="bad-value"
    ),
    pytest.param(
        "a in (-x,y_)",
        "unable to parse requirement: ["
        f'values[0][a]: Invalid value: "-x": {VALUE_HINT}, values[1][a]: Invalid value: "y_": {VALUE_HINT}]',
        id="two-bad-values",
    ),
    pytest.param(
        "k>x",
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, "
        "the value must be an integer",
        id="gt-not-integer",
    ),
    pytest.param(
        "a" * 64,
        f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": name part must be no more '
        "than 63 characters",
        id="key-too-long",
    ),
]


@pytest.mark.parametrize(("selector", "message"), LABEL_ERRORS)
def test_label_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_label_selector(selector)
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("selector", "normalized"),
    [
        pytest.param("b=1,a=2", "a=2,b=1", id="sorted-by-key"),
        pytest.param("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()", id="apimachinery-example"),
        pytest.param(" a  in(x) , !b ", "a in (x),!b", id="whitespace"),
        pytest.param("a==1,b!=2,c>3,d<4", "a==1,b!=2,c>3,d<4", id="operators"),
    ],
)
def test_label_selector_string(selector: str, normalized: str) -> None:
    parsed = parse_label_selector(selector)
    assert str(parsed) == normalized
    assert parse_label_selector(str(parsed)) == parsed


def test_label_selector_structure() -> None:
    parsed = parse_label_selector("tier notin (b,a),app")
    assert parsed.requirements == (
        LabelRequirement("app", LabelOperator.EXISTS),
        LabelRequirement("tier", LabelOperator.NOT_IN, ("a", "b")),
    )
    assert not parsed.empty
    assert parse_label_selector("").empty
    assert parse_label_selector(None).empty


@pytest.mark.parametrize(
    ("selector", "key", "value"),
    [
        pytest.param("a=1,b=2", "b", "2", id="equals"),
        pytest.param("a in (1)", "a", "1", id="in-one"),
        pytest.param("a in (1,2)", "a", None, id="in-two"),
        pytest.param("a!=1", "a", None, id="not-equals"),
        pytest.param("a=1", "b", None, id="other-key"),
    ],
)
def test_label_requires_exact_match(selector: str, key: str, value: str | None) -> None:
    assert parse_label_selector(selector).requires_exact_match(key) == value


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        pytest.param("app", True, id="simple"),
        pytest.param("app.kubernetes.io/name", True, id="prefixed"),
        pytest.param("A_b.c-1", True, id="mixed"),
        pytest.param("/name", False, id="empty-prefix"),
        pytest.param("Example.com/name", False, id="uppercase-prefix"),
        pytest.param("a/", False, id="empty-name"),
        pytest.param("a/b/c", False, id="two-slashes"),
        pytest.param("_a", False, id="leading-underscore"),
        pytest.param("a" * 63, True, id="63-chars"),
        pytest.param("a" * 64, False, id="64-chars"),
    ],
)
def test_is_qualified_name(key: str, valid: bool) -> None:
    assert (is_qualified_name(key) == []) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param("", True, id="empty"),
        pytest.param("v1.2_3-x", True, id="mixed"),
        pytest.param("-x", False, id="leading-dash"),
        pytest.param("a b", False, id="space"),
        pytest.param("x" * 64, False, id="too-long"),
    ],
)
def test_is_valid_label_value(value: str, valid: bool) -> None:
    assert (is_valid_label_value(value) == []) is valid


# --- field selectors --------------------------------------------------------------------------

POD = {
    "kind": "Pod",
    "metadata": {"name": "web-0", "namespace": "shop"},
    "spec": {"nodeName": "node-1", "hostNetwork": False, "priority": 10},
    "status": {"phase": "Running"},
}
EVENT = {
    "kind": "Event",
    "metadata": {"name": "web-0.1", "namespace": "shop"},
    "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "shop", "uid": "u-1"},
    "reason": "Issued",
    "type": "Normal",
    "source": {"component": "mtls-operator"},
}
SECRET_WITH_COMMA = {"metadata": {"name": "a,b=c\\d"}, "type": "kubernetes.io/tls"}

# (selector, object, matches)
FIELD_MATCHES: list[tuple[str | None, dict[str, Any], bool]] = [
    (None, POD, True),
    ("", POD, True),
    ("metadata.name=web-0", POD, True),
    ("metadata.name==web-0", POD, True),
    ("metadata.name=web-1", POD, False),
    ("metadata.name!=web-1", POD, True),
    ("metadata.name=web-0,metadata.namespace!=shop", POD, False),
    ("metadata.name=web-0,metadata.namespace=shop", POD, True),
    ("spec.nodeName=node-1", POD, True),
    ("spec.nodeName=", {"kind": "Pod", "spec": {}}, True),  # a missing field is ""
    ("spec.nodeName!=", POD, True),
    ("status.phase=Running", POD, True),
    ("spec.hostNetwork=false", POD, True),  # booleans compare as true/false
    ("spec.priority=10", POD, True),
    ("involvedObject.name=web-0,involvedObject.kind=Pod", EVENT, True),
    ("involvedObject.uid=u-1", EVENT, True),
    ("involvedObject.namespace=other", EVENT, False),
    ("reason=Issued,type=Normal", EVENT, True),
    ("source=mtls-operator", EVENT, True),  # Events map "source" to source.component
    ("type=kubernetes.io/tls", SECRET_WITH_COMMA, True),
    ("metadata.name=a\\,b\\=c\\\\d", SECRET_WITH_COMMA, True),
    (",metadata.name=web-0,,", POD, True),
]


@pytest.mark.parametrize(
    ("selector", "obj", "expected"),
    FIELD_MATCHES,
    ids=[f"{sel!r}-{'match' if exp else 'nomatch'}-{i}" for i, (sel, _, exp) in enumerate(FIELD_MATCHES)],
)
def test_field_selector_matches(selector: str | None, obj: dict[str, Any], expected: bool) -> None:
    assert parse_field_selector(selector).matches(obj) is expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        pytest.param(
            "metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'", id="no-op"
        ),
        pytest.param("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'", id="second-term"),
        pytest.param("a=b=c", "invalid field selector: unescaped character in value: =", id="unescaped-equals"),
        pytest.param("a=b\\", "invalid field selector: invalid escape sequence: \\", id="trailing-backslash"),
        pytest.param("a=\\x", "invalid field selector: invalid escape sequence: \\x", id="unknown-escape"),
    ],
)
def test_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_field_selector(selector)
    assert str(err.value) == message


def test_field_selector_structure() -> None:
    parsed = parse_field_selector("metadata.namespace!=kube-system,metadata.name==x")
    assert parsed.requirements == (
        FieldRequirement("metadata.name", "==", "x"),
        FieldRequirement("metadata.namespace", "!=", "kube-system"),
    )
    assert parsed.fields == frozenset({"metadata.name", "metadata.namespace"})
    assert parsed.requires_exact_match("metadata.name") == "x"
    assert parsed.requires_exact_match("metadata.namespace") is None
    assert str(parsed) == "metadata.name==x,metadata.namespace!=kube-system"
    assert parse_field_selector(None).empty
    assert not parsed.empty


@pytest.mark.parametrize(
    ("obj", "path", "value"),
    [
        pytest.param({"a": {"b": "x"}}, "a.b", "x", id="string"),
        pytest.param({"a": {"b": True}}, "a.b", "true", id="true"),
        pytest.param({"a": {"b": False}}, "a.b", "false", id="false"),
        pytest.param({"a": 3}, "a", "3", id="int"),
        pytest.param({"a": 3.0}, "a", "3", id="integral-float"),
        pytest.param({"a": None}, "a", "", id="null"),
        pytest.param({}, "a.b", "", id="missing"),
        pytest.param({"a": "x"}, "a.b", "", id="through-scalar"),
    ],
)
def test_field_value(obj: dict[str, Any], path: str, value: str) -> None:
    assert field_value(obj, path) == value


@pytest.mark.parametrize("value", ["plain", "a,b", "a=b", "a\\b", "\\,=", ""])
def test_field_value_escaping_round_trips(value: str) -> None:
    assert unescape_field_value(escape_field_value(value)) == value
