"""The rendered RBAC as data, and Kubernetes' RBAC authorizer rules to check a request against it.

The rules of the authorizer that matter here (k8s.io/kubernetes plugin/pkg/auth/authorizer/rbac):
a ClusterRole bound by a ClusterRoleBinding grants in every namespace and cluster-wide; a Role bound
by a RoleBinding grants in its namespace only; a rule with resourceNames matches only requests that
name one of those objects in their URL (never a create, list or collection watch, whose URL names
none); ``resource/subresource`` is a resource of its own.
"""

from __future__ import annotations

from typing import NamedTuple

from tests.chart.conftest import Rendered

WILDCARD = "*"


class Grant(NamedTuple):
    """One verb on one resource, as a rule grants it. ``namespace`` None: cluster-wide (a ClusterRole)."""

    namespace: str | None
    group: str
    resource: str  # with its subresource: "mtlsidentities/status"
    verb: str
    name: str | None  # a resourceNames entry; None: any object


class Request(NamedTuple):
    """An API request as the authorizer sees it (the emulator's request log, with the group)."""

    group: str
    resource: str  # with its subresource
    verb: str
    namespace: str | None
    name: str | None


def grants(rendered: Rendered, service_account: str, namespace: str) -> set[Grant]:
    """Every grant bound to the ServiceAccount ``namespace/service_account``."""
    def bound(kind: str, binding_kind: str) -> set[str]:
        names: set[str] = set()
        for binding in rendered.all(binding_kind):
            subjects = binding.get("subjects") or []
            if binding["roleRef"]["kind"] == kind and any(
                subject["kind"] == "ServiceAccount"
                and subject["name"] == service_account
                and subject["namespace"] == namespace
                for subject in subjects
            ):
                names.add(binding["roleRef"]["name"])
        return names

    found: set[Grant] = set()
    cluster_roles = bound("ClusterRole", "ClusterRoleBinding")
    roles = bound("Role", "RoleBinding")
    for role in rendered.all("ClusterRole"):
        if role["metadata"]["name"] in cluster_roles:
            found |= _expand(role, None)
    for role in rendered.all("Role"):
        if role["metadata"]["name"] in roles:
            found |= _expand(role, role["metadata"]["namespace"])
    return found


def _expand(role: dict[str, object], namespace: str | None) -> set[Grant]:
    expanded: set[Grant] = set()
    rules = role.get("rules")
    assert isinstance(rules, list)
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"unexpected rule fields: {rule}"
        names: list[str | None] = list(rule.get("resourceNames") or [None])
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        expanded.add(Grant(namespace, group, resource, verb, name))
    return expanded


def permits(grant: Grant, request: Request) -> bool:
    if (grant.group, grant.resource, grant.verb) != (request.group, request.resource, request.verb):
        return False
    if grant.namespace is not None and grant.namespace != request.namespace:
        return False
    return grant.name is None or grant.name == request.name
