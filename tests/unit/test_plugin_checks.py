"""kubectl mtls check: each preflight verdict from what was read (pure), and the exit status for CI."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mtls_operator.pki import certs_to_pem, create_self_signed_ca
from mtls_operator.plugin import checks, render
from mtls_operator.plugin.checks import CheckResult, Level, Permission, ProbeOutcome

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CA = create_self_signed_ca(NOW)
OTHER = create_self_signed_ca(NOW, common_name="other")


def crd(established: str | None = "True", versions: tuple[str, ...] = ("v1alpha1",)) -> dict[str, Any]:
    conditions = [] if established is None else [{"type": "Established", "status": established, "message": "m"}]
    return {"spec": {"versions": [{"name": v, "served": True} for v in versions]}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("body", "level", "fragment"),
    [
        (crd(), Level.OK, "established and serves v1alpha1"),
        (None, Level.FAIL, "not found"),
        (crd(established="False"), Level.FAIL, "not Established"),
        (crd(established=None), Level.FAIL, "not Established"),
        (crd(versions=("v1beta1",)), Level.FAIL, "does not serve v1alpha1"),
    ],
)
def test_check_crd(body: dict[str, Any] | None, level: Level, fragment: str) -> None:
    result = checks.check_crd(body)
    assert result.level is level
    assert fragment in result.message
    assert bool(result.hint) is (level is not Level.OK)


def lease(holder: str | None = "mtls-operator-abc", age: timedelta = timedelta(seconds=3),
          duration: object = 15) -> dict[str, Any]:
    renewed = (NOW - age).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"spec": {"holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": duration}}


@pytest.mark.parametrize(
    ("body", "level", "fragment"),
    [
        (lease(), Level.OK, "mtls-operator-abc leads"),
        (lease(age=timedelta(seconds=15)), Level.OK, "renewed 15s ago"),
        (lease(age=timedelta(seconds=16)), Level.FAIL, "last renewed 16s ago"),
        (lease(age=timedelta(seconds=-2)), Level.OK, "renewed 0s ago"),  # the user's clock is behind
        (lease(holder=""), Level.FAIL, "held by nobody"),
        (lease(duration="15"), Level.FAIL, "no renewTime or duration"),
        (None, Level.FAIL, "not found"),
    ],
)
def test_check_lease(body: dict[str, Any] | None, level: Level, fragment: str) -> None:
    result = checks.check_lease(body, "mtls-system/mtls-operator", NOW)
    assert result.level is level
    assert fragment in result.message


def configuration(*bundles: object) -> dict[str, Any]:
    return {"webhooks": [{"name": f"hook{i}.mtls.dev", "clientConfig": {"caBundle": bundle}}
                         for i, bundle in enumerate(bundles)]}


GOOD = base64.b64encode(certs_to_pem([OTHER.cert, CA.cert])).decode()
WRONG = base64.b64encode(certs_to_pem([OTHER.cert])).decode()


@pytest.mark.parametrize(
    ("mutating", "signing", "levels", "fragment"),
    [
        (configuration(GOOD, GOOD), CA.fingerprint, [Level.OK, Level.OK], "holds the webhook CA"),
        (configuration(GOOD), None, [Level.WARN, Level.WARN], "webhook CA that signs is unknown"),
        (configuration(GOOD, None), CA.fingerprint, [Level.FAIL, Level.OK], "hook1.mtls.dev: no caBundle"),
        (configuration(WRONG), CA.fingerprint, [Level.FAIL, Level.OK], "does not hold the webhook CA"),
        (configuration("not base64!"), CA.fingerprint, [Level.FAIL, Level.OK], "unreadable"),
        (configuration(base64.b64encode(b"junk").decode()), CA.fingerprint, [Level.FAIL, Level.OK], "unreadable"),
        (None, CA.fingerprint, [Level.WARN, Level.OK], "not found"),
    ],
)
def test_check_webhook_bundles(mutating: dict[str, Any] | None, signing: str | None, levels: list[Level],
                               fragment: str) -> None:
    found = {"mutatingwebhookconfigurations": mutating, "validatingwebhookconfigurations": configuration(GOOD)}
    results = checks.check_webhook_bundles(found, "mtls-operator", signing)
    assert [r.level for r in results] == levels
    assert fragment in results[0].message


@pytest.mark.parametrize(
    ("outcome", "policy", "level", "fragment"),
    [
        (ProbeOutcome(201), "Fail", Level.OK, "verified its certificate"),
        (ProbeOutcome(201), "Ignore", Level.WARN, "a failed call passes too"),
        (ProbeOutcome(403, "forbidden"), "Fail", Level.WARN, "could not check"),
        (ProbeOutcome(404, "namespace x not found"), "Fail", Level.WARN, "could not check"),
        (ProbeOutcome(500, "failed calling webhook: x509: certificate signed by unknown authority"), "Fail",
         Level.FAIL, "x509"),
        (ProbeOutcome(0, "connection refused"), "Fail", Level.FAIL, "connection refused"),
    ],
)
def test_check_probe(outcome: ProbeOutcome, policy: str, level: Level, fragment: str) -> None:
    result = checks.check_probe(outcome, "shop", policy)
    assert result.level is level
    assert fragment in result.message


def test_a_probe_not_made_is_a_warning() -> None:
    result = checks.probe_skipped("kube-system", "the webhook is not called there")
    assert result.level is Level.WARN
    assert "could not check in namespace kube-system" in result.message


@pytest.mark.parametrize(
    ("not_after", "level", "fragment"),
    [
        (NOW + timedelta(days=364), Level.OK, "expires in 364 days"),
        (NOW + timedelta(days=30, seconds=1), Level.OK, "expires in 30 days"),
        (NOW + timedelta(days=30), Level.FAIL, "expires in 720h"),
        (NOW + timedelta(hours=5), Level.FAIL, "expires in 5h"),
        (NOW - timedelta(hours=1), Level.FAIL, "expired 1h ago"),
        (None, Level.WARN, "could not check: the CA Secret is not readable"),
    ],
)
def test_check_ca_validity(not_after: datetime | None, level: Level, fragment: str) -> None:
    result = checks.check_ca_validity(not_after, "sha256:" + "ab" * 32, "the CA Secret is not readable", NOW)
    assert result.level is level
    assert fragment in result.message


def test_operator_permissions_follow_the_chart() -> None:
    needed = {p.text for p in checks.operator_permissions("mtls-system", "mtls-operator", "mtls-operator")}
    assert "patch mtlsidentities/status.mtls.dev" in needed
    assert "delete secrets" in needed
    assert "patch mutatingwebhookconfigurations.admissionregistration.k8s.io/mtls-operator" in needed
    assert "update leases.coordination.k8s.io/mtls-operator in mtls-system" in needed
    assert "create leases.coordination.k8s.io in mtls-system" in needed
    without_webhooks = checks.operator_permissions("mtls-system", "mtls-operator", None)
    assert not any("webhookconfigurations" in p.resource for p in without_webhooks)
    assert Permission("get", "", "secrets", namespace="x", name="y").attributes() == {
        "verb": "get", "resource": "secrets", "namespace": "x", "name": "y"}


USER = "system:serviceaccount:mtls-system:mtls-operator"
P1, P2 = Permission("list", "", "pods"), Permission("delete", "", "secrets")


@pytest.mark.parametrize(
    ("answers", "level", "fragment"),
    [
        ([(P1, True, ""), (P2, True, "")], Level.OK, "may do all 2 kinds"),
        ([(P1, True, ""), (P2, False, "no rule")], Level.FAIL, "may not: delete secrets"),
        ([(P1, None, "the API server does not serve it"), (P2, True, "")], Level.WARN,
         "could not check (the API server does not serve it)"),
        ([(P1, None, "refused"), (P2, False, "")], Level.FAIL, "may not: delete secrets"),
    ],
)
def test_check_rbac_never_passes_what_it_could_not_check(
    answers: list[tuple[Permission, bool | None, str]], level: Level, fragment: str
) -> None:
    result = checks.check_rbac(USER, answers)
    assert result.level is level
    assert fragment in result.message


def test_exit_status_and_text_mark_each_result() -> None:
    results = [CheckResult("a", Level.OK, "fine", "unused"), CheckResult("b", Level.WARN, "hmm", "look"),
               CheckResult("c", Level.FAIL, "broken", "fix it")]
    assert checks.exit_code(results) == 1
    assert checks.exit_code(results[:2]) == 0
    assert render.check_text(results).splitlines() == [
        "\u221a a: fine",
        "\u203c b: hmm",
        "    hint: look",
        "\N{MULTIPLICATION SIGN} c: broken",
        "    hint: fix it",
        "",
        "1 ok, 1 warning(s), 1 failure(s)",
    ]


NEEDS = checks.user_needs("mtls-system", "mtls-operator-ca", "shop")


def test_user_needs_name_what_each_permission_is_for() -> None:
    texts = {perm.text: purpose for perm, purpose in NEEDS}
    assert texts["patch secrets/mtls-operator-ca in mtls-system"] == "rotate-ca"
    assert texts["create pods in shop"] == "check's webhook probe (a dry run)"
    assert texts["list mtlsidentities.mtls.dev"] == "status -A"


@pytest.mark.parametrize(
    ("allowed", "level", "fragment"),
    [
        ({}, Level.OK, f"may do all {len(NEEDS)} kinds"),
        ({"rotate-ca": False}, Level.WARN, "you may not patch secrets/mtls-operator-ca in mtls-system (for rotate-ca)"),
        ({"status -A": None}, Level.WARN, "could not check (review failed)"),
    ],
)
def test_check_own_access_warns_and_never_fails(allowed: dict[str, bool | None], level: Level, fragment: str) -> None:
    answers = []
    for perm, purpose in NEEDS:
        answer = allowed.get(purpose, True)
        answers.append((perm, purpose, answer, "review failed" if answer is None else ""))
    result = checks.check_own_access(answers)
    assert result.level is level
    assert fragment in result.message
