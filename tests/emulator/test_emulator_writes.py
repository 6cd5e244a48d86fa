"""Updates and patches: optimistic concurrency, patch formats, PUT; one test per rule."""

from __future__ import annotations

import base64

from .conftest import Http, secret, widget

SECRETS = "/api/v1/namespaces/default/secrets"
WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"
PODS = "/api/v1/namespaces/default/pods"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]}]}}


async def test_stale_resource_version_gets_409(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    stale = created["metadata"]["resourceVersion"]
    await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": "1"}}})
    created["metadata"]["labels"] = {"y": "2"}
    status, body = await http.put(f"{SECRETS}/a", created)
    assert status == 409
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on secrets "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    status, body = await http.patch(f"{SECRETS}/a", {"metadata": {"resourceVersion": stale, "labels": {"z": "3"}}})
    assert status == 409
    assert body["reason"] == "Conflict"


async def test_current_resource_version_in_a_patch_is_accepted(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    rv = created["metadata"]["resourceVersion"]
    status, body = await http.patch(f"{SECRETS}/a", {"metadata": {"resourceVersion": rv, "labels": {"z": "3"}}})
    assert status == 200
    assert body["metadata"]["labels"] == {"z": "3"}


async def test_put_replaces_the_object(http: Http) -> None:
    _, created = await http.post(WIDGETS, widget("w", size=1, tags=["a"]))
    created["spec"] = {"size": 5}
    status, body = await http.put(f"{WIDGETS}/w", created)
    assert status == 200
    assert body["spec"] == {"size": 5, "color": "red"}
    assert body["metadata"]["uid"] == created["metadata"]["uid"]
    assert body["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


async def test_put_without_resource_version_is_unconditional(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"x": "1"}}})
    del created["metadata"]["resourceVersion"]
    status, _ = await http.put(f"{SECRETS}/a", created)
    assert status == 200


async def test_put_missing_is_404(http: Http) -> None:
    status, _ = await http.put(f"{SECRETS}/nope", secret("nope"))
    assert status == 404


async def test_merge_patch(http: Http) -> None:
    await http.post(WIDGETS, widget("w", size=1, code="abc", tags=["a", "b"]))
    status, body = await http.patch(f"{WIDGETS}/w", {"spec": {"code": None, "tags": ["c"]},
                                                     "metadata": {"annotations": {"k": "v"}}})
    assert status == 200
    assert body["spec"] == {"size": 1, "color": "red", "tags": ["c"]}
    assert body["metadata"]["annotations"] == {"k": "v"}


async def test_json_patch_operations(http: Http) -> None:
    await http.post(WIDGETS, widget("w", size=1, tags=["a", "b"]))
    ops = [
        {"op": "add", "path": "/spec/tags/-", "value": "c"},
        {"op": "remove", "path": "/spec/tags/0"},
        {"op": "replace", "path": "/spec/size", "value": 7},
        {"op": "copy", "from": "/spec/color", "path": "/spec/code"},
        {"op": "move", "from": "/spec/code", "path": "/metadata/labels"},
    ]
    ops[-1] = {"op": "add", "path": "/metadata/labels", "value": {"a/b": "c"}}
    ops.append({"op": "test", "path": "/metadata/labels/a~1b", "value": "c"})
    status, body = await http.patch(f"{WIDGETS}/w", ops, content_type=JSON_PATCH)
    assert status == 200, body
    assert body["spec"]["tags"] == ["b", "c"]
    assert body["spec"]["size"] == 7
    assert body["spec"]["code"] == "red"
    assert body["metadata"]["labels"] == {"a/b": "c"}


async def test_json_patch_test_op_failure(http: Http) -> None:
    _, created = await http.post(SECRETS, secret("a"))
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    status, body = await http.patch(f"{SECRETS}/a", ops, content_type=JSON_PATCH)
    assert status == 422
    assert body["reason"] == "Invalid"
    # As kube-apiserver (NewGenericServerResponse): the patch error itself is not in the answer.
    assert body["message"] == "the server rejected our request due to an error in our request"
    _, current = await http.get(f"{SECRETS}/a")
    assert "finalizers" not in current["metadata"]
    ops[0]["value"] = created["metadata"]["resourceVersion"]
    status, body = await http.patch(f"{SECRETS}/a", ops, content_type=JSON_PATCH)
    assert status == 200
    assert body["metadata"]["finalizers"] == ["x"]


