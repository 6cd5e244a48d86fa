"""kubectl mtls status: identities from their status and Secrets, urgency order, --expiring-within (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from mtls_operator import constants as c
from mtls_operator.plugin import render
from mtls_operator.plugin.facts import (
    CAView,
    IdentityRow,
    Urgency,
    ca_view_from_identities,
    ca_view_from_secret,
    expiring_within,
    identity_row,
    parse_within,
    sort_by_urgency,
    urgency,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
CA = CAView(signing="sha256:new", previous="sha256:old", phase="Reissuing", source="ca-secret")


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def secret(identity: str, pod: str, *, not_after: datetime, renew_at: datetime, ca: str = "sha256:new",
           managed: bool = True) -> dict[str, Any]:
    labels = {c.IDENTITY_LABEL: identity, c.POD_LABEL: pod}
    if managed:
        labels[c.MANAGED_BY_LABEL] = c.MANAGER_NAME
    return {"metadata": {"name": f"{identity}-{pod}", "namespace": "shop", "labels": labels, "annotations": {
        c.NOT_AFTER_ANNOTATION: stamp(not_after), c.RENEW_AT_ANNOTATION: stamp(renew_at),
        c.CA_FINGERPRINT_ANNOTATION: ca}}}


def identity(name: str, *, pods: int = 2, issued: int = 2, ready: str = "True", reason: str = "Issued",
             **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"}, "status": {
        "pods": pods, "issued": issued, "conditions": [{"type": "Ready", "status": ready, "reason": reason}],
        **status}}


def row(name: str, *, expiry: datetime | None = None, renewal: datetime | None = None, pods: int = 1,
        issued: int = 1, ready: str = "True", namespace: str = "shop") -> IdentityRow:
    return IdentityRow(namespace=namespace, name=name, ready=ready, reason="", pods=pods, issued=issued,
                       earliest_expiry=expiry, next_renewal=renewal)


def test_identity_row_takes_the_earliest_expiry_and_renewal_and_counts_ca_generations() -> None:
    secrets = [
        secret("payments", "payments-0", not_after=NOW + 20 * H, renew_at=NOW + 12 * H),
        secret("payments", "payments-1", not_after=NOW + 5 * H, renew_at=NOW - H, ca="sha256:old"),
        secret("orders", "orders-0", not_after=NOW + H, renew_at=NOW),  # another identity's
        secret("payments", "payments-2", not_after=NOW, renew_at=NOW, managed=False),  # not ours
    ]
    found = identity_row(identity("payments", caRotationPhase="Reissuing"), secrets, CA)
    assert found.earliest_expiry == NOW + 5 * H
    assert found.next_renewal == NOW - H
    assert found.ca_generations == {"current": 1, "previous": 1}
    assert found.ca_text == "current:1,previous:1"
    assert found.rotation_phase == "Reissuing"
    assert (found.pods, found.issued, found.ready, found.reason) == (2, 2, "True", "Issued")


def test_identity_row_without_secrets_falls_back_to_the_status() -> None:
    found = identity_row(identity("payments", nextRenewalTime=stamp(NOW + 3 * H)), [], CA)
    assert found.earliest_expiry is None
    assert found.next_renewal == NOW + 3 * H
    assert found.ca_text == "-"


def test_identity_row_reads_bad_status_values_as_nothing() -> None:
    body = {"metadata": {"name": "x", "namespace": "shop"}, "status": {"pods": "three", "issued": -1}}
    found = identity_row(body, [], CAView())
    assert (found.pods, found.issued, found.ready) == (0, 0, "Unknown")


@pytest.mark.parametrize(
    ("fingerprint", "expected"),
    [("sha256:new", "current"), ("sha256:old", "previous"), ("sha256:x", "other"), (None, "unknown")],
)
def test_ca_generation(fingerprint: str | None, expected: str) -> None:
    assert CA.generation(fingerprint) == expected


def test_ca_view_from_the_secret_annotations() -> None:
    view = ca_view_from_secret({"mtls.dev/rotation-phase": "Distributing", "mtls.dev/ca-fingerprint": "sha256:a",
                                "mtls.dev/next-ca-fingerprint": "sha256:b"})
    assert (view.signing, view.next, view.phase, view.source, view.rotating) == (
        "sha256:a", "sha256:b", "Distributing", "ca-secret", True)


def test_ca_view_from_identities_takes_the_newest_report() -> None:
    older = identity("a", caFingerprint="sha256:old", caRotationPhase="Idle")
    older["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-27T10:00:00Z"
    newer = identity("b", caFingerprint="sha256:new", caRotationPhase="Reissuing")
    newer["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-27T11:00:00Z"
    view = ca_view_from_identities([newer, older, identity("c")])
    assert (view.signing, view.phase, view.source) == ("sha256:new", "Reissuing", "identity-status")
    assert ca_view_from_identities([]) == CAView()


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        pytest.param(row("a", expiry=NOW - H), Urgency.EXPIRED, id="expired"),
        pytest.param(row("a", expiry=NOW), Urgency.EXPIRED, id="expiring-this-second"),
        pytest.param(row("a", expiry=NOW + H, pods=3, issued=2), Urgency.UNSERVED, id="pods-without-certificates"),
        pytest.param(row("a", expiry=NOW + H, ready="False"), Urgency.NOT_READY, id="not-ready"),
        pytest.param(row("a", expiry=NOW + H, renewal=NOW - H), Urgency.RENEWAL_OVERDUE, id="renewal-overdue"),
        pytest.param(row("a", expiry=NOW + H, renewal=NOW + H), Urgency.OK, id="fine"),
        pytest.param(row("a", pods=0, issued=0), Urgency.OK, id="no-pods"),
    ],
)
def test_urgency(candidate: IdentityRow, expected: Urgency) -> None:
    assert urgency(candidate, NOW) is expected


def test_sort_by_urgency_then_expiry_then_name() -> None:
    rows = [
        row("fine-late", expiry=NOW + 20 * H),
        row("no-certs-yet"),
        row("fine-soon", expiry=NOW + 2 * H),
        row("unserved", expiry=NOW + 10 * H, pods=2, issued=1),
        row("expired", expiry=NOW - H),
        row("b-tie", expiry=NOW + 2 * H, namespace="a"),
    ]
    assert [r.name for r in sort_by_urgency(rows, NOW)] == [
        "expired", "unserved", "b-tie", "fine-soon", "fine-late", "no-certs-yet"]


def test_expiring_within_keeps_expired_and_soon_and_drops_unknown() -> None:
    rows = [row("expired", expiry=NOW - H), row("soon", expiry=NOW + 23 * H), row("edge", expiry=NOW + 24 * H),
            row("later", expiry=NOW + 25 * H), row("none")]
    assert [r.name for r in expiring_within(rows, 24 * H, NOW)] == ["expired", "soon", "edge"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24h", 24 * H), ("90m", timedelta(minutes=90)), ("1h30m", timedelta(minutes=90)), ("30d", timedelta(days=30)),
     (" 7d ", timedelta(days=7)), ("0s", timedelta(0))],
)
def test_parse_within(text: str, expected: timedelta) -> None:
    assert parse_within(text) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "1w", "-1h", "1.5d"])
def test_parse_within_refuses_with_the_flag_named(text: str) -> None:
    with pytest.raises(ValueError, match="--expiring-within"):
        parse_within(text)


# Rendering --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (None, "-"),
        (NOW + timedelta(hours=7, minutes=59, seconds=30), "in 7h59m"),
        (NOW + timedelta(minutes=5, seconds=3), "in 5m3s"),
        (NOW - timedelta(minutes=3), "3m ago"),
        (NOW - timedelta(hours=2, seconds=10), "2h ago"),
        (NOW, "in 0s"),
    ],
)
def test_relative(moment: datetime | None, expected: str) -> None:
    assert render.relative(moment, NOW) == expected


def test_table_pads_columns_like_kubectl() -> None:
    assert render.table(["NAME", "PODS"], [["payments", "3"], ["a", "10"]]).splitlines() == [
        "NAME       PODS",
        "payments   3",
        "a          10",
    ]


def test_status_table_and_data_say_the_same() -> None:
    rows = sort_by_urgency([row("payments", expiry=NOW + 20 * H, renewal=NOW + 12 * H),
                            row("orders", expiry=NOW - H)], NOW)
    lines = render.status_table(rows, NOW, all_namespaces=True).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "READY", "PODS", "ISSUED", "EARLIEST-EXPIRY", "NEXT-RENEWAL",
                                "CA", "ROTATION", "DELIVERY", "URGENCY"]
    assert lines[1].split() == ["shop", "orders", "True", "1", "1", "1h", "ago", "-", "-", "Idle", "Secret",
                                "expired"]
    assert lines[2].split() == ["shop", "payments", "True", "1", "1", "in", "20h", "in", "12h", "-", "Idle",
                                "Secret", "ok"]
    data = render.status_data(rows, NOW)
    assert [item["name"] for item in data["items"]] == ["orders", "payments"]
    assert data["items"][1]["earliestExpiry"] == "2026-11-28T08:00:00Z"
    assert data["items"][0]["urgency"] == "expired"
    # JSON and YAML carry the same document.
    assert json.loads(render.dump(data, "json")) == yaml.safe_load(render.dump(data, "yaml")) == data
    assert "NAMESPACE" not in render.status_table(rows, NOW, all_namespaces=False)
    assert render.status_table([], NOW, all_namespaces=True) == "No identities found."


def test_dump_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="table, json, yaml"):
        render.dump({}, "xml")


def test_a_pod_certificate_identity_shows_its_delivery_and_the_pods_the_kubelet_serves() -> None:
    found = identity_row(identity("inventory", pods=3, issued=1, podCertificatePods=2)
                         | {"spec": {"delivery": "PodCertificate"}}, [], CA)
    assert (found.delivery, found.pod_certificate_pods, found.issued) == ("PodCertificate", 2, 1)
    assert urgency(found, NOW) == Urgency.OK  # the kubelet's pods are not unserved for having no Secret
    short = identity_row(identity("inventory", pods=4, issued=1, podCertificatePods=2), [], CA)
    assert urgency(short, NOW) == Urgency.UNSERVED
    plain = identity_row(identity("payments"), [], CA)
    assert (plain.delivery, plain.pod_certificate_pods) == ("Secret", 0)
    lines = render.status_table([found, plain], NOW, all_namespaces=False).splitlines()
    delivery = lines[0].split().index("DELIVERY")
    assert [line.split()[delivery] for line in lines[1:]] == ["PodCertificate(2)", "Secret"]
    items = render.status_data([found, plain], NOW)["items"]
    assert [(item["delivery"], item["podCertificatePods"]) for item in items] == [("PodCertificate", 2), ("Secret", 0)]
