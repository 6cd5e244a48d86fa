"""``kubectl mtls check``: preflight verdicts (ok, warning, failure), each with a hint a person can act on.

Pure: every function takes what ``cluster`` read (API objects, review answers) and ``now``. A check
that could not be made (the API does not serve it, the user may not read it) is a warning that says
so, never a pass.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mtls_operator import constants as c
from mtls_operator.errors import PKIError
from mtls_operator.pki import fingerprint, parse_pem_certificates
from mtls_operator.rules.spec import format_duration
from mtls_operator.times import parse_time

__all__ = [
    "CA_MIN_VALIDITY",
    "CheckResult",
    "Level",
    "Permission",
    "ProbeOutcome",
    "check_ca_validity",
    "check_crd",
    "check_lease",
    "check_own_access",
    "check_probe",
    "check_rbac",
    "check_webhook_bundles",
    "exit_code",
    "operator_permissions",
    "probe_skipped",
    "user_needs",
]

CA_MIN_VALIDITY = timedelta(days=30)
CRD_NAME = f"{c.PLURAL}.{c.GROUP}"
WEBHOOK_KINDS = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"

    @property
    def symbol(self) -> str:
        return {Level.OK: "√", Level.WARN: "‼", Level.FAIL: "\N{MULTIPLICATION SIGN}"}[self]


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: Level
    message: str
    hint: str = ""


def exit_code(results: Iterable[CheckResult]) -> int:
    """1 when any check failed (for CI); warnings alone pass."""
    return 1 if any(result.level is Level.FAIL for result in results) else 0


def check_crd(crd: Mapping[str, Any] | None) -> CheckResult:
    name = "CRD installed"
    hint = "install the chart (it renders the CRD) or kubectl apply -f crds/mtlsidentity.yaml"
    if crd is None:
        return CheckResult(name, Level.FAIL, f"CustomResourceDefinition {CRD_NAME} not found", hint)
    conditions = {cond.get("type"): cond for cond in (crd.get("status") or {}).get("conditions") or []}
    established = conditions.get("Established") or {}
    if established.get("status") != "True":
        return CheckResult(name, Level.FAIL, f"{CRD_NAME} exists but is not Established: "
                                             f"{established.get('message') or 'no Established condition yet'}",
                           f"kubectl describe crd {CRD_NAME}")
    versions = [v.get("name") for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
    if c.VERSION not in versions:
        return CheckResult(name, Level.FAIL, f"{CRD_NAME} does not serve {c.VERSION} (serves {versions})",
                           "upgrade the chart: the operator reads " + c.VERSION)
    return CheckResult(name, Level.OK, f"{CRD_NAME} is established and serves {c.VERSION}")


def check_lease(lease: Mapping[str, Any] | None, lease_ref: str, now: datetime) -> CheckResult:
    name = "leader holds a fresh Lease"
    if lease is None:
        return CheckResult(name, Level.FAIL, f"Lease {lease_ref} not found: no operator replica has ever led",
                           "is the operator running? kubectl get pods -n <operator namespace>; "
                           "(with MTLS_LEADER_ELECTION=false a single replica issues without a Lease)")
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = parse_time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not holder:
        return CheckResult(name, Level.FAIL, f"Lease {lease_ref} is held by nobody (released)",
                           "a replica takes it within 2s if one runs: check the operator's pods and logs")
    if renewed is None or not isinstance(duration, int):
        return CheckResult(name, Level.FAIL, f"Lease {lease_ref} held by {holder} has no renewTime or duration",
                           "the Lease was edited by hand? delete it: the operator recreates it")
    age = now - renewed
    if age > timedelta(seconds=duration):
        return CheckResult(name, Level.FAIL, f"Lease {lease_ref} held by {holder} was last renewed "
                                             f"{format_duration(age)} ago (lease duration {duration}s): "
                                             "the leader is gone or cannot reach the API server",
                           "check the operator's pods and logs; a follower takes over once the Lease expires")
    return CheckResult(name, Level.OK, f"{holder} leads (Lease {lease_ref} renewed "
                                       f"{format_duration(max(age, timedelta(0)))} ago, duration {duration}s)")


def check_webhook_bundles(configurations: Mapping[str, Mapping[str, Any] | None], configuration: str,
                          signing_ca: str | None) -> list[CheckResult]:
    """Each webhook carries a caBundle with the webhook CA that signs the replicas' serving certificates
    (``signing_ca``: its fingerprint, from the webhook CA Secret; None when that could not be read)."""
    results = []
    for kind in WEBHOOK_KINDS:
        body = configurations.get(kind)
        name = f"{kind.removesuffix('configurations')} caBundle"
        if body is None:
            results.append(CheckResult(name, Level.WARN, f"{kind}/{configuration} not found",
                                       "the chart creates it when webhook.enabled=true; without it no pod is "
                                       "injected and no identity is checked at apply time"))
            continue
        problems: list[str] = []
        for hook in body.get("webhooks") or []:
            problem = _bundle_problem(hook.get("clientConfig", {}).get("caBundle"), signing_ca)
            if problem:
                problems.append(f"{hook.get('name')}: {problem}")
        if problems:
            results.append(CheckResult(name, Level.FAIL, "; ".join(problems),
                                       "the elected operator writes the caBundle: check that a leader runs "
                                       "(the Lease) and its logs"))
        elif signing_ca is None:
            results.append(CheckResult(name, Level.WARN, f"{kind}/{configuration}: every webhook has a caBundle, "
                                                         "but the webhook CA that signs is unknown here",
                                       "let the user read the webhook CA Secret (--webhook-ca-secret) to compare"))
        else:
            results.append(CheckResult(name, Level.OK, f"{kind}/{configuration}: every webhook's caBundle holds "
                                                       f"the webhook CA {signing_ca[:19]}…"))
    return results


def _bundle_problem(ca_bundle: object, signing_ca: str | None) -> str | None:
    if not isinstance(ca_bundle, str) or not ca_bundle:
        return "no caBundle (the operator has not written it yet)"
    try:
        certs = parse_pem_certificates(base64.b64decode(ca_bundle, validate=True))
    except (binascii.Error, ValueError, PKIError) as exc:
        return f"caBundle is unreadable: {exc}"
    if signing_ca is not None and signing_ca not in {fingerprint(cert) for cert in certs}:
        return f"caBundle does not hold the webhook CA {signing_ca}: the API server will not trust the webhook"
    return None


@dataclass(frozen=True)
class ProbeOutcome:
    """What a dry-run create of an opted-in pod answered (the API server calls the injection webhook for it)."""

    status: int  # HTTP status; 0 when the request did not get an answer
    message: str = ""


def check_probe(outcome: ProbeOutcome, namespace: str, failure_policy: str) -> CheckResult:
    """With ``failurePolicy: Fail`` an admitted probe proves the API server reached the webhook over TLS and
    verified its certificate with the caBundle; under ``Ignore`` an admitted probe proves nothing."""
    name = "webhook serves a certificate the caBundle verifies"
    what = f"a dry-run create of an opted-in pod in namespace {namespace}"
    if outcome.status in (200, 201):
        if failure_policy == "Fail":
            return CheckResult(name, Level.OK, f"{what} was admitted: the API server called {c.INJECT_WEBHOOK_NAME} "
                                               "and verified its certificate with the caBundle")
        return CheckResult(name, Level.WARN, f"could not check: {what} was admitted, but {c.INJECT_WEBHOOK_NAME} "
                                             f"has failurePolicy {failure_policy}, so a failed call passes too",
                           "set the chart's webhook failure policy for pods to Fail (the default)")
    if outcome.status in (401, 403):
        return CheckResult(name, Level.WARN, f"could not check: {what} is not allowed for you ({outcome.message})",
                           "run with create permission on pods (dry-run writes nothing), or -n another namespace")
    if outcome.status == 404:
        return CheckResult(name, Level.WARN, f"could not check: {outcome.message}", "pass -n an existing namespace")
    hint = ("the caBundle does not verify what the webhook serves, or no replica answers: check the operator's "
            "pods and logs, the Service and its endpoints")
    return CheckResult(name, Level.FAIL, f"{what} failed (HTTP {outcome.status}): {outcome.message}", hint)


def probe_skipped(namespace: str, why: str) -> CheckResult:
    return CheckResult("webhook serves a certificate the caBundle verifies", Level.WARN,
                       f"could not check in namespace {namespace}: {why}",
                       "pass -n an application namespace (the webhook skips kube-system and the operator's own)")


def check_ca_validity(not_after: datetime | None, ca_fingerprint: str | None, where: str, now: datetime) -> CheckResult:
    name = "CA valid for more than 30 days"
    if not_after is None:
        return CheckResult(name, Level.WARN, f"could not check: {where}",
                           "let the user read the CA Secret or a namespace's mtls-trust-bundle ConfigMap")
    left = not_after - now
    fp = f"{ca_fingerprint[:19]}…" if ca_fingerprint else "the signing CA"
    if left <= timedelta(0):
        return CheckResult(name, Level.FAIL, f"{fp} expired {format_duration(-left)} ago",
                           "supply a new CA in the CA Secret (next.crt/next.key while the operator runs)")
    if left <= CA_MIN_VALIDITY:
        return CheckResult(name, Level.FAIL, f"{fp} expires in {format_duration(left)}",
                           "kubectl mtls rotate-ca (a CA the operator generated), or put your successor CA "
                           "into the CA Secret's next.crt/next.key")
    return CheckResult(name, Level.OK, f"{fp} expires in {left.days} days")


@dataclass(frozen=True)
class Permission:
    """One request the operator makes, as a SubjectAccessReview's resourceAttributes."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""  # "" = every namespace (a ClusterRole)
    name: str = ""

    @property
    def text(self) -> str:
        resource = self.resource + (f"/{self.subresource}" if self.subresource else "")
        group = f".{self.group}" if self.group else ""
        where = f" in {self.namespace}" if self.namespace else ""
        named = f"/{self.name}" if self.name else ""
        return f"{self.verb} {resource}{group}{named}{where}"

    def attributes(self) -> dict[str, str]:
        fields = {"verb": self.verb, "group": self.group, "resource": self.resource,
                  "subresource": self.subresource, "namespace": self.namespace, "name": self.name}
        return {key: value for key, value in fields.items() if value}