async def test_json_patch_on_missing_path_is_422(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, _ = await http.patch(f"{SECRETS}/a", [{"op": "remove", "path": "/metadata/labels/x"}],
                                 content_type=JSON_PATCH)
    assert status == 422


async def test_strategic_merge_patch_merges_lists_by_key(http: Http) -> None:
    deployments = "/apis/apps/v1/namespaces/default/deployments"
    template = {"spec": pod("p")["spec"]}
    await http.post(deployments, {"metadata": {"name": "d"}, "spec": {"template": template}})
    patch = {"metadata": {"finalizers": ["f1"]},
             "spec": {"template": {"spec": {"containers": [
                 {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
                 {"name": "sidecar", "image": "side:1"},
             ]}}}}
    status, body = await http.patch(f"{deployments}/d", patch, content_type=STRATEGIC)
    assert status == 200, body
    app, sidecar = body["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "app:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert sidecar == {"name": "sidecar", "image": "side:1"}
    assert body["metadata"]["finalizers"] == ["f1"]
    assert body["metadata"]["generation"] == 2
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}},
              "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}
    status, body = await http.patch(f"{deployments}/d", delete, content_type=STRATEGIC)
    assert status == 200, body
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["app"]
    assert body["metadata"].get("finalizers", []) == []


async def test_strategic_merge_patch_on_custom_resources_is_415(http: Http) -> None:
    await http.post(WIDGETS, widget("w"))
    status, body = await http.patch(f"{WIDGETS}/w", {"spec": {"size": 2}}, content_type=STRATEGIC)
    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"


async def test_server_side_apply_creates_then_merges(http: Http) -> None:
    manifest = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 2, tags: [a]}\n"
    status, body = await http.patch(f"{WIDGETS}/w", manifest, content_type=APPLY, fieldManager="test")
    assert status == 201
    assert body["spec"] == {"size": 2, "color": "red", "tags": ["a"]}
    status, body = await http.patch(f"{WIDGETS}/w", "spec: {color: blue}\n", content_type=APPLY, fieldManager="test")
    assert status == 200
    assert body["spec"] == {"size": 2, "color": "blue", "tags": ["a"]}


async def test_server_side_apply_requires_a_field_manager(http: Http) -> None:
    status, _ = await http.patch(f"{WIDGETS}/w", "spec: {size: 2}\n", content_type=APPLY)
    assert status in (400, 422)


async def test_unknown_patch_type_is_415(http: Http) -> None:
    await http.post(SECRETS, secret("a"))
    status, _ = await http.patch(f"{SECRETS}/a", {"a": 1}, content_type="text/plain")
    assert status == 415


async def test_secret_string_data_is_folded_into_base64_data(http: Http) -> None:
    status, body = await http.post(SECRETS, secret("a", stringData={"tls.key": "pem"}, data={"x": "eA=="}))
    assert status == 201
    assert "stringData" not in body
    assert body["data"] == {"x": "eA==", "tls.key": base64.b64encode(b"pem").decode()}
    assert body["type"] == "Opaque"


async def test_secret_data_must_be_base64(http: Http) -> None:
    # As kube-apiserver: the body cannot be decoded (Go's base64 stops at byte 3, the space), so 400.
    body = secret("a", data={"x": "not base64!"})
    del body["stringData"]
    status, result = await http.post(SECRETS, body)
    assert status == 400
    assert result["reason"] == "BadRequest"
    assert result["message"] == ('Secret in version "v1" cannot be handled as a Secret: '
                                 "illegal base64 data at input byte 3")


async def test_tls_secret_needs_its_keys(http: Http) -> None:
    body = secret("a", type="kubernetes.io/tls")
    status, result = await http.post(SECRETS, body)
    assert status == 422
    assert {c["field"] for c in result["details"]["causes"]} == {"data[tls.crt]", "data[tls.key]"}


async def test_pod_gets_defaults_and_needs_containers(http: Http) -> None:
    status, body = await http.post(PODS, pod("p"))
    assert status == 201
    assert body["spec"]["serviceAccountName"] == "default"
    assert body["status"]["phase"] == "Pending"
    status, body = await http.post(PODS, {"metadata": {"name": "q"}, "spec": {"containers": []}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.containers"


async def test_pod_spec_is_immutable_except_images(http: Http) -> None:
    await http.post(PODS, pod("p"))
    status, _ = await http.patch(f"{PODS}/p", {"spec": {"serviceAccountName": "other"}})
    assert status == 422
    status, _ = await http.patch(f"{PODS}/p", {"metadata": {"labels": {"a": "b"}}})
    assert status == 200


async def test_dry_run_does_not_store(http: Http) -> None:
    status, _ = await http.post(SECRETS, secret("a"), dryRun="All")
    assert status == 201
    status, _ = await http.get(f"{SECRETS}/a")
    assert status == 404


async def test_configmap_data_must_be_strings(http: Http) -> None:
    configmaps = "/api/v1/namespaces/default/configmaps"
    status, created = await http.post(configmaps, {"metadata": {"name": "c"}, "data": {"ca.crt": "pem"}})
    assert status == 201
    assert created["data"] == {"ca.crt": "pem"}
    status, body = await http.post(configmaps, {"metadata": {"name": "d"}, "data": {"n": 1}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "data[n]"


async def test_immutable_secret_data_cannot_change(http: Http) -> None:
    await http.post(SECRETS, secret("a", immutable=True))
    status, _ = await http.patch(f"{SECRETS}/a", {"stringData": {"key": "other"}})
    assert status == 422
    status, _ = await http.patch(f"{SECRETS}/a", {"metadata": {"labels": {"ok": "yes"}}})
    assert status == 200
