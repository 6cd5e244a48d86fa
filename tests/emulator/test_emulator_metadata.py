"""Object metadata as the apiserver maintains it; one test per rule."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from kube_emulator import ApiError, Emulator, EmulatorServer

from .conftest import Http, secret, widget

SECRETS = "/api/v1/namespaces/default/secrets"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


async def test_create_answers_201_with_uid_and_resource_version(http: Http) -> None:
    status, body = await http.post(SECRETS, secret("a"))
    assert status == 201
    meta = body["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert meta["resourceVersion"].isdigit()
    assert body["kind"] == "Secret"
    assert body["apiVersion"] == "v1"
    assert "managedFields" not in meta


async def test_creation_timestamp_is_rfc3339_whole_seconds_from_the_clock() -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    emulator = Emulator(clock=lambda: moment)
    obj = emulator.create(secret("a"))
    assert obj["metadata"]["creationTimestamp"] == "2030-01-02T03:04:05Z"


async def test_resource_version_changes_on_every_write(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    versions = [int(created["metadata"]["resourceVersion"])]
    for value in ("b", "c"):
        _, patched = await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": value}}})
        versions.append(int(patched["metadata"]["resourceVersion"]))
    _, other = await http.post(SECRETS, secret("b"))
    versions.append(int(other["metadata"]["resourceVersion"]))
    assert versions == sorted(set(versions)), "strictly increasing, global across objects"


async def test_noop_update_keeps_resource_version(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a", metadata={"name": "a", "labels": {"x": "1"}}))
    _, patched = await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": "1"}}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generation_bumps_on_spec_change_only(http: Http) -> None:
    _, created = await http.post(WIDGETS, widget("w", size=1))
    assert created["metadata"]["generation"] == 1
    _, labelled = await http.patch(f"{WIDGETS}/w", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    _, status = await http.patch(f"{WIDGETS}/w/status", {"status": {"phase": "x"}})
    assert status["metadata"]["generation"] == 1
    _, changed = await http.patch(f"{WIDGETS}/w", {"spec": {"size": 2}})
    assert changed["metadata"]["generation"] == 2


async def test_secrets_have_no_generation(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    assert "generation" not in created["metadata"]


async def test_namespace_comes_from_the_url(http: Http) -> None:
    body = secret("a")
    del body["metadata"]["namespace"]
    status, created = await http.post("/api/v1/namespaces/kube-system/secrets", body)
    assert status == 201
    assert created["metadata"]["namespace"] == "kube-system"


async def test_namespace_mismatch_between_body_and_url_is_400(http: Http) -> None:
    status, body = await http.post("/api/v1/namespaces/kube-system/secrets", secret("a", namespace="default"))
    assert status == 400
    assert body["reason"] == "BadRequest"


async def test_generate_name_appends_a_random_suffix(http: Http) -> None:
    body = secret("")
    body["metadata"] = {"generateName": "cert-"}
    status, created = await http.post(SECRETS, body)
    assert status == 201
    assert re.fullmatch(r"cert-[bcdfghjklmnpqrstvwxz2456789]{5}", created["metadata"]["name"])


async def test_missing_name_is_422(http: Http) -> None:
    status, body = await http.post(SECRETS, {"metadata": {}, "data": {}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_invalid_name_is_422(http: Http) -> None:
    status, body = await http.post(SECRETS, secret("Not_Valid"))
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_create_in_missing_namespace_is_404(http: Http) -> None:
    status, body = await http.post("/api/v1/namespaces/nowhere/secrets", secret("a", namespace="nowhere"))
    assert status == 404
    assert body["message"] == 'namespaces "nowhere" not found'
    assert body["details"] == {"name": "nowhere", "kind": "namespaces"}  # no "group" for the core group


async def test_create_existing_name_is_409_already_exists(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, body = await http.post(SECRETS, secret("a"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'secrets "a" already exists'


async def test_get_missing_is_404_with_details(http: Http) -> None:
    status, body = await http.get(f"{WIDGETS}/nope")
    assert status == 404
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["message"] == 'widgets.example.com "nope" not found'
    assert body["details"] == {"name": "nope", "group": "example.com", "kind": "widgets"}


async def test_unknown_resource_is_404(http: Http) -> None:
    status, body = await http.get("/apis/example.com/v1/namespaces/default/gadgets")
    assert status == 404
    assert body["reason"] == "NotFound"


async def test_default_namespaces_exist(server: EmulatorServer) -> None:
    names = {ns["metadata"]["name"] for ns in server.emulator.list("v1", "namespaces")}
    assert {"default", "kube-system", "kube-public"} <= names


async def test_in_process_helpers_apply_the_same_rules(emulator: Emulator) -> None:
    created = emulator.create(widget("w", size=2))
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["color"] == "red"  # schema default
    patched = emulator.patch("example.com/v1", "Widget", "w", "default", {"spec": {"size": 3}})
    assert patched["metadata"]["generation"] == 2
    got = emulator.get("example.com/v1", "widgets", "w", "default")
    assert got == patched
    got["spec"]["size"] = 99  # a copy: the store is not changed
    assert emulator.get("example.com/v1", "widgets", "w", "default") == patched
    emulator.delete("example.com/v1", "widgets", "w", "default")
    assert emulator.get("example.com/v1", "widgets", "w", "default") is None


# ------------------------------------------------------------- labels and annotations (ValidateObjectMeta)
# Messages as kube-apiserver words them (k8s.io/apimachinery/pkg/util/validation, api/validation/objectmeta.go).
QNAME_NAME_ERR = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
    "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
PREFIX_ERR = (
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
ANNOTATIONS_LIMIT = 256 * 1024


def labelled(name: str = "a", labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    body = secret(name)
    if labels is not None:
        body["metadata"]["labels"] = labels
    if annotations is not None:
        body["metadata"]["annotations"] = annotations
    return body


def causes(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["field"], c["reason"], c["message"]) for c in body["details"]["causes"]]


async def test_label_value_longer_than_63_is_422(http: Http) -> None:
    value = "x" * 64
    status, body = await http.post(SECRETS, labelled(labels={"app": value}))
    assert status == 422
    assert body["reason"] == "Invalid"
    assert body["message"] == (
        f'Secret "a" is invalid: metadata.labels: Invalid value: "{value}": must be no more than 63 characters'
    )
    assert body["details"] == {"name": "a", "kind": "Secret", "causes": [{
        "reason": "FieldValueInvalid", "field": "metadata.labels",
        "message": f'Invalid value: "{value}": must be no more than 63 characters',
    }]}


@pytest.mark.parametrize("value", ["-starts-with-dash", "ends.with.dot.", "has space", "slash/", "ünïcode",
                                   "trailing-newline\n"])
async def test_label_value_must_be_alphanumeric_dash_underscore_dot(http: Http, value: str) -> None:
    status, body = await http.post(SECRETS, labelled(labels={"app": value}))
    assert status == 422
    quoted = json.dumps(value, ensure_ascii=False)
    assert causes(body) == [("metadata.labels", "FieldValueInvalid", f"Invalid value: {quoted}: {LABEL_VALUE_ERR}")]


async def test_label_value_may_be_empty_or_up_to_63_characters(http: Http) -> None:
    labels = {"empty": "", "max": "A" * 62 + "z", "mixed": "My_value-1.2"}
    status, created = await http.post(SECRETS, labelled(labels=labels))
    assert status == 201, created
    assert created["metadata"]["labels"] == labels


async def test_label_key_must_be_a_qualified_name(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled(labels={"bad key!": "v"}))
    assert status == 422
    assert body["message"] == f'Secret "a" is invalid: metadata.labels: Invalid value: "bad key!": {QNAME_NAME_ERR}'
    assert causes(body) == [("metadata.labels", "FieldValueInvalid", f'Invalid value: "bad key!": {QNAME_NAME_ERR}')]


@pytest.mark.parametrize(("key", "problem"), [
    ("x" * 64, "name part must be no more than 63 characters"),
    ("example.com/", "name part must be non-empty"),
    ("/app", "prefix part must be non-empty"),
    ("Example.com/app", PREFIX_ERR),
    ("a" * 254 + "/app", "prefix part must be no more than 253 characters"),
])
async def test_label_key_name_is_at_most_63_and_prefix_a_dns_subdomain(http: Http, key: str, problem: str) -> None:
    status, body = await http.post(SECRETS, labelled(labels={key: "v"}))
    assert status == 422
    assert (f'metadata.labels: Invalid value: "{key}": {problem}') in body["message"]


async def test_label_key_with_two_slashes_is_422(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled(labels={"a/b/c": "v"}))
    assert status == 422
    assert causes(body) == [("metadata.labels", "FieldValueInvalid", (
        "Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
        "must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
        "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix "
        "and '/' (e.g. 'example.com/MyName')"
    ))]


async def test_valid_label_keys_pass(http: Http) -> None:
    labels = {"app": "v", "app.kubernetes.io/name": "v", "My_Key.1": "v", "a" * 253 + "/" + "b" * 63: "v"}
    status, created = await http.post(SECRETS, labelled(labels=labels))
    assert status == 201, created
    assert created["metadata"]["labels"] == labels


async def test_annotation_key_must_be_a_qualified_name(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled(annotations={"bad key!": "v"}))
    assert status == 422
    assert body["message"] == (
        f'Secret "a" is invalid: metadata.annotations: Invalid value: "bad key!": {QNAME_NAME_ERR}'
    )
    assert causes(body) == [
        ("metadata.annotations", "FieldValueInvalid", f'Invalid value: "bad key!": {QNAME_NAME_ERR}'),
    ]


async def test_annotation_key_case_does_not_matter(http: Http) -> None:
    # Annotation keys are checked in lower case: an upper-case prefix is fine (not for labels).
    status, created = await http.post(SECRETS, labelled(annotations={"Example.COM/Note": "v"}))
    assert status == 201, created
    status, body = await http.post(SECRETS, labelled("b", labels={"Example.COM/Note": "v"}))
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.labels"


async def test_annotation_values_are_free_form(http: Http) -> None:
    annotations = {"note": "any text: with spaces,\nnewlines and {\"json\": true}", "long": "x" * 10000, "empty": ""}
    status, created = await http.post(SECRETS, labelled(annotations=annotations))
    assert status == 201, created
    assert created["metadata"]["annotations"] == annotations


async def test_annotations_larger_than_256k_are_422(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled(annotations={"big": "x" * (ANNOTATIONS_LIMIT - 3 + 1)}))
    assert status == 422
    assert body["message"] == 'Secret "a" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes'
    too_long = ("metadata.annotations", "FieldValueTooLong", "Too long: may not be more than 262144 bytes")
    assert causes(body) == [too_long]


async def test_annotations_of_exactly_256k_pass(http: Http) -> None:
    annotations = {"a": "x" * 1000, "big": "x" * (ANNOTATIONS_LIMIT - 1 - 1000 - 3)}
    status, created = await http.post(SECRETS, labelled(annotations=annotations))
    assert status == 201, created
    assert created["metadata"]["annotations"] == annotations


async def test_annotation_size_counts_keys_and_values_in_utf8_bytes(http: Http) -> None:
    value = "é" * (ANNOTATIONS_LIMIT // 2)  # 2 bytes each: fits in characters, not in bytes
    status, body = await http.post(SECRETS, labelled(annotations={"k": value}))
    assert status == 422
    assert causes(body)[0][1] == "FieldValueTooLong"


async def test_metadata_problems_are_reported_together_in_one_422(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled(labels={"bad key!": "x" * 64}, annotations={"-": "v"}))
    assert status == 422
    assert [(field, reason) for field, reason, _ in causes(body)] == [
        ("metadata.labels", "FieldValueInvalid"),  # the key
        ("metadata.labels", "FieldValueInvalid"),  # the value
        ("metadata.annotations", "FieldValueInvalid"),
    ]
    assert body["message"].startswith('Secret "a" is invalid: [metadata.labels: Invalid value: "bad key!": ')


async def test_invalid_name_and_labels_are_reported_together(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled("Not_Valid", labels={"app": "-"}))
    assert status == 422
    assert [c[0] for c in causes(body)] == ["metadata.name", "metadata.labels"]


async def test_metadata_problems_come_before_the_schema_problems(http: Http) -> None:
    body = widget("w", size=0)
    body["metadata"]["labels"] = {"app": "-"}
    status, answer = await http.post(WIDGETS, body)
    assert status == 422
    assert [c[0] for c in causes(answer)] == ["metadata.labels", "spec.size"]
    assert answer["details"]["group"] == "example.com"


async def test_update_with_invalid_labels_is_422(http: Http) -> None:
    _, created = await http.post(SECRETS, labelled())
    created["metadata"]["labels"] = {"app": "x" * 64}
    status, body = await http.put(f"{SECRETS}/a", created)
    assert status == 422
    assert causes(body)[0][:2] == ("metadata.labels", "FieldValueInvalid")


async def test_patch_with_invalid_annotations_is_422_and_changes_nothing(http: Http) -> None:
    _, created = await http.post(SECRETS, labelled(labels={"app": "v"}))
    for content_type, patch in [
        ("application/merge-patch+json", {"metadata": {"annotations": {"bad key!": "v"}, "labels": {"app": "w"}}}),
        ("application/json-patch+json", [{"op": "add", "path": "/metadata/annotations", "value": {"-": "v"}}]),
        ("application/strategic-merge-patch+json", {"metadata": {"labels": {"app": "-"}}}),
    ]:
        status, body = await http.patch(f"{SECRETS}/a", patch, content_type=content_type)
        assert status == 422, (content_type, body)
    _, current = await http.get(f"{SECRETS}/a")
    assert current == created


async def test_apply_create_with_invalid_labels_is_422(http: Http) -> None:
    status, body = await http.patch(f"{SECRETS}/applied", labelled("applied", labels={"app": "-"}),
                                    content_type="application/apply-patch+yaml", fieldManager="test")
    assert status == 422
    assert causes(body)[0][0] == "metadata.labels"
    status, _ = await http.get(f"{SECRETS}/applied")
    assert status == 404


async def test_in_process_helpers_validate_labels_and_annotations(emulator: Emulator) -> None:
    with pytest.raises(ApiError) as created:
        emulator.create(labelled(labels={"app": "x" * 64}))
    assert created.value.code == 422
    assert created.value.status["details"]["causes"][0]["field"] == "metadata.labels"
    emulator.create(widget("w"))
    with pytest.raises(ApiError) as patched:
        emulator.patch("example.com/v1", "Widget", "w", "default", {"metadata": {"annotations": {"-": "v"}}})
    assert patched.value.code == 422
    assert patched.value.status["message"].startswith('Widget.example.com "w" is invalid: metadata.annotations: ')


# ------------------------------------------------------------------- object names (NameIsDNSSubdomain ...)
# k8s.io/apimachinery/pkg/util/validation: IsDNS1123Subdomain, IsDNS1123Label, RegexError.
SUBDOMAIN_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    f"start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{SUBDOMAIN_FMT}')"
)
LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


@pytest.mark.parametrize("name", ["Foo_Bar", "UPPER", "-dash", "dot.", "a..b", "with space", "a/b", "a%b", ".", "ünï"])
async def test_custom_resource_name_must_be_a_dns_subdomain(http: Http, name: str) -> None:
    status, body = await http.post(WIDGETS, widget(name))
    assert status == 422, body
    quoted = json.dumps(name, ensure_ascii=False)
    problem = f"Invalid value: {quoted}: {SUBDOMAIN_ERR}"
    assert body["message"] == f"Widget.example.com {quoted} is invalid: metadata.name: {problem}"
    assert body["details"] == {"name": name, "group": "example.com", "kind": "Widget", "causes": [
        {"reason": "FieldValueInvalid", "field": "metadata.name", "message": problem},
    ]}


async def test_custom_resource_name_is_at_most_253_characters(http: Http) -> None:
    status, created = await http.post(WIDGETS, widget("a" * 63 + "." + "b" * 189))  # 253
    assert status == 201, created
    name = "a" * 254
    status, body = await http.post(WIDGETS, widget(name))
    assert status == 422
    assert causes(body) == [("metadata.name", "FieldValueInvalid",
                             f'Invalid value: "{name}": must be no more than 253 characters')]
    name = "A" * 254  # both problems, one cause each
    status, body = await http.post(WIDGETS, widget(name))
    assert [c[2] for c in causes(body)] == [f'Invalid value: "{name}": must be no more than 253 characters',
                                            f'Invalid value: "{name}": {SUBDOMAIN_ERR}']


async def test_custom_resource_dotted_and_dashed_names_pass(http: Http) -> None:
    for name in ("a", "0", "my-widget.v1", "1.2.3"):
        status, created = await http.post(WIDGETS, widget(name))
        assert status == 201, created


async def test_invalid_custom_resource_name_in_process_is_422(emulator: Emulator) -> None:
    with pytest.raises(ApiError) as raised:
        emulator.create(widget("Foo_Bar"))
    assert raised.value.code == 422
    assert raised.value.status["message"] == (
        f'Widget.example.com "Foo_Bar" is invalid: metadata.name: Invalid value: "Foo_Bar": {SUBDOMAIN_ERR}'
    )


async def test_builtin_name_message_is_the_apiservers(http: Http) -> None:
    status, body = await http.post(SECRETS, secret("Not_Valid"))
    assert status == 422
    assert causes(body) == [("metadata.name", "FieldValueInvalid", f'Invalid value: "Not_Valid": {SUBDOMAIN_ERR}')]


@pytest.mark.parametrize(("name", "problem"), [
    pytest.param("Bad_Ns", LABEL_ERR, id="regex"),
    pytest.param("has.dots", "must not contain dots", id="dots"),
    pytest.param("x" * 64, "must be no more than 63 characters", id="too-long"),
])
async def test_namespace_name_must_be_a_dns_label(http: Http, name: str, problem: str) -> None:
    status, body = await http.post("/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 422
    assert causes(body) == [("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {problem}')]
    assert "group" not in body["details"]


@pytest.mark.parametrize(("path", "body"), [
    (SECRETS, secret("trailing-newline\n")),
    (WIDGETS, widget("trailing-newline\n")),
    ("/api/v1/namespaces", {"metadata": {"name": "trailing-newline\n"}}),
])
async def test_name_with_a_trailing_newline_is_422(http: Http, path: str, body: dict[str, Any]) -> None:
    # Go's "$" is the end of the text; Python's "$" (with re.match) also matches before a final "\n".
    status, answer = await http.post(path, body)
    assert status == 422, answer
    assert causes(answer)[0][:2] == ("metadata.name", "FieldValueInvalid")


async def test_data_key_with_a_trailing_newline_is_422(http: Http) -> None:
    status, body = await http.post(SECRETS, secret("a", data={"key\n": "dg=="}))
    assert status == 422, body
    assert causes(body)[0][:2] == ("data[key\n]", "FieldValueInvalid")


async def test_schema_pattern_dollar_is_the_end_of_the_text(http: Http) -> None:
    # "pattern: ^[a-z]+$" is a Go regexp: "abc\n" does not match it (Python's re.search would).
    status, body = await http.post(WIDGETS, widget("w", code="abc\n"))
    assert status == 422, body
    assert causes(body) == [("spec.code", "FieldValueInvalid",
                             "Invalid value: \"abc\\n\": spec.code in body should match '^[a-z]+$'")]
    status, created = await http.post(WIDGETS, widget("w", code="abc"))
    assert status == 201, created


async def test_format_checks_refuse_a_trailing_newline() -> None:
    from kube_emulator.schema import StructuralSchema

    for fmt, good in [("uuid", "123e4567-e89b-12d3-a456-426614174000"), ("date-time", "2030-01-02T03:04:05Z"),
                      ("hostname", "example.com"), ("email", "a@b.c"), ("duration", "5m"),
                      ("mac", "00:11:22:33:44:55")]:
        schema = StructuralSchema({"type": "string", "format": fmt}, path="spec.v")
        assert schema.validate(good) == [], fmt  # type: ignore[arg-type]
        assert [e.path for e in schema.validate(good + "\n")] == ["spec.v"], fmt  # type: ignore[arg-type]


async def test_create_validates_before_checking_that_the_name_exists(http: Http) -> None:
    status, _ = await http.post(WIDGETS, widget("w"))
    assert status == 201
    status, body = await http.post(WIDGETS, widget("w", size=0))  # invalid and existing: 422, not 409
    assert status == 422, body
    assert [c[0] for c in causes(body)] == ["spec.size"]
    await http.post(SECRETS, secret("s"))
    status, body = await http.post(SECRETS, labelled("s", labels={"app": "-"}))
    assert status == 422, body
    status, body = await http.post(WIDGETS, widget("w"))  # valid and existing: 409 AlreadyExists
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "w", "group": "example.com", "kind": "widgets"}


async def test_dry_run_create_of_an_existing_name_is_409(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, body = await http.post(f"{SECRETS}?dryRun=All", secret("a"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "a", "kind": "secrets"}  # no "group" for the core group


async def test_invalid_status_has_no_group_for_the_core_group(http: Http) -> None:
    status, body = await http.post(SECRETS, labelled(labels={"app": "-"}))
    assert status == 422
    assert "group" not in body["details"]
    assert body["details"]["kind"] == "Secret"
    from kube_emulator import errors

    status_body = errors.invalid("Secret", "", "a", [("data", "FieldValueInvalid", "x")]).status
    assert status_body["details"] == {"name": "a", "kind": "Secret",
                                      "causes": [{"reason": "FieldValueInvalid", "message": "x", "field": "data"}]}
    assert errors.invalid("Widget", "example.com", "w", []).status["details"]["group"] == "example.com"


async def test_not_found_and_conflict_have_no_group_for_the_core_group(http: Http) -> None:
    status, body = await http.get(f"{SECRETS}/missing")
    assert status == 404
    assert body["details"] == {"name": "missing", "kind": "secrets"}
    _, created = await http.post(SECRETS, secret("a"))
    created["metadata"]["resourceVersion"] = "1"
    status, body = await http.put(f"{SECRETS}/a", created)
    assert status == 409
    assert body["details"] == {"name": "a", "kind": "secrets"}
