"""The rendered RBAC: no wildcard, exactly the rules the chart README lists, bound to the operator.

That these are the verbs the operator really uses, no more and no fewer, is test_rbac_usage.py's
job (a real operator on the emulator, its request log against these grants).
"""

from __future__ import annotations

import pytest

from tests.chart.conftest import MATRIX, NAMESPACE, RELEASE, Rendered
from tests.chart.rbac import WILDCARD, Grant, grants

FULLNAME = RELEASE

CLUSTER_WIDE = {
    ("mtls.dev", "mtlsidentities", "get"),
    ("mtls.dev", "mtlsidentities", "list"),
    ("mtls.dev", "mtlsidentities", "watch"),
    ("mtls.dev", "mtlsidentities", "patch"),
    ("mtls.dev", "mtlsidentities/status", "patch"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("", "secrets", "create"),
    ("", "secrets", "patch"),
    ("", "secrets", "delete"),
    ("", "configmaps", "get"),
    ("", "configmaps", "list"),
    ("", "configmaps", "create"),
    ("", "configmaps", "patch"),
    ("", "events", "create"),
}
WEBHOOK_CONFIGURATIONS = {
    Grant(None, "admissionregistration.k8s.io", resource, verb, FULLNAME)
    for resource in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
    for verb in ("get", "patch")
}
LEASE = {
    Grant(NAMESPACE, "coordination.k8s.io", "leases", "create", None),
    Grant(NAMESPACE, "coordination.k8s.io", "leases", "get", FULLNAME),
    Grant(NAMESPACE, "coordination.k8s.io", "leases", "update", FULLNAME),
}
BASE = {Grant(None, group, resource, verb, None) for group, resource, verb in CLUSTER_WIDE}
# With podCertificates.enabled: the signer's ClusterTrustBundle (created, then read and updated by its
# name only) and `attest` on that signer alone, which the API server's ctbattest admission checks.
CLUSTER_TRUST_BUNDLE = {
    Grant(None, "certificates.k8s.io", "clustertrustbundles", "create", None),
    Grant(None, "certificates.k8s.io", "clustertrustbundles", "get", "mtls.dev:spiffe:bundle"),
    Grant(None, "certificates.k8s.io", "clustertrustbundles", "update", "mtls.dev:spiffe:bundle"),
    Grant(None, "certificates.k8s.io", "signers", "attest", "mtls.dev/spiffe"),
}

EXPECTED = {
    "defaults": BASE | WEBHOOK_CONFIGURATIONS | LEASE,
    "one-replica": BASE | WEBHOOK_CONFIGURATIONS,
    "webhook-off": BASE | LEASE,
}
# pcrsigner's PodCertificateRequest rules come with the same value; only the bundle's are checked here.
POD_CERTIFICATE_GRANTS = {"pod-certificates": CLUSTER_TRUST_BUNDLE}

# Verbs that hand out more than they say: never for an operator that only manages certificates.
ESCALATING_VERBS = {"escalate", "bind", "impersonate", "deletecollection", "*"}


@pytest.mark.parametrize("name", MATRIX)
def test_no_wildcards_and_no_escalation(rendered: dict[str, Rendered], name: str) -> None:
    roles = rendered[name].all("ClusterRole") + rendered[name].all("Role")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                for item in rule.get(key, []):
                    assert WILDCARD not in item, f"{role['kind']} {key}: {item}"
            assert not set(rule["verbs"]) & ESCALATING_VERBS, rule
            assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings"} & set(rule["resources"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_grants_exactly_the_listed_rules(rendered: dict[str, Rendered], name: str) -> None:
    assert grants(rendered[name], FULLNAME, NAMESPACE) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(POD_CERTIFICATE_GRANTS))
def test_pod_certificates_add_the_cluster_trust_bundle_rules(rendered: dict[str, Rendered], name: str) -> None:
    granted = grants(rendered[name], FULLNAME, NAMESPACE)
    assert POD_CERTIFICATE_GRANTS[name] <= granted
    bundle_rules = {grant for grant in granted if grant.group == "certificates.k8s.io"
                    and (grant.resource == "clustertrustbundles" or grant.verb == "attest")}
    assert bundle_rules == POD_CERTIFICATE_GRANTS[name]
    assert not {grant for grant in grants(rendered["defaults"], FULLNAME, NAMESPACE)
                if grant.group == "certificates.k8s.io"}


def test_every_role_is_bound_to_the_operator(rendered: dict[str, Rendered]) -> None:
    defaults = rendered["defaults"]
    for kind, binding_kind in (("ClusterRole", "ClusterRoleBinding"), ("Role", "RoleBinding")):
        (role,) = defaults.all(kind)
        (binding,) = defaults.all(binding_kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_lease_rules_follow_the_lease_name(rendered: dict[str, Rendered]) -> None:
    custom = rendered["every-setting"]
    lease_grants = {grant for grant in grants(custom, FULLNAME, NAMESPACE) if grant.resource == "leases"}
    assert {grant.name for grant in lease_grants} == {None, "mtls-leader"}
    assert custom.env["MTLS_LEASE_NAME"] == "mtls-leader"


# The signer's: the requests addressed to it, their status, "sign" for its name only, and the objects a
# request is checked against, read by name.
SIGNER = {
    Grant(None, "certificates.k8s.io", "podcertificaterequests", verb, None) for verb in ("list", "watch")
} | {
    Grant(None, "certificates.k8s.io", "podcertificaterequests/status", "update", None),
    Grant(None, "certificates.k8s.io", "signers", "sign", "mtls.dev/spiffe"),
} | {Grant(None, "", resource, "get", None) for resource in ("pods", "serviceaccounts", "nodes")}


def test_pod_certificates_add_the_signer_rules(rendered: dict[str, Rendered]) -> None:
    granted = grants(rendered["pod-certificates"], FULLNAME, NAMESPACE)
    assert granted >= SIGNER
    assert {grant for grant in granted if grant.group == "certificates.k8s.io"} == {
        grant for grant in SIGNER | CLUSTER_TRUST_BUNDLE if grant.group == "certificates.k8s.io"}
    assert not SIGNER & grants(rendered["defaults"], FULLNAME, NAMESPACE)