def operator_permissions(namespace: str, lease: str, webhook_configuration: str | None) -> list[Permission]:
    """What the operator does (the chart's RBAC rules, tests/chart/test_rbac_usage.py keeps them exact)."""
    needed = [Permission(verb, c.GROUP, c.PLURAL) for verb in ("get", "list", "watch", "patch")]
    needed.append(Permission("patch", c.GROUP, c.PLURAL, subresource="status"))
    needed += [Permission(verb, "", "pods") for verb in ("list", "watch")]
    needed += [Permission(verb, "", "secrets") for verb in ("get", "list", "watch", "create", "patch", "delete")]
    needed += [Permission(verb, "", "configmaps") for verb in ("get", "list", "create", "patch")]
    needed.append(Permission("create", "", "events"))
    if webhook_configuration:
        needed += [Permission(verb, "admissionregistration.k8s.io", kind, name=webhook_configuration)
                   for kind in WEBHOOK_KINDS for verb in ("get", "patch")]
    needed.append(Permission("create", "coordination.k8s.io", "leases", namespace=namespace))
    needed += [Permission(verb, "coordination.k8s.io", "leases", namespace=namespace, name=lease)
               for verb in ("get", "update")]
    return needed


def check_rbac(user: str, answers: Sequence[tuple[Permission, bool | None, str]]) -> CheckResult:
    """``answers``: per permission, allowed (None: the review itself failed) and the reason given."""
    name = "operator RBAC"
    unknown = [(perm, reason) for perm, allowed, reason in answers if allowed is None]
    denied = [perm for perm, allowed, _ in answers if allowed is False]
    if denied:
        return CheckResult(name, Level.FAIL, f"{user} may not: {', '.join(p.text for p in denied)}",
                           "install the chart's ClusterRole/Role and their bindings (helm upgrade restores them)")
    if unknown:
        return CheckResult(name, Level.WARN, f"could not check ({unknown[0][1]})",
                           "a SubjectAccessReview needs create on subjectaccessreviews.authorization.k8s.io")
    return CheckResult(name, Level.OK, f"{user} may do all {len(answers)} kinds of request the operator makes")


