"""Planning rules: which identity serves a pod, Secret names and contents, state read back, status."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.k8s.views import SecretView
from mtls_operator.rules.plan import (
    Readiness,
    SecretContent,
    bundle_hash,
    identity_ref,
    identity_status,
    metadata_patch,
    pod_info,
    pod_spec,
    read_secret,
    read_secret_metadata,
    ready_condition,
    reissue_patch,
    secret_body,
    secret_name_for_pod,
    serving_identity,
    summarize_readiness,
)
from mtls_operator.rules.spec import parse_identity_spec

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def pod(name: str = "payments-0", labels: dict[str, str] | None = None, sa: str = "payments",
        annotations: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name, "namespace": "shop", "uid": f"uid-{name}",
        "labels": {c.INJECT_LABEL: "true", "app": "payments"} if labels is None else labels,
        "annotations": annotations or {},
    }
    meta.update(extra)
    return {"metadata": meta, "spec": {"serviceAccountName": sa}, "status": {"phase": "Running"}}


def identity(name: str, created: str, selector: Any = None, sa: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": selector if selector is not None else {"matchLabels": {"app": "payments"}}}
    if sa:
        spec["serviceAccountName"] = sa
    return {"metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "creationTimestamp": created},
            "spec": spec}


@pytest.mark.parametrize(
    ("pod_body", "identities", "expected"),
    [
        (pod(), [identity("a", "2026-01-01T00:00:00Z")], "a"),
        (pod(), [identity("new", "2026-02-01T00:00:00Z"), identity("old", "2026-01-01T00:00:00Z")], "old"),
        (pod(), [identity("b", "2026-01-01T00:00:00Z"), identity("a", "2026-01-01T00:00:00Z")], "a"),
        (pod(labels={"app": "payments"}), [identity("a", "2026-01-01T00:00:00Z")], None),
        (pod(labels={c.INJECT_LABEL: "false", "app": "payments"}), [identity("a", "2026-01-01T00:00:00Z")], None),
        (pod(), [identity("a", "2026-01-01T00:00:00Z", sa="other")], None),
        (pod(), [identity("a", "2026-01-01T00:00:00Z", sa="other"), identity("b", "2026-03-01T00:00:00Z")], "b"),
        (pod(), [identity("bad", "2026-01-01T00:00:00Z", selector={"matchLabels": "x"})], None),
        (pod(), [identity("a", "2026-01-01T00:00:00Z", selector={"matchLabels": {"app": "orders"}})], None),
    ],
    ids=["one-identity", "older-wins", "tie-by-name", "not-opted-in", "opt-in-false", "wrong-sa",
         "sa-filter-leaves-other", "invalid-selector-selects-nothing", "selector-mismatch"],
)
def test_serving_identity(pod_body: dict[str, Any], identities: list[dict[str, Any]], expected: str | None) -> None:
    winner = serving_identity(pod_info(pod_body), [identity_ref(body) for body in identities])
    assert (winner.name if winner else None) == expected


@pytest.mark.parametrize(
    ("identity_name", "pod_name", "annotation", "expected"),
    [
        ("payments", "payments-0", None, "payments-payments-0"),
        ("payments", "payments-0", "custom-secret", "custom-secret"),
        ("a" * 200, "b" * 100, None, None),  # shortened: checked below
    ],
    ids=["default", "annotation", "too-long"],
)
def test_secret_name_for_pod(identity_name: str, pod_name: str, annotation: str | None, expected: str | None) -> None:
    annotations = {c.SECRET_NAME_ANNOTATION: annotation} if annotation else {}
    name = secret_name_for_pod(identity_name, pod_info(pod(pod_name, annotations=annotations)))
    if expected is not None:
        assert name == expected
    else:
        assert len(name) <= 253
        assert name.startswith("a" * 50)
        # Stable and distinct: another pod gets another name.
        other = secret_name_for_pod(identity_name, pod_info(pod("c" * 100)))
        assert name != other
        assert name == secret_name_for_pod(identity_name, pod_info(pod(pod_name)))


@pytest.mark.parametrize(
    "annotation",
    ["Upper-Case", "../other", "ns/secret", "-leading", "a" * 254, "trailing-", "payments\n"],
    ids=["uppercase", "path-escape", "slash", "leading-dash", "too-long", "trailing-dash", "trailing-newline"],
)
def test_secret_name_annotation_refused(annotation: str) -> None:
    with pytest.raises(ValueError, match="not a valid Secret name"):
        secret_name_for_pod("payments", pod_info(pod(annotations={c.SECRET_NAME_ANNOTATION: annotation})))


def headless_pod(hostname: Any, subdomain: Any) -> dict[str, Any]:
    body = pod("db-0")
    body["spec"].update({"hostname": hostname, "subdomain": subdomain})
    return body


SPEC = parse_identity_spec({"selector": {"matchLabels": {"app": "db"}}, "dnsNames": ["db.shop.svc"]}, namespace="shop")


@pytest.mark.parametrize(
    ("hostname", "subdomain", "expected"),
    [
        pytest.param("db-0", "db", ("db.shop.svc", "db-0.db.shop.svc", "db-0.db.shop.svc.corp.local"), id="both"),
        pytest.param("db-0", None, ("db.shop.svc",), id="hostname-only"),
        pytest.param(None, "db", ("db.shop.svc",), id="subdomain-only"),
        pytest.param("", "", ("db.shop.svc",), id="empty"),
    ],
)
def test_pod_spec_adds_the_pods_headless_names(hostname: Any, subdomain: Any, expected: tuple[str, ...]) -> None:
    spec = pod_spec(SPEC, pod_info(headless_pod(hostname, subdomain)), "corp.local")
    assert spec.dns_names == expected
    assert (spec is SPEC) is (len(expected) == 1)


def test_pod_spec_keeps_names_the_identity_already_lists() -> None:
    spec = parse_identity_spec(
        {"selector": {"matchLabels": {"app": "db"}}, "dnsNames": ["db-0.db.shop.svc", "db"]}, namespace="shop"
    )
    assert pod_spec(spec, pod_info(headless_pod("db-0", "db")), "cluster.local").dns_names == (
        "db-0.db.shop.svc", "db", "db-0.db.shop.svc.cluster.local"
    )


def test_the_headless_name_is_in_the_certificate_hash() -> None:
    plain = pod_spec(SPEC, pod_info(pod("db-0")), "cluster.local")
    named = pod_spec(SPEC, pod_info(headless_pod("db-0", "db")), "cluster.local")
    renamed = pod_spec(SPEC, pod_info(headless_pod("db-0", "db-headless")), "cluster.local")
    assert plain.certificate_hash() == SPEC.certificate_hash()  # pods without one keep their certificates
    assert len({plain.certificate_hash(), named.certificate_hash(), renamed.certificate_hash()}) == 3


@pytest.mark.parametrize(
    ("hostname", "subdomain", "phrase"),
    [
        pytest.param("DB_0", "db", "pod db-0: spec.hostname 'DB_0' is not a DNS label", id="hostname"),
        pytest.param("db-0", "a.b", "pod db-0: spec.subdomain 'a.b' is not a DNS label", id="dotted-subdomain"),
        pytest.param("db-0", "*", "spec.subdomain '*'", id="wildcard"),
        pytest.param({"a": 1}, "db", "spec.hostname \"{'a': 1}\" is not a DNS label", id="not-a-string"),
        pytest.param("x" * 64, "db", "spec.hostname", id="too-long"),
    ],
)
def test_a_bad_headless_name_is_an_error_on_that_pod(hostname: Any, subdomain: Any, phrase: str) -> None:
    info = pod_info(headless_pod(hostname, subdomain))  # reading the pod never fails
    with pytest.raises(ValueError, match=re.escape(phrase)):
        pod_spec(SPEC, info, "cluster.local")


CONTENT = SecretContent(
    chain_pem=b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    key_pem=b"key", bundle_pem=b"bundle", spiffe_id="spiffe://cluster.local/ns/shop/sa/payments",
    serial="abc", not_after=NOW + timedelta(hours=24), renew_at=NOW + timedelta(hours=16),
    ca_fingerprint="sha256:00", spec_hash="hash",
)


def test_secret_body_follows_the_design() -> None:
    body = secret_body(name="payments-payments-0", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={"team": "pay"}, template_annotations={"note": "x"})
    meta = body["metadata"]
    assert body["type"] == "kubernetes.io/tls"
    assert set(body["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert meta["labels"] == {"team": "pay", c.MANAGED_BY_LABEL: "mtls-operator", c.IDENTITY_LABEL: "payments",
                              c.POD_LABEL: "payments-0"}
    assert meta["annotations"][c.NOT_AFTER_ANNOTATION] == "2026-11-28T12:00:00Z"
    assert meta["annotations"][c.RENEW_AT_ANNOTATION] == "2026-11-28T04:00:00Z"
    assert {k for k in meta["annotations"] if k.startswith("mtls.dev/")} == {
        c.SPIFFE_ID_ANNOTATION, c.SERIAL_ANNOTATION, c.NOT_AFTER_ANNOTATION, c.RENEW_AT_ANNOTATION,
        c.CA_FINGERPRINT_ANNOTATION, c.SPEC_HASH_ANNOTATION, c.BUNDLE_HASH_ANNOTATION}
    assert meta["annotations"][c.BUNDLE_HASH_ANNOTATION] == bundle_hash(b"bundle")
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": "payments-0",
                                        "uid": "uid-payments-0", "controller": False, "blockOwnerDeletion": False}]


def _mutate(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    target = body
    for part in path[:-1]:
        target = target[part]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("data", "tls.key"), None, "missing tls.key"),
        (("data", "tls.crt"), None, "missing tls.crt"),
        (("data", "tls.crt"), base64.b64encode(b"garbage").decode(), "not a readable certificate"),
        (("metadata", "annotations", c.NOT_AFTER_ANNOTATION), "yesterday", "annotations are missing"),
        (("metadata", "annotations", c.SPEC_HASH_ANNOTATION), None, "annotations are missing"),
    ],
    ids=["no-key", "no-cert", "garbage-cert", "bad-not-after", "no-spec-hash"],
)
def test_read_secret_reports_problems(path: tuple[str, ...], value: Any, problem: str) -> None:
    body = secret_body(name="s", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={}, template_annotations={})
    reading = read_secret(SecretView.of(_mutate(body, path, value)))
    assert any(problem in text for text in reading.problems), reading.problems


def test_read_secret_round_trips_the_annotations() -> None:
    body = secret_body(name="s", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={}, template_annotations={})
    reading = read_secret(SecretView.of(body))
    assert reading.state is not None
    assert reading.state.not_after == CONTENT.not_after
    assert reading.state.renew_at == CONTENT.renew_at
    assert reading.state.spec_hash == "hash"
    assert reading.bundle_hash == bundle_hash(b"bundle")
    assert reading.state.renew_reason is None


def test_read_secret_metadata_reads_what_read_secret_reads_without_the_data() -> None:
    body = secret_body(name="s", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={}, template_annotations={})
    full = read_secret(SecretView.of(body))
    facts = read_secret_metadata(SecretView.of(body).annotations)
    assert facts is not None
    assert facts.state is not None
    assert full.state is not None
    assert facts.state == replace(full.state, not_before=None)
    assert facts.bundle_hash == full.bundle_hash
    assert not facts.problems


def test_read_secret_metadata_needs_the_bundle_hash_and_names_bad_annotations() -> None:
    body = secret_body(name="s", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={}, template_annotations={})
    annotations = dict(SecretView.of(body).annotations)
    del annotations[c.BUNDLE_HASH_ANNOTATION]
    assert read_secret_metadata(annotations) is None  # written before the hash existed: read the data
    broken = {**SecretView.of(body).annotations, c.NOT_AFTER_ANNOTATION: "soon"}
    reading = read_secret_metadata(broken)
    assert reading is not None
    assert reading.state is None
    assert reading.problems


def test_read_secret_reads_a_manual_renewal_request() -> None:
    body = secret_body(name="s", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={}, template_annotations={})
    body["metadata"]["annotations"][c.RENEW_REASON_ANNOTATION] = "manual"
    reading = read_secret(SecretView.of(body))
    assert reading.state is not None
    assert reading.state.renew_reason == "manual"


def test_reissue_patch_rewrites_everything_and_drops_the_renewal_request() -> None:
    body = secret_body(name="s", identity="payments", pod=pod_info(pod()), content=CONTENT,
                       template_labels={"team": "pay"}, template_annotations={})
    patch = reissue_patch(body)
    assert patch["data"] == body["data"]
    assert patch["type"] == c.SECRET_TYPE_TLS
    assert patch["metadata"]["labels"] == body["metadata"]["labels"]
    assert patch["metadata"]["ownerReferences"] == body["metadata"]["ownerReferences"]
    # A merge patch: null removes the annotation a manual renewal request left.
    assert patch["metadata"]["annotations"] == {**body["metadata"]["annotations"], c.RENEW_REASON_ANNOTATION: None}


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        ({}, {}, None),
        ({"team": "pay"}, {}, {"metadata": {"labels": {"team": "pay"}}}),
        ({}, {"note": "y"}, {"metadata": {"annotations": {"note": "y"}}}),
    ],
    ids=["nothing-missing", "label-missing", "annotation-changed"],
)
def test_metadata_patch(labels: dict[str, str], annotations: dict[str, str], expected: Any) -> None:
    secret = {"metadata": {"labels": {"a": "b"}, "annotations": {"note": "x"}}}
    assert metadata_patch(SecretView.of(secret), labels, annotations) == expected


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"pods": 3, "issued": 3}, True, "Issued"),
        ({"pods": 3, "issued": 2}, False, "Issuing"),
        ({"pods": 0, "issued": 0}, False, "NoPods"),
        ({"pods": 1, "issued": 1, "conflicts": [("p", "older")]}, False, "Conflict"),
        ({"pods": 1, "issued": 0, "clashes": ["Secret shop/x exists"]}, False, "SecretConflict"),
        ({"pods": 1, "issued": 0, "failures": ["boom"]}, False, "IssuanceFailed"),
    ],
    ids=["all-issued", "partial", "no-pods", "conflict", "clash", "failure"],
)
def test_summarize_readiness(kwargs: dict[str, Any], status: bool, reason: str) -> None:
    args: dict[str, Any] = {"selector_text": "app=x", "conflicts": [], "clashes": [], "failures": []}
    args.update(kwargs)
    readiness = summarize_readiness(**args)
    assert (readiness.status, readiness.reason) == (status, reason)
    assert f"{kwargs['issued']}/{kwargs['pods']}" in readiness.message or reason == "NoPods"


def test_conflict_message_names_the_pod_and_the_owner() -> None:
    readiness = summarize_readiness(pods=0, issued=0, selector_text="app=x", conflicts=[("payments-0", "older")],
                                    clashes=[], failures=[])
    assert "payments-0" in readiness.message
    assert "older" in readiness.message


def test_ready_condition_keeps_transition_time_while_status_holds() -> None:
    first = ready_condition([], Readiness(True, "Issued", "1/1"), generation=1, now=NOW)
    later = ready_condition([first], Readiness(True, "Issued", "2/2"), generation=2, now=NOW + timedelta(hours=1))
    flipped = ready_condition([later], Readiness(False, "Issuing", "1/2"), generation=2, now=NOW + timedelta(hours=2))
    assert later["lastTransitionTime"] == first["lastTransitionTime"] == "2026-11-27T12:00:00Z"
    assert flipped["lastTransitionTime"] == "2026-11-27T14:00:00Z"


def test_identity_status_fields() -> None:
    status = identity_status(previous={}, readiness=Readiness(True, "Issued", "2/2"), generation=3, pods=2,
                             issued=2, spiffe_ids=["b", "a", "a"], next_renewal=NOW, ca_fingerprint="sha256:1",
                             now=NOW, ca_condition=Readiness(True, "Valid", "sha256:1 signs"), rotation_phase="Idle",
                             last_issuance={"time": "2026-11-27T12:00:00Z", "reason": "new", "count": 2,
                                            "message": "pod a: Issuing: no certificate yet"})
    assert status == {
        "observedGeneration": 3,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Issued", "message": "2/2",
                        "lastTransitionTime": "2026-11-27T12:00:00Z", "observedGeneration": 3},
                       {"type": "CertificateAuthority", "status": "True", "reason": "Valid",
                        "message": "sha256:1 signs", "lastTransitionTime": "2026-11-27T12:00:00Z",
                        "observedGeneration": 3}],
        "spiffeIDs": ["a", "b"], "pods": 2, "issued": 2, "nextRenewalTime": "2026-11-27T12:00:00Z",
        "caFingerprint": "sha256:1", "caRotationPhase": "Idle",
        "lastIssuance": {"time": "2026-11-27T12:00:00Z", "reason": "new", "count": 2,
                         "message": "pod a: Issuing: no certificate yet"},
    }


def test_identity_status_keeps_what_a_pass_did_not_look_at() -> None:
    first = identity_status(previous={}, readiness=Readiness(True, "Issued", "1/1"), generation=1, pods=1, issued=1,
                            spiffe_ids=["a"], next_renewal=NOW, ca_fingerprint="sha256:1", now=NOW,
                            ca_condition=Readiness(False, "CAExpiringSoon", "expires soon"), rotation_phase="Reissuing",
                            last_issuance={"time": "2026-11-27T12:00:00Z", "reason": "renewal", "count": 1,
                                           "message": "m"})
    # A pass without the CA (CAUnavailable) and without issuing keeps the CA condition and the phase;
    # lastIssuance is simply not rewritten (a merge patch keeps it).
    later = identity_status(previous=first, readiness=Readiness(False, "CAUnavailable", "no CA"), generation=1,
                            pods=1, issued=1, spiffe_ids=["a"], next_renewal=None, ca_fingerprint="sha256:1",
                            now=NOW + timedelta(hours=1))
    assert [cond["type"] for cond in later["conditions"]] == ["Ready", "CertificateAuthority"]
    assert later["conditions"][1]["reason"] == "CAExpiringSoon"
    assert later["caRotationPhase"] == "Reissuing"
    assert "lastIssuance" not in later
