"""Discovery documents and built-in resources; one test per rule."""

from __future__ import annotations

from kube_emulator import EmulatorServer

from .conftest import Http

AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


async def test_version(http: Http) -> None:
    status, body = await http.get("/version")
    assert status == 200
    assert body["major"] == "1"
    assert body["gitVersion"].startswith("v1.")


async def test_core_api_versions(http: Http, server: EmulatorServer) -> None:
    _, body = await http.get("/api")
    assert body["kind"] == "APIVersions"
    assert body["versions"] == ["v1"]
    assert body["serverAddressByClientCIDRs"][0]["serverAddress"] == f"127.0.0.1:{server.port}"


async def test_core_resource_list(http: Http) -> None:
    _, body = await http.get("/api/v1")
    assert body["kind"] == "APIResourceList"
    assert body["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in body["resources"]}
    assert {"namespaces", "pods", "pods/status", "secrets", "configmaps", "serviceaccounts", "events",
            "services"} <= set(by_name)
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["pods"]["shortNames"] == ["po"]
    assert by_name["secrets"]["singularName"] == "secret"
    assert "watch" in by_name["secrets"]["verbs"]


async def test_api_group_list(http: Http) -> None:
    _, body = await http.get("/apis")
    assert body["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in body["groups"]}
    for name in ("apiextensions.k8s.io", "coordination.k8s.io", "events.k8s.io", "apps",
                 "admissionregistration.k8s.io", "example.com"):
        assert name in groups
    assert groups["coordination.k8s.io"]["preferredVersion"]["groupVersion"] == "coordination.k8s.io/v1"
    _, group = await http.get("/apis/example.com")
    assert group["kind"] == "APIGroup"
    assert group["versions"] == [{"groupVersion": "example.com/v1", "version": "v1"}]


async def test_aggregated_discovery(http: Http) -> None:
    async with http.session.get(http.url + "/apis", headers={"Accept": AGGREGATED}) as resp:
        assert resp.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
        body = await resp.json(content_type=None)
    assert body["kind"] == "APIGroupDiscoveryList"
    widgets = next(g for g in body["items"] if g["metadata"]["name"] == "example.com")
    resource = widgets["versions"][0]["resources"][0]
    assert resource["resource"] == "widgets"
    assert resource["scope"] == "Namespaced"
    assert resource["subresources"][0]["subresource"] == "status"


async def test_openapi_v3_lists_patch_operations_only(http: Http) -> None:
    status, index = await http.get("/openapi/v3")
    assert status == 200
    url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
    status, doc = await http.get(url.split("?")[0])
    assert status == 200
    patch = doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "example.com", "version": "v1", "kind": "Widget"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    status, _ = await http.get("/openapi/v2")
    assert status == 404


async def test_events_in_both_api_groups(http: Http) -> None:
    core = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Issued", "message": "hello", "type": "Normal"}
    status, _ = await http.post("/api/v1/namespaces/default/events", core)
    assert status == 201
    _, new = await http.get("/apis/events.k8s.io/v1/namespaces/default/events/e1")
    assert new["apiVersion"] == "events.k8s.io/v1"
    assert new["regarding"]["name"] == "p"
    assert new["note"] == "hello"
    modern = {"metadata": {"name": "e2"}, "regarding": {"kind": "Pod", "name": "q"}, "note": "hi",
              "reason": "Renewed", "type": "Normal", "action": "Renew", "reportingController": "mtls",
              "reportingInstance": "mtls-1", "eventTime": "2030-01-01T00:00:00.000000Z"}
    status, _ = await http.post("/apis/events.k8s.io/v1/namespaces/default/events", modern)
    assert status == 201
    _, listed = await http.get("/api/v1/namespaces/default/events", fieldSelector="involvedObject.name=q")
    assert [(e["metadata"]["name"], e["message"]) for e in listed["items"]] == [("e2", "hi")]


async def test_leases_are_served(http: Http) -> None:
    lease = {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    status, created = await http.post("/apis/coordination.k8s.io/v1/namespaces/default/leases", lease)
    assert status == 201
    created["spec"]["holderIdentity"] = "b"
    status, updated = await http.put("/apis/coordination.k8s.io/v1/namespaces/default/leases/leader", created)
    assert status == 200
    assert updated["spec"]["holderIdentity"] == "b"


async def test_every_namespace_gets_a_default_service_account(http: Http) -> None:
    await http.post("/api/v1/namespaces", {"metadata": {"name": "shop"}})
    status, sa = await http.get("/api/v1/namespaces/shop/serviceaccounts/default")
    assert status == 200
    assert sa["kind"] == "ServiceAccount"


async def test_namespace_has_phase_and_name_label(http: Http) -> None:
    _, ns = await http.post("/api/v1/namespaces", {"metadata": {"name": "shop"}})
    assert ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "shop"


async def test_webhook_configurations_are_stored(http: Http) -> None:
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    status, _ = await http.post(path, {"metadata": {"name": "mtls"}, "webhooks": []})
    assert status == 201
    status, _ = await http.get(f"{path}/mtls")
    assert status == 200
