"""The chart's RBAC against the real API server's audit log, both ways: every request the operator made
(as the chart's ServiceAccount, over the whole session so far) was allowed, and every rule the chart
grants was used.

This module runs after the others that drive the operator (conftest orders the modules) and first
walks the paths they may not have: a spec change, a hand-edited trust bundle, a managed Secret
deleted behind the operator's back, a spec the validating webhook would refuse (applied while no
replica serves it: failurePolicy Ignore), and an identity deleted with its Secrets. The audit log
records every request of a ServiceAccount of the release namespace (tests/e2e/controlplane.py) with
the authorizer's decision; tests/chart/test_rbac_usage.py makes the same comparison on the emulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.rbac import Request, grants, permits
from tests.e2e.conftest import (
    NAMESPACE,
    Cluster,
    OperatorProcess,
    Release,
    core_path,
    identities_path,
    identity_body,
    managed_secrets,
    needs_local,
    pod_body,
    wait_for,
)

pytestmark = pytest.mark.e2e
NS = "e2e-rbac"
TEST_CLIENT = "mtls-operator-e2e"  # tests/e2e/client.py's User-Agent


def _serial(cluster: Cluster, secret: str) -> str:
    serial: str = managed_secrets(cluster, NS)[secret]["metadata"]["annotations"]["mtls.dev/serial"]
    return serial


def _scenario(cluster: Cluster, operator: OperatorProcess) -> None:
    assert cluster.api.create("/api/v1/namespaces", {"metadata": {"name": NS}}).ok
    body = identity_body("payments", NS, dnsNames=["payments", f"payments.{NS}.svc"])
    assert cluster.api.create(identities_path(NS), body).status == 201
    assert cluster.api.create(core_path("pods", NS), pod_body("payments-0", NS, "payments")).ok
    wait_for(lambda: "payments-payments-0" in managed_secrets(cluster, NS), within=30, what="the first Secret")

    before = _serial(cluster, "payments-payments-0")
    assert cluster.api.patch(identities_path(NS, "payments"), {"spec": {"dnsNames": ["payments"]}}).ok
    wait_for(lambda: _serial(cluster, "payments-payments-0") != before, within=30, what="re-issue on a spec change")

    assert cluster.api.patch(core_path("configmaps", NS, "mtls-trust-bundle"), {"data": {"ca.crt": "edited"}}).ok
    # The operator does not watch ConfigMaps: the identity's next pass repairs it (an event on one of
    # its pods starts one now, as the renewal timer would later).
    assert cluster.api.patch(core_path("pods", NS, "payments-0"), {"metadata": {"annotations": {"e2e/poke": "1"}}}).ok
    wait_for(lambda: cluster.api.get(core_path("configmaps", NS, "mtls-trust-bundle"))["data"]["ca.crt"] != "edited",
             within=60, what="the trust bundle repaired")

    assert cluster.api.delete(core_path("secrets", NS, "payments-payments-0")).ok
    wait_for(lambda: "payments-payments-0" in managed_secrets(cluster, NS), within=30, what="the Secret repaired")

    # A spec the validating webhook refuses gets in while no replica serves it (failurePolicy Ignore);
    # the operator, started again, refuses it on the status and with a Warning Event.
    operator.stop()
    foreign = identity_body("foreign", NS, dnsNames=["db.other-namespace.svc"])
    created = cluster.api.create(identities_path(NS), foreign)
    assert created.status == 201, created.body
    operator.start()
    wait_for(lambda: any(event.get("reason") == "PolicyViolation" for event in
                         cluster.api.get(core_path("events", NS))["items"]),
             within=60, what="the PolicyViolation Event")

    assert cluster.api.delete(identities_path(NS, "payments")).ok
    wait_for(lambda: cluster.api.get(identities_path(NS, "payments")).status == 404
             and not any(name.startswith("payments-") for name in managed_secrets(cluster, NS)),
             within=60, what="the identity and its Secrets deleted")
    assert cluster.api.delete(f"/api/v1/namespaces/{NS}").ok


def _signer_checks(event: dict[str, Any], signer: str) -> list[Request]:
    """The authorizer checks the API server makes inside a request, which the audit log does not list: a
    PodCertificateRequest status written asks ``sign`` on the signer, a ClusterTrustBundle of the signer
    written asks ``attest`` (by the signer's name, as RBAC's resourceNames match it)."""
    ref = event.get("objectRef") or {}
    code = (event.get("responseStatus") or {}).get("code", 0)
    if ref.get("apiGroup") != "certificates.k8s.io" or event.get("verb") not in ("create", "update", "patch") \
            or not 200 <= code < 300:
        return []
    if ref.get("resource") == "podcertificaterequests" and ref.get("subresource") == "status":
        return [Request("certificates.k8s.io", "signers", "sign", None, signer)]
    if ref.get("resource") == "clustertrustbundles" and not ref.get("subresource"):
        return [Request("certificates.k8s.io", "signers", "attest", None, signer)]
    return []


def _requests(events: list[dict[str, Any]], username: str,
              signer: str = "mtls.dev/spiffe") -> tuple[list[Request], list[dict[str, Any]]]:
    seen: list[Request] = []
    forbidden: list[dict[str, Any]] = []
    for event in events:
        if event.get("user", {}).get("username") != username or event.get("userAgent") == TEST_CLIENT:
            continue  # another account, or the test's own requests with the operator's token
        # The authorizer's decision, not the status code: a 403 from admission (a create in a
        # namespace being deleted, which the operator meets as test namespaces go) is not RBAC's.
        if (event.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid":
            forbidden.append({key: event.get(key) for key in ("verb", "requestURI", "objectRef", "annotations")})
        ref = event.get("objectRef")
        if not ref:
            continue  # discovery (/api, /apis, /version): granted to every authenticated user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        seen.append(Request(ref.get("apiGroup", ""), resource, event["verb"], ref.get("namespace"), ref.get("name")))
        seen.extend(_signer_checks(event, signer))
    return seen, forbidden


def test_every_request_is_allowed_and_every_rule_is_used(cluster: Cluster, release: Release,
                                                          operator: OperatorProcess) -> None:
    needs_local(cluster)
    assert cluster.control_plane is not None
    _scenario(cluster, operator)
    username = f"system:serviceaccount:{NAMESPACE}:{release.service_account}"
    events = list(cluster.control_plane.audit_events())
    used, forbidden = _requests(events, username, release.signer_name)
    assert used, f"no request of {username} in the audit log"
    assert forbidden == [], f"the API server refused requests of the operator: {forbidden[:10]}"

    granted = grants(release.manifest, release.service_account, NAMESPACE)
    refused = sorted({r for r in used if not any(permits(grant, r) for grant in granted)}, key=str)
    assert refused == [], f"requests the chart's rules do not grant (allowed by another binding?): {refused}"
    unused = sorted((g for g in granted if not any(permits(g, r) for r in used)), key=str)
    assert unused == [], f"granted but never used by the operator (least privilege): {unused}"
