"""Object metadata as the apiserver maintains it; one test per rule."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from mtls_operator.testing import Emulator, EmulatorServer

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
    assert body["details"] == {"name": "nowhere", "group": "", "kind": "namespaces"}


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
