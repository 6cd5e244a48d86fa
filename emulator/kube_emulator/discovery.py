"""Discovery documents: /version, /api, /apis, /api/v1, /apis/<group>[/<version>]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kube_emulator.resources import ResourceInfo

if TYPE_CHECKING:
    from kube_emulator.store import Emulator

Obj = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

VERSION: Obj = {
    "major": "1",
    "minor": "35",
    "gitVersion": "v1.35.0-mtls-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-12-17T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(emulator: Emulator) -> Obj:
    groups = emulator.groups()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in sorted(groups.items()) if name],
    }


def api_group(emulator: Emulator, name: str) -> Obj | None:
    versions = emulator.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _entries(info: ResourceInfo) -> list[Obj]:
    main: Obj = {
        "name": info.plural,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": list(info.verbs),
    }
    if info.short_names:
        main["shortNames"] = list(info.short_names)
    if info.categories:
        main["categories"] = list(info.categories)
    entries = [main]
    if info.status_subresource:
        entries.append({
            "name": f"{info.plural}/status",
            "singularName": "",
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": ["get", "patch", "update"],
        })
    return entries


def api_resource_list(emulator: Emulator, group: str, version: str) -> Obj | None:
    infos = [i for i in emulator.resources() if i.group == group and i.version == version]
    if not infos:
        return None
    resources = [entry for info in sorted(infos, key=lambda i: i.plural) for entry in _entries(info)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def aggregated(emulator: Emulator, *, legacy: bool) -> Obj:
    """apidiscovery.k8s.io/v2 APIGroupDiscoveryList for /api (legacy) or /apis."""
    items = []
    for name, versions in sorted(emulator.groups().items()):
        if (name == "") != legacy:
            continue
        version_entries = []
        for version in versions:
            resources = []
            for info in sorted(emulator.resources(), key=lambda i: i.plural):
                if info.group != name or info.version != version:
                    continue
                entry: Obj = {
                    "resource": info.plural,
                    "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                    "scope": "Namespaced" if info.namespaced else "Cluster",
                    "singularResource": info.singular,
                    "verbs": list(info.verbs),
                }
                if info.short_names:
                    entry["shortNames"] = list(info.short_names)
                if info.categories:
                    entry["categories"] = list(info.categories)
                if info.status_subresource:
                    entry["subresources"] = [{
                        "subresource": "status",
                        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                        "verbs": ["get", "patch", "update"],
                    }]
                resources.append(entry)
            version_entries.append({"version": version, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": name, "creationTimestamp": None}, "versions": version_entries})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


# ------------------------------------------------------------------------------- OpenAPI v3
# Only what clients look up to learn that the server validates fields itself: per group/version,
# the PATCH operation of every resource (tagged with its GVK) with the fieldValidation parameter.
# No schemas: kubectl then skips client-side validation and sends fieldValidation=Strict.
def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_index(emulator: Emulator) -> Obj:
    paths = {}
    for group, versions in emulator.groups().items():
        for version in versions:
            key = _gv_key(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={emulator.resource_version}"}
    return {"paths": dict(sorted(paths.items()))}


def openapi_v3_group_version(emulator: Emulator, key: str) -> Obj | None:
    infos = [i for i in emulator.resources() if _gv_key(i.group, i.version) == key.strip("/")]
    if not infos:
        return None
    paths: Obj = {}
    for info in infos:
        prefix = f"/{_gv_key(info.group, info.version)}"
        base = f"{prefix}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"{prefix}/{info.plural}"
        gvk = {"group": info.group, "version": info.version, "kind": info.kind}
        parameters = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        if info.namespaced:
            parameters.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
        paths[f"{base}/{{name}}"] = {
            "parameters": parameters,
            "patch": {
                "operationId": f"patch{info.kind}",
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                ],
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
