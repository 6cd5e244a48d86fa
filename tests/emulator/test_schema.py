"""Structural schemas: pruning, defaulting and validation as kube-apiserver does them for CRs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_emulator.schema import (
    FieldError,
    StructuralSchema,
    format_go_float,
    go_json,
    invalid_status,
)
from mtls_operator.rules.spec import DURATION_PATTERN

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "mtlsidentity.yaml"

S = "FieldValueInvalid"
T = "FieldValueTypeInvalid"
R = "FieldValueRequired"
N = "FieldValueNotSupported"
L = "FieldValueTooLong"
M = "FieldValueTooMany"
D = "FieldValueDuplicate"


def obj(spec: Any = None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"apiVersion": "x.dev/v1", "kind": "Thing", "metadata": {"name": "t"}}
    if spec is not None:
        result["spec"] = spec
    result.update(extra)
    return result


def root(spec_schema: dict[str, Any], **props: Any) -> dict[str, Any]:
    """A whole-object schema whose ``spec`` is ``spec_schema``."""
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            **props,
        },
    }


# --- pruning ----------------------------------------------------------------------------------

PRUNE_CASES = [
    pytest.param(
        root({"type": "object", "properties": {"a": {"type": "string"}}}),
        obj({"a": "x", "b": "y"}, junk=1),
        obj({"a": "x"}),
        id="unknown-fields-dropped-at-every-level",
    ),
    pytest.param(
        {"type": "object", "properties": {"spec": {"type": "object"}}},
        {"apiVersion": "v", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}, "whatever": 1}},
        {"apiVersion": "v", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}, "whatever": 1}},
        id="root-meta-fields-untouched-even-undeclared",
    ),
    pytest.param(
        root({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
        obj({"anything": {"goes": [1, {"x": 2}]}}),
        obj({"anything": {"goes": [1, {"x": 2}]}}),
        id="preserve-unknown-fields",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}},
            }
        ),
        obj({"free": {"x": 1}, "known": {"a": "1", "b": "2"}}),
        obj({"free": {"x": 1}, "known": {"a": "1"}}),
        id="preserve-unknown-still-prunes-known-properties",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "nested": {
                        "type": "object",
                        "additionalProperties": {"type": "object", "properties": {"keep": {"type": "integer"}}},
                    },
                },
            }
        ),
        obj({"labels": {"a": "1", "b": "2"}, "nested": {"k": {"keep": 1, "drop": 2}}}),
        obj({"labels": {"a": "1", "b": "2"}, "nested": {"k": {"keep": 1}}}),
        id="additional-properties-maps",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "properties": {
                    "list": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    }
                },
            }
        ),
        obj({"list": [{"name": "a", "x": 1}, {"y": 2}]}),
        obj({"list": [{"name": "a"}, {}]}),
        id="array-items",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "properties": {
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": True,
                        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    }
                },
            }
        ),
        obj(
            {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"n": 1}, "spec": {"a": "1", "b": 2}, "z": 1}}
        ),
        obj({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"n": 1}, "spec": {"a": "1"}}}),
        id="embedded-resource-keeps-its-meta-fields",
    ),
    pytest.param(
        root({"type": "object", "properties": {"a": {"type": "string"}}}),
        obj({"a": {"deep": "object"}}),
        obj({"a": {}}),
        id="object-where-a-scalar-is-declared-is-emptied",
    ),
]


@pytest.mark.parametrize(("schema", "given", "expected"), PRUNE_CASES)
def test_prune(schema: dict[str, Any], given: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(given)
    assert StructuralSchema(schema).prune(given) == expected
    assert given == before  # a copy, never in place


# --- defaulting -------------------------------------------------------------------------------

KEY_SCHEMA = {
    "type": "object",
    "default": {},
    "properties": {
        "algorithm": {"type": "string", "default": "ECDSA"},
        "size": {"type": "integer"},
    },
}

DEFAULT_CASES = [
    pytest.param(
        root({"type": "object", "properties": {"key": KEY_SCHEMA}}),
        obj({}),
        obj({"key": {"algorithm": "ECDSA"}}),
        id="defaults-apply-inside-defaulted-objects",
    ),
    pytest.param(
        root({"type": "object", "properties": {"key": KEY_SCHEMA}}),
        obj({"key": {"algorithm": "RSA", "size": 2048}}),
        obj({"key": {"algorithm": "RSA", "size": 2048}}),
        id="present-values-kept",
    ),
    pytest.param(
        root({"type": "object", "properties": {"usages": {"type": "array", "default": ["server", "client"]}}}),
        obj({}),
        obj({"usages": ["server", "client"]}),
        id="array-default",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "properties": {"inner": {"type": "object", "properties": {"x": {"type": "string", "default": "d"}}}},
            }
        ),
        obj({}),
        obj({}),
        id="nested-default-needs-the-parent",
    ),
    pytest.param(
        root({"type": "object", "properties": {"a": {"type": "string", "default": "d"}}}),
        obj(None),
        obj(None),
        id="absent-spec-not-created",
    ),
    pytest.param(
        root({"type": "object", "properties": {"a": {"type": "string", "default": "d"}, "b": {"type": "string"}}}),
        obj({"a": None, "b": None}),
        obj({"a": "d"}),
        id="non-nullable-nulls-defaulted-or-dropped",
    ),
    pytest.param(
        root({"type": "object", "properties": {"a": {"type": "string", "nullable": True, "default": "d"}}}),
        obj({"a": None}),
        obj({"a": None}),
        id="nullable-null-kept",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "properties": {
                    "ports": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"protocol": {"type": "string", "default": "TCP"}},
                        },
                    }
                },
            }
        ),
        obj({"ports": [{}, {"protocol": "UDP"}]}),
        obj({"ports": [{"protocol": "TCP"}, {"protocol": "UDP"}]}),
        id="array-items",
    ),
    pytest.param(
        root(
            {
                "type": "object",
                "properties": {
                    "m": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"weight": {"type": "integer", "default": 1}},
                        },
                    }
                },
            }
        ),
        obj({"m": {"a": {}, "b": {"weight": 5}}}),
        obj({"m": {"a": {"weight": 1}, "b": {"weight": 5}}}),
        id="additional-properties-values",
    ),
]


@pytest.mark.parametrize(("schema", "given", "expected"), DEFAULT_CASES)
def test_apply_defaults(schema: dict[str, Any], given: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(given)
    result = StructuralSchema(schema).apply_defaults(given)
    assert result == expected
    assert given == before


def test_defaults_are_deep_copies() -> None:
    schema = root({"type": "object", "properties": {"l": {"type": "array", "default": [{"a": 1}]}}})
    structural = StructuralSchema(schema)
    first = structural.apply_defaults(obj({}))
    first["spec"]["l"][0]["a"] = 99
    assert structural.apply_defaults(obj({}))["spec"]["l"] == [{"a": 1}]
    assert schema["properties"]["spec"]["properties"]["l"]["default"] == [{"a": 1}]


# --- validation -------------------------------------------------------------------------------

E = tuple[str, str, str]

VALIDATE_CASES: list[Any] = [
    pytest.param({"type": "string"}, "x", [], id="string-ok"),
    pytest.param(
        {"type": "string"},
        5,
        [("spec", T, 'Invalid value: "integer": spec in body must be of type string: "integer"')],
        id="string-got-integer",
    ),
    pytest.param(
        {"type": "integer"},
        True,
        [("spec", T, 'Invalid value: "boolean": spec in body must be of type integer: "boolean"')],
        id="integer-rejects-bool",
    ),
    pytest.param(
        {"type": "integer"},
        1.5,
        [("spec", T, 'Invalid value: "number": spec in body must be of type integer: "number"')],
        id="integer-rejects-fraction",
    ),
    pytest.param({"type": "integer"}, 2.0, [], id="integer-accepts-integral-float"),
    pytest.param({"type": "number"}, 2, [], id="number-accepts-integer"),
    pytest.param({"type": "boolean"}, False, [], id="boolean"),
    pytest.param(
        {"type": "boolean"},
        "true",
        [("spec", T, 'Invalid value: "string": spec in body must be of type boolean: "string"')],
        id="boolean-got-string",
    ),
    pytest.param(
        {"type": "object"},
        [],
        [("spec", T, 'Invalid value: "array": spec in body must be of type object: "array"')],
        id="object-got-array",
    ),
    pytest.param(
        {"type": "array"},
        {},
        [("spec", T, 'Invalid value: "object": spec in body must be of type array: "object"')],
        id="array-got-object",
    ),
    pytest.param(
        {"type": "string"},
        None,
        [("spec", T, 'Invalid value: "null": spec in body must be of type string: "null"')],
        id="null-not-nullable",
    ),
    pytest.param({"type": "string", "nullable": True}, None, [], id="null-nullable"),
    pytest.param({"x-kubernetes-int-or-string": True}, 5, [], id="int-or-string-int"),
    pytest.param({"x-kubernetes-int-or-string": True}, "25%", [], id="int-or-string-string"),
    pytest.param(
        {"x-kubernetes-int-or-string": True},
        1.5,
        [("spec", T, 'Invalid value: "number": spec in body must be of type integer,string: "number"')],
        id="int-or-string-float",
    ),
    pytest.param({"x-kubernetes-preserve-unknown-fields": True}, {"a": [1]}, [], id="untyped-preserve"),
    pytest.param(
        {"type": "string", "enum": ["ECDSA", "Ed25519", "RSA"]},
        "DSA",
        [("spec", N, 'Unsupported value: "DSA": supported values: "ECDSA", "Ed25519", "RSA"')],
        id="enum-string",
    ),
    pytest.param(
        {"type": "integer", "enum": [256, 384]},
        512,
        [("spec", N, 'Unsupported value: 512: supported values: "256", "384"')],
        id="enum-integer",
    ),
    pytest.param({"type": "integer", "enum": [256.0, 384]}, 256, [], id="enum-number-equality"),
    pytest.param(
        {"type": "string", "enum": ["a"]},
        True,
        [
            ("spec", T, 'Invalid value: "boolean": spec in body must be of type string: "boolean"'),
            ("spec", N, 'Unsupported value: true: supported values: "a"'),
        ],
        id="enum-and-type-both-reported",
    ),
    pytest.param(
        {"type": "string", "pattern": "^[a-z]+$"},
        "Abc",
        [("spec", S, "Invalid value: \"Abc\": spec in body should match '^[a-z]+$'")],
        id="pattern",
    ),
    pytest.param({"type": "string", "pattern": "[0-9]"}, "a1b", [], id="pattern-is-a-search"),
    pytest.param(
        {"type": "string", "minLength": 2},
        "a",
        [("spec", S, 'Invalid value: "a": spec in body should be at least 2 chars long')],
        id="min-length",
    ),
    pytest.param(
        {"type": "string", "maxLength": 3},
        "abcd",
        [("spec", L, "Too long: may not be more than 3 bytes")],
        id="max-length",
    ),
    pytest.param({"type": "string", "maxLength": 3}, "äöü", [], id="max-length-counts-characters"),
    pytest.param(
        {"type": "string", "maxLength": 3, "pattern": "^x$"},
        "abcd",
        [("spec", L, "Too long: may not be more than 3 bytes")],
        id="string-checks-stop-at-first",
    ),
    pytest.param(
        {"type": "integer", "minimum": 1, "maximum": 10},
        0,
        [("spec", S, "Invalid value: 0: spec in body should be greater than or equal to 1")],
        id="minimum",
    ),
    pytest.param(
        {"type": "integer", "maximum": 10},
        11,
        [("spec", S, "Invalid value: 11: spec in body should be less than or equal to 10")],
        id="maximum",
    ),
    pytest.param(
        {"type": "integer", "minimum": 1, "exclusiveMinimum": True},
        1,
        [("spec", S, "Invalid value: 1: spec in body should be greater than 1")],
        id="exclusive-minimum",
    ),
    pytest.param(
        {"type": "number", "maximum": 1.5, "exclusiveMaximum": True},
        1.5,
        [("spec", S, "Invalid value: 1.5: spec in body should be less than 1.5")],
        id="exclusive-maximum",
    ),
    pytest.param(
        {"type": "number", "maximum": 1000000},
        2e6,
        [("spec", S, "Invalid value: 2e+06: spec in body should be less than or equal to 1e+06")],
        id="float-formatting-like-go",
    ),
    pytest.param(
        {"type": "integer", "multipleOf": 5},
        12,
        [("spec", S, "Invalid value: 12: spec in body should be a multiple of 5")],
        id="multiple-of",
    ),
    pytest.param(
        {"type": "array", "minItems": 1},
        [],
        [("spec", S, "Invalid value: 0: spec in body should have at least 1 items")],
        id="min-items",
    ),
    pytest.param(
        {"type": "array", "maxItems": 2},
        [1, 2, 3],
        [("spec", M, "Too many: 3: must have at most 2 items")],
        id="max-items",
    ),
    pytest.param(
        {"type": "array", "uniqueItems": True},
        [{"a": 1}, {"a": 2}, {"a": 1}],
        [("spec", S, 'Invalid value: "": spec in body shouldn\'t contain duplicates')],
        id="unique-items",
    ),
    pytest.param({"type": "array", "uniqueItems": True}, [1, 1.0], [], id="unique-items-int-and-float-differ"),
    pytest.param({"type": "string", "format": "int32"}, "abc", [], id="unsupported-format-stripped"),
    pytest.param(
        {"type": "string", "format": "uuid"},
        "not-a-uuid",
        [("spec", T, 'Invalid value: "not-a-uuid": spec in body must be of type uuid: "not-a-uuid"')],
        id="uuid",
    ),
    pytest.param(
        {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        ["a", "b", "a", "a", "b"],
        [("spec[2]", D, 'Duplicate value: "a"'), ("spec[4]", D, 'Duplicate value: "b"')],
        id="list-type-set",
    ),
    pytest.param(
        {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string"}}},
        },
        [{"type": "Ready"}, {"type": "Synced"}, {"type": "Ready"}],
        [("spec[2]", D, 'Duplicate value: {"type":"Ready"}')],
        id="list-type-map-one-key",
    ),
    pytest.param(
        {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["port", "protocol"],
            "items": {"type": "object"},
        },
        [{"port": 80, "protocol": "TCP"}, {"port": 80, "protocol": "UDP"}, {"protocol": "TCP", "port": 80}],
        [("spec[2]", D, 'Duplicate value: {"port":80,"protocol":"TCP"}')],
        id="list-type-map-two-keys",
    ),
    pytest.param(
        {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]},
        [{"k": 1}, "x"],
        [("spec[1]", S, 'Invalid value: "x": must be an object for an array of list-type map')],
        id="list-type-map-needs-objects",
    ),
    pytest.param(
        {"type": "array", "x-kubernetes-list-type": "atomic", "items": {"type": "string"}},
        ["a", "a"],
        [],
        id="list-type-atomic-allows-duplicates",
    ),
    pytest.param(
        {"type": "object", "minProperties": 1, "required": ["a"]},
        {},
        [("spec", S, "Invalid value: 0: spec in body should have at least 1 properties")],
        id="min-properties-stops-object-checks",
    ),
    pytest.param(
        {"type": "object", "maxProperties": 1},
        {"a": 1, "b": 2},
        [("spec", M, "Too many: 2: must have at most 1 item")],
        id="max-properties",
    ),
    pytest.param(
        {"type": "object", "required": ["b", "a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
        {},
        [("spec.b", R, "Required value"), ("spec.a", R, "Required value")],
        id="required-in-declared-order",
    ),
    pytest.param(
        {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}},
        {"b": "long value", "a": 1},
        [
            ("spec.a", T, 'Invalid value: "integer": spec.a in body must be of type string: "integer"'),
            ("spec.b", L, "Too long: may not be more than 3 bytes"),
        ],
        id="map-values-use-dotted-paths",
    ),
    pytest.param(
        {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}},
        [{"n": 1}, {"n": -1}],
        [("spec[1].n", S, "Invalid value: -1: spec[1].n in body should be greater than or equal to 0")],
        id="item-paths",
    ),
    pytest.param({"type": "string", "format": "date-time"}, "2026-11-27T08:00:00Z", [], id="date-time-utc"),
    pytest.param({"type": "string", "format": "date-time"}, "2026-11-27T08:00:00.123+02:00", [], id="date-time-offset"),
    pytest.param(
        {"type": "string", "format": "date-time"},
        "2026-11-27",
        [("spec", T, 'Invalid value: "2026-11-27": spec in body must be of type date-time: "2026-11-27"')],
        id="date-time-without-time",
    ),
    pytest.param(
        {"type": "string", "format": "date-time"},
        "2026-02-30T00:00:00Z",
        [
            (
                "spec",
                T,
                'Invalid value: "2026-02-30T00:00:00Z": spec in body must be of type date-time: "2026-02-30T00:00:00Z"',
            )
        ],
        id="date-time-impossible-date",
    ),
    pytest.param(
        {"type": "string", "format": "date-time"},
        5,
        [("spec", T, 'Invalid value: "int64": spec in body must be of type date-time: "int64"')],
        id="formatted-string-got-integer",
    ),
    pytest.param({"type": "integer", "format": "int32"}, 7, [], id="int32"),
    pytest.param({"type": "string", "format": "ipv4"}, "10.0.0.1", [], id="ipv4"),
    pytest.param(
        {"type": "string", "format": "ipv4"},
        "::1",
        [("spec", T, 'Invalid value: "::1": spec in body must be of type ipv4: "::1"')],
        id="ipv4-got-ipv6",
    ),
    pytest.param({"type": "string", "format": "byte"}, "aGVsbG8=", [], id="byte"),
    pytest.param({"type": "string", "format": "no-such-format"}, "anything", [], id="unknown-format-ignored"),
    pytest.param(
        {"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"c": 1},
        [
            ("<nil>", S, 'Invalid value: "": "spec" must validate at least one schema (anyOf)'),
            ("spec.a", R, "Required value"),
        ],
        id="any-of",
    ),
    pytest.param({"type": "object", "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}, {"b": 1}, [], id="any-of-ok"),
    pytest.param(
        {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"a": 1, "b": 2},
        [
            (
                "<nil>",
                S,
                'Invalid value: "": "spec" must validate one and only one schema (oneOf). Found 2 valid alternatives',
            )
        ],
        id="one-of-two-valid",
    ),
    pytest.param(
        {"type": "object", "allOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"a": 1},
        [
            ("spec.b", R, "Required value"),
            ("<nil>", S, 'Invalid value: "": "spec" must validate all the schemas (allOf)'),
        ],
        id="all-of",
    ),
    pytest.param(
        {"type": "object", "not": {"required": ["forbidden"]}},
        {"forbidden": 1},
        [("<nil>", S, 'Invalid value: "": "spec" must not validate the schema (not)')],
        id="not",
    ),
    pytest.param(
        {
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.a == self.b", "message": "never evaluated"}],
            "properties": {"a": {"type": "string"}},
        },
        {"a": "x"},
        [],
        id="cel-rules-ignored",
    ),
]


@pytest.mark.parametrize(("spec_schema", "value", "expected"), VALIDATE_CASES)
def test_validate(spec_schema: dict[str, Any], value: Any, expected: list[E]) -> None:
    errors = StructuralSchema(root(spec_schema)).validate({**obj(), "spec": value})
    assert [(e.path, e.type, e.message) for e in errors] == expected


def test_validate_root_required_and_whole_object_order() -> None:
    schema = root(
        {
            "type": "object",
            "required": ["selector"],
            "properties": {"b": {"type": "string"}, "a": {"type": "integer"}, "selector": {"type": "object"}},
        },
        status={"type": "object", "properties": {"pods": {"type": "integer", "minimum": 0}}},
    )
    schema["required"] = ["spec"]
    structural = StructuralSchema(schema)
    assert structural.validate(obj()) == [FieldError("spec", R, "Required value")]
    errors = structural.validate(obj({"a": "1", "b": 2}, status={"pods": -1}))
    assert [str(e) for e in errors] == [
        'spec.a: Invalid value: "string": spec.a in body must be of type integer: "string"',
        'spec.b: Invalid value: "integer": spec.b in body must be of type string: "integer"',
        "spec.selector: Required value",
        "status.pods: Invalid value: -1: status.pods in body should be greater than or equal to 0",
    ]


def test_process_prunes_then_defaults_then_validates() -> None:
    schema = root(
        {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "n": {"type": "integer"},
            },
        }
    )
    result, errors = StructuralSchema(schema).process(obj({"unknown": 1, "n": "x"}))
    assert result == obj({"mode": "a", "n": "x"})
    assert errors == [
        FieldError("spec.n", T, 'Invalid value: "string": spec.n in body must be of type integer: "string"')
    ]


def test_subschema_validates_with_its_path() -> None:
    schema = root({"type": "object"}, status={"type": "object", "properties": {"pods": {"type": "integer"}}})
    structural = StructuralSchema(schema)
    status = structural.subschema("status")
    assert status is not None
    assert status.path == "status"
    assert status.validate({"pods": "3"}) == [
        FieldError("status.pods", T, 'Invalid value: "string": status.pods in body must be of type integer: "string"')
    ]
    assert status.prune({"pods": 1, "apiVersion": "dropped"}) == {"pods": 1}  # not a root: no meta fields kept
    pods = structural.subschema("status", "pods")
    assert pods is not None
    assert pods.schema == {"type": "integer"}
    assert structural.subschema("status", "nope") is None
    assert structural.subschema("nope") is None


def test_subschema_follows_maps_and_items() -> None:
    schema = root(
        {
            "type": "object",
            "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "boolean"}}}},
            },
        }
    )
    structural = StructuralSchema(schema)
    label = structural.subschema("spec", "labels", "any-key")
    assert label is not None
    assert label.schema == {"type": "string"}
    item_x = structural.subschema("spec", "list", "[]", "x")
    assert item_x is not None
    assert item_x.schema == {"type": "boolean"}


# --- the 422 Status ---------------------------------------------------------------------------


def test_invalid_status() -> None:
    errors = [
        FieldError(
            "spec.duration", T, 'Invalid value: "integer": spec.duration in body must be of type string: "integer"'
        ),
        FieldError("spec.selector", R, "Required value"),
    ]
    status = invalid_status("MTLSIdentity", "mtls.dev", "payments", errors)
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'MTLSIdentity.mtls.dev "payments" is invalid: ['
        'spec.duration: Invalid value: "integer": spec.duration in body must be of type string: "integer", '
        "spec.selector: Required value]",
        "reason": "Invalid",
        "details": {
            "name": "payments",
            "group": "mtls.dev",
            "kind": "MTLSIdentity",
            "causes": [
                {
                    "reason": T,
                    "message": 'Invalid value: "integer": spec.duration in body must be of type string: "integer"',
                    "field": "spec.duration",
                },
                {"reason": R, "message": "Required value", "field": "spec.selector"},
            ],
        },
        "code": 422,
    }


@pytest.mark.parametrize(
    ("kind", "group", "errors", "message"),
    [
        pytest.param(
            "ConfigMap",
            "",
            [FieldError("data", R, "Required value")],
            'ConfigMap "payments" is invalid: data: Required value',
            id="core-group-single-error",
        ),
        pytest.param(
            "Thing",
            "x.dev",
            [FieldError("a", R, "Required value"), FieldError("a", R, "Required value")],
            'Thing.x.dev "payments" is invalid: a: Required value',
            id="duplicates-collapse",
        ),
        pytest.param("Thing", "x.dev", [], 'Thing.x.dev "payments" is invalid', id="no-errors"),
    ],
)
def test_invalid_status_message(kind: str, group: str, errors: list[FieldError], message: str) -> None:
    status = invalid_status(kind, group, "payments", errors)
    assert status["message"] == message
    assert ("group" in status["details"]) is bool(group)


# --- Go formatting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "printed", "marshalled"),
    [
        pytest.param(0.0, "0", "0", id="zero"),
        pytest.param(256.0, "256", "256", id="integral"),
        pytest.param(1.5, "1.5", "1.5", id="fraction"),
        pytest.param(123456.0, "123456", "123456", id="six-digits"),
        pytest.param(1e6, "1e+06", "1000000", id="million"),
        pytest.param(0.0001, "0.0001", "0.0001", id="small"),
        pytest.param(0.00001, "1e-05", "0.00001", id="smaller"),
        pytest.param(1e-7, "1e-07", "1e-7", id="json-exponent"),
        pytest.param(1e21, "1e+21", "1e+21", id="huge"),
        pytest.param(-2.5, "-2.5", "-2.5", id="negative"),
    ],
)
def test_go_float_formatting(value: float, printed: str, marshalled: str) -> None:
    assert format_go_float(value) == printed
    assert go_json(value) == marshalled


def test_go_json_sorts_keys_and_is_compact() -> None:
    assert go_json({"b": [1, 2.0, None, True], "a": {"z": "x"}}) == '{"a":{"z":"x"},"b":[1,2,null,true]}'


# --- the project's CRD ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd_schema() -> StructuralSchema:
    if not CRD_PATH.exists():
        pytest.skip(f"{CRD_PATH} is not there yet")
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return StructuralSchema(version["schema"]["openAPIV3Schema"])


def identity(spec: Any = None, status: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MTLSIdentity",
        "metadata": {"name": "payments", "namespace": "shop", "labels": {"team": "x"}},
    }
    if spec is not None:
        result["spec"] = spec
    if status is not None:
        result["status"] = status
    return result


GOOD_SPEC = {
    "selector": {"matchLabels": {"app": "payments"}},
    "serviceAccountName": "payments",
    "dnsNames": ["payments", "payments.shop.svc", "*.shop.svc.cluster.local"],
    "usages": ["server", "client"],
    "privateKey": {"algorithm": "RSA", "size": 3072},
    "duration": "24h",
    "renewBefore": "8h",
    "secretTemplate": {"labels": {"a": "b"}, "annotations": {"c": "d"}},
}

# The apiserver skips the CRD's CEL rules after a blocking schema error (Required, NotSupported,
# TypeInvalid, TooLong, TooMany) and adds this error; the project CRD has rules.
RULES_NOT_CHECKED = (
    "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

CRD_CASES = [
    pytest.param(GOOD_SPEC, None, [], id="design-example-valid"),
    pytest.param({"selector": {"matchLabels": {"app": "p"}}}, None, [], id="minimal-valid"),
    pytest.param(None, None, ["spec: Required value", RULES_NOT_CHECKED], id="spec-required"),
    pytest.param({}, None, ["spec.selector: Required value", RULES_NOT_CHECKED], id="selector-required"),
    pytest.param(
        {**GOOD_SPEC, "duration": 24},
        None,
        [
            'spec.duration: Invalid value: "integer": spec.duration in body must be of type string: "integer"',
            RULES_NOT_CHECKED,
        ],
        id="duration-wrong-type",
    ),
    pytest.param(
        {**GOOD_SPEC, "privateKey": {"algorithm": "DSA"}},
        None,
        [
            'spec.privateKey.algorithm: Unsupported value: "DSA": supported values: "ECDSA", "Ed25519", "RSA"',
            RULES_NOT_CHECKED,
        ],
        id="bad-algorithm",
    ),
    pytest.param(
        {**GOOD_SPEC, "privateKey": {"size": 1024}},
        None,
        [
            'spec.privateKey.size: Unsupported value: 1024: supported values: "256", "384", "2048", "3072", "4096"',
            RULES_NOT_CHECKED,
        ],
        id="bad-key-size",
    ),
    pytest.param(
        {**GOOD_SPEC, "usages": ["server", "server"]},
        None,
        ['spec.usages[1]: Duplicate value: "server"'],
        id="usages-is-a-set",
    ),
    pytest.param(
        {**GOOD_SPEC, "usages": []},
        None,
        ["spec.usages: Invalid value: 0: spec.usages in body should have at least 1 items"],
        id="usages-empty",
    ),
    pytest.param(
        {**GOOD_SPEC, "dnsNames": ["ok", "not ok"]},
        None,
        [
            'spec.dnsNames[1]: Invalid value: "not ok": spec.dnsNames[1] in body should match '
            "'^(\\*\\.)?([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$'"
        ],
        id="bad-dns-name",
    ),
    pytest.param(
        {**GOOD_SPEC, "duration": "1d"},
        None,
        [
            'spec.duration: Invalid value: "1d": spec.duration in body should match '
            f"'{DURATION_PATTERN}'"
        ],
        id="duration-in-days",
    ),
    pytest.param(
        {**GOOD_SPEC, "secretTemplate": {"labels": {"a": 1}}},
        None,
        [
            'spec.secretTemplate.labels.a: Invalid value: "integer": spec.secretTemplate.labels.a in body must '
            'be of type string: "integer"',
            RULES_NOT_CHECKED,
        ],
        id="template-label-not-string",
    ),
    pytest.param(
        {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
        None,
        [
            'spec.selector.matchExpressions[0].operator: Unsupported value: "Near": supported values: "In", '
            '"NotIn", "Exists", "DoesNotExist"',
            RULES_NOT_CHECKED,
        ],
        id="bad-match-expression-operator",
    ),
    pytest.param(
        GOOD_SPEC,
        {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "pods": 3,
            "issued": 3,
            "spiffeIDs": ["spiffe://cluster.local/ns/shop/sa/payments"],
            "nextRenewalTime": "2026-11-27T08:00:00Z",
            "caFingerprint": "sha256:ab",
        },
        [],
        id="status-valid",
    ),
    pytest.param(
        GOOD_SPEC,
        {
            "conditions": [{"type": "Ready", "status": "Yes"}, {"type": "Ready", "status": "True"}],
            "pods": -1,
            "nextRenewalTime": "tomorrow",
        },
        [
            'status.conditions[0].status: Unsupported value: "Yes": supported values: "True", "False", "Unknown"',
            'status.nextRenewalTime: Invalid value: "tomorrow": status.nextRenewalTime in body must be of type '
            'date-time: "tomorrow"',
            "status.pods: Invalid value: -1: status.pods in body should be greater than or equal to 0",
            'status.conditions[1]: Duplicate value: {"type":"Ready"}',
            RULES_NOT_CHECKED,
        ],
        id="status-invalid",
    ),
]


@pytest.mark.parametrize(("spec", "status", "expected"), CRD_CASES)
def test_project_crd(crd_schema: StructuralSchema, spec: Any, status: Any, expected: list[str]) -> None:
    _, errors = crd_schema.process(identity(spec, status))
    assert [str(e) for e in errors] == expected


def test_project_crd_prunes_and_defaults(crd_schema: StructuralSchema) -> None:
    given = identity({"selector": {"matchLabels": {"app": "p"}, "bogus": 1}, "extra": "x", "renewBefore": None})
    given["unknownTopLevel"] = True
    result, errors = crd_schema.process(given)
    assert errors == []
    assert result == identity(
        {
            "selector": {"matchLabels": {"app": "p"}},
            "usages": ["server", "client"],
            "privateKey": {"algorithm": "ECDSA"},
            "delivery": "Secret",
        }
    )
    status = crd_schema.subschema("status")
    assert status is not None
    assert status.validate({"pods": "3"})[0].path == "status.pods"