def user_needs(operator_namespace: str, ca_secret: str, probe_namespace: str) -> list[tuple[Permission, str]]:
    """What the plugin's commands ask of the user's RBAC, and what each permission is for."""
    return [
        (Permission("list", c.GROUP, c.PLURAL), "status -A"),
        (Permission("list", "", "secrets"), "the expiry and CA columns of status, inspect and verify"),
        (Permission("get", "", "secrets", namespace=operator_namespace, name=ca_secret),
         "the next and previous CA (inspect, verify during a rotation)"),
        (Permission("patch", "", "secrets", namespace=operator_namespace, name=ca_secret), "rotate-ca"),
        (Permission("create", "", "pods", namespace=probe_namespace), "check's webhook probe (a dry run)"),
        (Permission("create", "authorization.k8s.io", "subjectaccessreviews"), "check's operator RBAC"),
    ]


def check_own_access(answers: Sequence[tuple[Permission, str, bool | None, str]]) -> CheckResult:
    """``answers``: per permission, what it is for, allowed (None: the SelfSubjectAccessReview failed), reason.

    The user's own access is about this tool, not the operator's health: it warns, never fails."""
    name = "your access (kubectl mtls)"
    unknown = [reason for _, _, allowed, reason in answers if allowed is None]
    denied = [(perm, purpose) for perm, purpose, allowed, _ in answers if allowed is False]
    if denied:
        return CheckResult(name, Level.WARN, "you may not " + "; ".join(f"{perm.text} (for {purpose})"
                                                                         for perm, purpose in denied),
                           "what these would show is reported as unknown; ask for the permissions to see it")
    if unknown:
        return CheckResult(name, Level.WARN, f"could not check ({unknown[0]})",
                           "a SelfSubjectAccessReview needs the API group authorization.k8s.io/v1")
    return CheckResult(name, Level.OK, f"you may do all {len(answers)} kinds of request kubectl mtls makes")
