"""helm install into the real API server: the CRD is accepted (structural, its CEL rules within the
cost budget) and the API server answers every identity case of the CRD's unit tests as they predict.

tests/unit/test_crd_cel.py evaluates the CRD's ``x-kubernetes-validations`` with cel-python, a model
of what kube-apiserver does; here the real one judges the same cases (``dryRun=All``: nothing is
stored), so a rule the model gets wrong fails here.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import NAMESPACE, RELEASE, Cluster, Release, identities_path
from tests.unit.test_crd_cel import CASES, RULE_NAMES, Case
from tests.unit.test_crd_cel import NAMESPACE as CASES_NAMESPACE

pytestmark = pytest.mark.e2e


def test_helm_install_creates_the_chart_objects(cluster: Cluster, release: Release) -> None:
    status = cluster.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout
    assert '"status":"deployed"' in status.replace(" ", "")
    for kind, path in (
        ("ServiceAccount", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{release.service_account}"),
        ("ClusterRole", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{RELEASE}"),
        ("Deployment", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}"),
    ):
        answer = cluster.api.get(path)
        assert answer.ok, f"{kind}: {answer.body}"


def test_the_crd_is_established_within_the_cel_cost_budget(cluster: Cluster, release: Release) -> None:
    answer = cluster.api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/mtlsidentities.mtls.dev")
    assert answer.ok, answer.body
    conditions = {item["type"]: item for item in answer["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    # A schema that is not structural, or whose rules exceed the cost budget, is refused on create
    # (helm install would have failed) or flagged by this condition.
    assert conditions.get("NonStructuralSchema", {}).get("status") != "True"
    # The CRD's rules were compiled and estimated by the API server: a dry-run update of the same
    # object is accepted, and so is an identity.
    crd = answer.body
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}?dryRun=All"
    again = cluster.api.request("PUT", path, crd)
    assert again.ok, again.body


def _expected_messages(case: Case) -> dict[str, tuple[str, str]]:
    return {name: RULE_NAMES[name] for name in case.fails}


@pytest.fixture(scope="module")
def cases_namespace(cluster: Cluster, release: Release) -> str:
    answer = cluster.api.create("/api/v1/namespaces", {"metadata": {"name": CASES_NAMESPACE}})
    assert answer.ok or answer.status == 409, answer.body
    return CASES_NAMESPACE


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_api_server_judges_identities_as_the_cel_model_does(cluster: Cluster, cases_namespace: str,
                                                                case: Case) -> None:
    answer = cluster.api.request("POST", identities_path(cases_namespace) + "?dryRun=All", case.identity)
    if not case.fails:
        assert answer.status == 201, f"{case.id}: the API server refused a good identity: {answer.body}"
        return
    assert answer.status == 422, f"{case.id}: expected 422 Invalid, got {answer.status}: {answer.body}"
    assert answer["reason"] == "Invalid"
    causes: list[dict[str, Any]] = answer["details"]["causes"]
    for name, (_path, message) in _expected_messages(case).items():
        assert any(message in cause.get("message", "") for cause in causes), (
            f"{case.id}: rule {name} ({message!r}) is not among the API server's causes: {causes}")
    known = [message for _path, message in RULE_NAMES.values()]
    unexpected = [cause for cause in causes if not any(message in cause.get("message", "") for message in
                                                       (m for _p, m in _expected_messages(case).values()))
                  and any(message in cause.get("message", "") for message in known)]
    assert not unexpected, f"{case.id}: rules the model says hold rejected it: {unexpected}"


def test_the_api_server_is_the_release_under_test(cluster: Cluster) -> None:
    if cluster.control_plane is None:
        pytest.skip("an external cluster runs whatever release it runs")
    answer = cluster.api.get("/version")
    assert answer["gitVersion"] == f"v{cluster.control_plane.version.lstrip('v')}", answer.body
