"""Sharded mode in the chart: one Deployment and one Lease per shard, its namespace selector, one CA rotator."""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from mtls_operator.config import ENV_POD_NAME, settings_from_env
from tests.chart.conftest import HELMS, RELEASE, Case, Rendered, helm_template, render

SHARDS: dict[str, Any] = {"shards": [
    {"name": "a", "namespaceSelector": "mtls.dev/shard=a"},
    {"name": "rest", "namespaceSelector": "mtls.dev/shard notin (a)"},
]}


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


@pytest.fixture(scope="module", params=HELMS)
def sharded(request: pytest.FixtureRequest) -> Rendered:
    return render(str(request.param), Case(SHARDS))


def test_one_deployment_per_shard_each_with_its_selector_lease_and_pods(sharded: Rendered) -> None:
    deployments = {d["metadata"]["name"]: d for d in sharded.all("Deployment")}
    assert sorted(deployments) == [f"{RELEASE}-a", f"{RELEASE}-rest"]
    for shard in SHARDS["shards"]:
        deployment = deployments[f"{RELEASE}-{shard['name']}"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["mtls.dev/shard"] == shard["name"], "the Deployments' selectors do not overlap"
        assert deployment["spec"]["template"]["metadata"]["labels"]["mtls.dev/shard"] == shard["name"]
        env = env_of(deployment)
        settings = settings_from_env({k: v for k, v in env.items() if k != ENV_POD_NAME} | {ENV_POD_NAME: "p"})
        assert settings.shard_namespace_selector == shard["namespaceSelector"]
        assert settings.lease_name == f"{RELEASE}-{shard['name']}"
        assert settings.ca_rotation is (shard["name"] == "a"), "exactly the first shard drives CA rotation"


def test_rbac_grants_each_shards_lease_and_the_namespace_watch(sharded: Rendered) -> None:
    (role,) = [r for r in sharded.all("Role") if any("leases" in rule["resources"] for rule in r["rules"])]
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert [sorted(rule["resourceNames"]) for rule in named] == [[f"{RELEASE}-a", f"{RELEASE}-rest"]]
    (cluster_role,) = [r for r in sharded.all("ClusterRole") if r["metadata"]["name"] == RELEASE]
    namespaces = [rule for rule in cluster_role["rules"] if rule["resources"] == ["namespaces"]]
    assert [rule["verbs"] for rule in namespaces] == [["list", "watch"]]


def test_webhook_service_reaches_every_shard(sharded: Rendered) -> None:
    service = next(s for s in sharded.all("Service") if s["metadata"]["name"] == f"{RELEASE}-webhook")
    for deployment in sharded.all("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.utils.latest_version()])
def test_sharded_objects_valid_for_kubernetes(sharded: Rendered, version: str) -> None:
    for obj in sharded.objects:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(("shards", "complaint"), [
    ([{"name": "a", "namespaceSelector": "x=1"}, {"name": "a", "namespaceSelector": "x=2"}], "its own name"),
    ([{"name": "A", "namespaceSelector": "x=1"}], "shards"),
    ([{"name": "a", "namespaceSelector": ""}], "shards"),
    ([{"name": "a"}], "namespaceSelector"),
    ([{"name": "a", "namespaceSelector": "x=1", "replicas": 3}], "replicas"),
])
def test_bad_shards_are_refused(shards: list[dict[str, Any]], complaint: str) -> None:
    result = helm_template("helm", {"shards": shards})
    assert result.returncode != 0
    assert complaint in result.stderr
