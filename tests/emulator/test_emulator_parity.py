"""Answers fixed to match kube-apiserver after tests/e2e/test_parity.py diffed the two; one test each."""

from __future__ import annotations

import pytest

from kube_emulator.builtin import go_base64_error
from kube_emulator.schema import StructuralSchema

from .conftest import Http, secret, widget

SECRETS = "/api/v1/namespaces/default/secrets"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
PODS = "/api/v1/namespaces/default/pods"


# Offsets as Go's encoding/base64 (StdEncoding.Decode) reports them, run once with Go 1.26.
@pytest.mark.parametrize(("value", "offset"), [
    ("not base64!", 3), ("abc", 0), ("abcd", None), ("ab==", None), ("ab=", 3), ("a===", 1), ("abc=", None),
    ("abc=x", 4), ("YWJj\nZA==", None), ("", None), ("ab=\n=", None), ("abcd\n", None), ("=abc", 0),
    ("ab==cd", 4), ("abcdefghijk!", 11), ("abcdefgh=", 8), ("abcdefg", 4),
])
def test_base64_errors_at_gos_offsets(value: str, offset: int | None) -> None:
    assert go_base64_error(value) == offset


async def test_configmap_binary_data_not_base64_is_400(http: Http) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "binaryData": {"x": "abc"}}
    status, result = await http.post(CONFIGMAPS, body)
    assert (status, result["reason"]) == (400, "BadRequest")
    assert result["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                 "illegal base64 data at input byte 0")


async def test_delete_precondition_conflict_names_the_kind(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    status, result = await http.delete(f"{SECRETS}/a", {"preconditions": {"uid": "other"}})
    assert (status, result["reason"]) == (409, "Conflict")
    assert result["details"] == {"name": "a", "kind": "Secret"}
    assert result["message"] == (
        'Operation cannot be fulfilled on Secret "a": the UID in the precondition (other) does not match the UID '
        f"in record ({created['metadata']['uid']}). The object might have been deleted and then recreated")
    status, result = await http.delete(f"{SECRETS}/a", {"preconditions": {"resourceVersion": "1"}})
    assert status == 409
    assert result["message"] == (
        'Operation cannot be fulfilled on Secret "a": the ResourceVersion in the precondition (1) does not match '
        f"the ResourceVersion in record ({created['metadata']['resourceVersion']}). The object might have been "
        "modified")


async def test_put_of_a_custom_resource_needs_a_resource_version(http: Http) -> None:
    _, created = await http.post(WIDGETS, widget("w"))
    del created["metadata"]["resourceVersion"]
    status, result = await http.put(f"{WIDGETS}/w", created)
    assert (status, result["reason"]) == (422, "Invalid")
    assert result["message"] == ('widgets.example.com "w" is invalid: metadata.resourceVersion: Invalid value: 0: '
                                 "must be specified for an update")
    assert result["details"]["causes"] == [{"field": "metadata.resourceVersion", "reason": "FieldValueInvalid",
                                            "message": "Invalid value: 0: must be specified for an update"}]


async def test_pod_spec_update_message_lists_fields_without_spaces(http: Http) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    await http.post(PODS, pod)
    status, result = await http.patch(f"{PODS}/p", {"spec": {"serviceAccountName": "other"}})
    assert status == 422
    assert "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`," in \
        result["message"]


_RULED = {"type": "object", "properties": {"spec": {
    "type": "object", "required": ["size"],
    "x-kubernetes-validations": [{"rule": "self.size < 10"}],
    "properties": {"size": {"type": "integer"}, "code": {"type": "string", "pattern": "^[a-z]+$"}},
}}}


@pytest.mark.parametrize(("spec", "skipped"), [
    ({}, True),                              # Required: blocking, the CEL rules are not evaluated
    ({"size": "x"}, True),                   # TypeInvalid: blocking
    ({"size": 1, "code": "A"}, False),       # a pattern (Invalid) is not blocking: the rules run
    ({"size": 1}, False),
])
def test_rules_not_checked_after_a_blocking_schema_error(spec: dict[str, object], skipped: bool) -> None:
    errors = StructuralSchema(_RULED).validate({"spec": spec})
    note = [str(err) for err in errors if err.path == "<nil>"]
    assert note == ([
        "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; "
        "correct the existing errors to complete validation"] if skipped else [])
    without_rules = {**_RULED, "properties": {"spec": {k: v for k, v in _RULED["properties"]["spec"].items()
                                                        if k != "x-kubernetes-validations"}}}
    assert not [err for err in StructuralSchema(without_rules).validate({"spec": spec}) if err.path == "<nil>"]
