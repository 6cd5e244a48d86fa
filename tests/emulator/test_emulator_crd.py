"""CustomResourceDefinitions: registration, schema enforcement, /status; one test per rule."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from kube_emulator import Emulator, load_crds

from .conftest import REPOSITORY_CRDS, WIDGET_CRD, Http, widget

WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def gadget_crd(scope: str = "Cluster") -> dict[str, Any]:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "gadgets.tools.example.org"
    crd["spec"]["group"] = "tools.example.org"
    crd["spec"]["scope"] = scope
    crd["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget", "shortNames": ["gd"]}
    return crd


def causes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["field"], c["reason"]) for c in body["details"]["causes"]]


async def test_creating_a_crd_registers_its_resource(http: Http) -> None:
    status, created = await http.post(CRDS, gadget_crd())
    assert status == 201
    conditions = {c["type"]: c["status"] for c in created["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert created["status"]["acceptedNames"]["singular"] == "gadget"
    _, groups = await http.get("/apis")
    assert "tools.example.org" in [g["name"] for g in groups["groups"]]
    _, resources = await http.get("/apis/tools.example.org/v1")
    assert resources["groupVersion"] == "tools.example.org/v1"
    gadgets = next(r for r in resources["resources"] if r["name"] == "gadgets")
    assert gadgets["namespaced"] is False
    assert gadgets["shortNames"] == ["gd"]
    assert gadgets["kind"] == "Gadget"
    assert "gadgets/status" in [r["name"] for r in resources["resources"]]
    status, obj = await http.post("/apis/tools.example.org/v1/gadgets",
                                  {"apiVersion": "tools.example.org/v1", "kind": "Gadget",
                                   "metadata": {"name": "g"}, "spec": {"size": 1}})
    assert status == 201
    assert "namespace" not in obj["metadata"]


async def test_deleting_a_crd_unregisters_its_resource(http: Http) -> None:
    await http.post(CRDS, gadget_crd())
    await http.post("/apis/tools.example.org/v1/gadgets", {"metadata": {"name": "g"}, "spec": {"size": 1}})
    status, _ = await http.delete(f"{CRDS}/gadgets.tools.example.org")
    assert status == 200
    status, _ = await http.get("/apis/tools.example.org/v1/gadgets")
    assert status == 404
    _, groups = await http.get("/apis")
    assert "tools.example.org" not in [g["name"] for g in groups["groups"]]


async def test_invalid_crd_is_422(http: Http) -> None:
    crd = gadget_crd()
    crd["metadata"]["name"] = "wrong.name"
    status, body = await http.post(CRDS, crd)
    assert status == 422
    assert ("metadata.name", "FieldValueInvalid") in causes(body)


async def test_crd_schema_rejects_wrong_type_with_field_path(http: Http) -> None:
    status, body = await http.post(WIDGETS, widget("w", size="big"))
    assert status == 422
    assert body["reason"] == "Invalid"
    assert causes(body) == [("spec.size", "FieldValueTypeInvalid")]
    assert body["details"]["kind"] == "Widget"
    assert body["details"]["group"] == "example.com"


async def test_crd_schema_rejects_missing_required_field(http: Http) -> None:
    body = widget("w")
    del body["spec"]["size"]
    status, result = await http.post(WIDGETS, body)
    assert status == 422
    assert causes(result) == [("spec.size", "FieldValueRequired")]


async def test_crd_schema_rejects_enum_violation(http: Http) -> None:
    status, body = await http.post(WIDGETS, widget("w", color="purple"))
    assert status == 422
    assert causes(body) == [("spec.color", "FieldValueNotSupported")]


async def test_crd_schema_rejects_pattern_violation(http: Http) -> None:
    status, body = await http.post(WIDGETS, widget("w", code="ABC"))
    assert status == 422
    assert causes(body) == [("spec.code", "FieldValueInvalid")]


async def test_crd_schema_validates_updates_too(http: Http) -> None:
    await http.post(WIDGETS, widget("w"))
    status, body = await http.patch(f"{WIDGETS}/w", {"spec": {"size": 0}})
    assert status == 422
    assert causes(body) == [("spec.size", "FieldValueInvalid")]


async def test_crd_defaults_applied(http: Http) -> None:
    _, body = await http.post(WIDGETS, widget("w"))
    assert body["spec"]["color"] == "red"


async def test_crd_unknown_fields_pruned(http: Http) -> None:
    body = widget("w", bogus={"x": 1})
    body["extra"] = True
    body["metadata"]["labels"] = {"kept": "yes"}
    status, created = await http.post(WIDGETS, body)
    assert status == 201
    assert "bogus" not in created["spec"]
    assert "extra" not in created
    assert created["metadata"]["labels"] == {"kept": "yes"}


async def test_status_subresource_separate(http: Http) -> None:
    body = widget("w")
    body["status"] = {"ignored": True}
    _, created = await http.post(WIDGETS, body)
    assert "status" not in created, "create cannot set the status"
    _, written = await http.patch(f"{WIDGETS}/w/status", {"status": {"phase": "Ready"}, "spec": {"size": 9},
                                                         "metadata": {"labels": {"no": "pe"}}})
    assert written["status"] == {"phase": "Ready"}
    assert written["spec"]["size"] == 1, "writes to /status change only the status"
    assert "labels" not in written["metadata"]
    assert int(written["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    _, main = await http.patch(f"{WIDGETS}/w", {"status": {"phase": "Lost"}, "spec": {"size": 2}})
    assert main["status"] == {"phase": "Ready"}, "writes to the main resource ignore the status"
    assert main["spec"]["size"] == 2
    written["status"] = {"phase": "Done"}
    status, put = await http.put(f"{WIDGETS}/w/status", written)
    assert status == 409, "the resourceVersion of a /status PUT is checked too"
    main["status"] = {"phase": "Done"}
    status, put = await http.put(f"{WIDGETS}/w/status", main)
    assert status == 200
    assert put["status"] == {"phase": "Done"}


async def test_status_subresource_of_a_builtin(http: Http) -> None:
    pods = "/api/v1/namespaces/default/pods"
    await http.post(pods, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    _, ignored = await http.patch(f"{pods}/p", {"status": {"phase": "Running"}})
    assert ignored["status"]["phase"] == "Pending"
    status, body = await http.patch(f"{pods}/p/status", {"status": {"phase": "Running", "podIP": "10.0.0.1"}})
    assert status == 200
    assert body["status"]["phase"] == "Running"


async def test_status_of_a_resource_without_the_subresource_is_404(http: Http) -> None:
    status, _ = await http.get("/api/v1/namespaces/default/secrets/x/status")
    assert status == 404


async def test_printer_columns_in_table(http: Http) -> None:
    await http.post(WIDGETS, widget("w", size=3, color="blue"))
    status, table = await http.request("GET", WIDGETS, headers={"Accept": TABLE})
    assert status == 200
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Color", "Ready"]
    assert table["rows"][0]["cells"][:3] == ["w", 3, "blue"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_table_for_builtin_resources(http: Http) -> None:
    status, table = await http.request("GET", "/api/v1/namespaces", headers={"Accept": TABLE})
    assert status == 200
    assert [c["name"] for c in table["columnDefinitions"]][:2] == ["Name", "Status"]


async def test_crds_of_a_folder_install() -> None:
    crds = load_crds(REPOSITORY_CRDS)
    assert [c["metadata"]["name"] for c in crds] == ["mtlsidentities.mtls.dev"]
    emulator = Emulator(crds=crds)
    info = emulator.resource("mtls.dev/v1alpha1", "mtlsid")
    assert info.plural == "mtlsidentities"
    assert info.status_subresource


def test_load_crds_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no folder of CRDs at"):
        load_crds(tmp_path / "absent")


async def test_strict_field_validation_rejects_unknown_fields(http: Http) -> None:
    status, body = await http.post(WIDGETS, widget("w", bogus=1), fieldValidation="Strict")
    assert status == 400
    assert body["message"] == ('Widget in version "v1" cannot be handled as a Widget: '
                               'strict decoding error: unknown field "spec.bogus"')
    status, _ = await http.post(WIDGETS, widget("w", bogus=1), fieldValidation="Warn")
    assert status == 201
    status, _ = await http.patch(f"{WIDGETS}/w", {"spec": {"other": 2}}, fieldValidation="Strict")
    assert status == 400
