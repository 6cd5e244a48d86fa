"""assignment.py: which pods an identity serves and the Secret name each gets (pure, table-tested)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from mtls_operator import constants as c
from mtls_operator.rules.assignment import Assignment, assign_pods
from mtls_operator.rules.plan import IdentityRef, PodInfo
from mtls_operator.rules.spec import IdentitySpec, parse_identity_spec, parse_label_selector

WEB = parse_label_selector({"matchLabels": {"app": "web"}})
ME = IdentityRef("shop", "web", "uid-web", datetime(2026, 2, 1, tzinfo=UTC), WEB, None)
OLDER = IdentityRef("shop", "old", "uid-old", datetime(2026, 1, 1, tzinfo=UTC), WEB, None)
OPT_IN = {c.INJECT_LABEL: c.INJECT_VALUE}
SPEC = parse_identity_spec({"selector": {"matchLabels": {"app": "web"}}}, namespace="shop",
                           cluster_domain="cluster.local")
AS_WEB = parse_identity_spec({"selector": {"matchLabels": {"app": "web"}}, "serviceAccountName": "web"},
                             namespace="shop", cluster_domain="cluster.local")


def assign(pods: list[PodInfo], *, spec: IdentitySpec = SPEC, owners: dict[str, str | None] | None = None,
           others: list[IdentityRef] | None = None) -> Assignment:
    return assign_pods(ME, others or [], pods, spec=spec, cluster_domain="cluster.local", owners=owners or {})


def pod(name: str, *, uid: str | None = None, account: str = "default", annotation: str | None = None,
        terminating: bool = False, finished: bool = False, app: str = "web", hostname: str | None = None,
        subdomain: str | None = None) -> PodInfo:
    return PodInfo("shop", name, uid or f"uid-{name}", {**OPT_IN, "app": app}, account, annotation, terminating,
                   finished, hostname=hostname, subdomain=subdomain)


def test_served_pods_get_their_names() -> None:
    plan = assign([pod("web-1"), pod("web-0"), pod("api-0", app="api")])
    assert [(name, p.name) for name, p in plan.assigned] == [("web-web-0", "web-0"), ("web-web-1", "web-1")]
    assert plan.pods == 2
    assert plan.keep == {"web-web-0", "web-web-1"}


def test_an_older_identity_serves_the_pod() -> None:
    plan = assign([pod("web-0")], others=[OLDER])
    assert plan.conflicts == [("web-0", "old")]
    assert plan.assigned == []


@pytest.mark.parametrize(
    ("the_pod", "owners", "keep"),
    [
        pytest.param(pod("web-0", finished=True), {"web-web-0": "uid-web-0"}, set(), id="finished-loses-it"),
        pytest.param(pod("web-0", terminating=True), {"web-web-0": "uid-web-0"}, {"web-web-0"},
                     id="terminating-keeps-it"),
        pytest.param(pod("web-0", account="other"), {"web-web-0": "uid-web-0"}, set(), id="wrong-account"),
    ],
)
def test_pods_not_served_now(the_pod: PodInfo, owners: dict[str, str | None], keep: set[str]) -> None:
    plan = assign([the_pod], spec=AS_WEB, owners=owners)
    assert (plan.pods, plan.assigned, plan.keep) == (0, [], keep)


def test_a_bad_annotation_fails_its_pod_only() -> None:
    plan = assign([pod("web-0", annotation="Not_A_Name"), pod("web-1"),
                   pod("web-2", hostname="Bad_Label", subdomain="web")])
    assert plan.pods == 3
    assert [name for name, _ in plan.assigned] == ["web-web-1"]
    assert [p for p, _ in plan.invalid] == ["web-0", "web-2"]


def test_two_pods_claiming_one_name_the_owner_keeps_it() -> None:
    pods = [pod("a", annotation="shared"), pod("b", annotation="shared")]
    plan = assign(pods, owners={"shared": "uid-b"})
    assert [(name, p.name) for name, p in plan.assigned] == [("shared", "b")]
    assert plan.duplicates == [("a", "pod a: Secret name shared is already used by pod b (check the "
                                      f"{c.SECRET_NAME_ANNOTATION} annotations)")]
    unowned = assign(pods)
    assert [p.name for _, p in unowned.assigned] == ["a"]


def test_a_pod_with_a_pod_certificate_volume_for_our_signer_gets_no_secret() -> None:
    ours = dataclasses.replace(pod("web-1"), pod_certificate_signers=frozenset({"mtls.dev/spiffe"}))
    theirs = dataclasses.replace(pod("web-2"), pod_certificate_signers=frozenset({"example.com/x"}))
    plan = assign_pods(ME, [], [pod("web-0"), ours, theirs], spec=SPEC, cluster_domain="cluster.local",
                       owners={"web-web-1": "uid-web-1"}, signer="mtls.dev/spiffe")
    assert [name for name, _ in plan.assigned] == ["web-web-0", "web-web-2"]
    assert (plan.pods, plan.pod_certificates) == (2, ["web-1"])
    assert "web-web-1" not in plan.keep  # a Secret left from before is not the pod's: it goes
