"""The commands of ``kubectl mtls``: read what they need, decide with the pure modules, return an ``Output``.

Every command returns the same facts twice: ``data`` (for ``-o json|yaml``) and ``text`` (the table), and
an exit status. Nothing here prints, and no certificate or key material (PEM) is ever put in either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from mtls_operator import constants as c
from mtls_operator.errors import KubernetesAPIError, PKIError
from mtls_operator.k8s import JSON, core_path, group_path
from mtls_operator.k8s.views import SecretView
from mtls_operator.pki import fingerprint, parse_pem_certificates
from mtls_operator.plugin import checks, render
from mtls_operator.plugin.cluster import OperatorRef, PluginCluster, Unreadable
from mtls_operator.plugin.facts import (
    CAView,
    ca_view_from_identities,
    ca_view_from_secret,
    expiring_within,
    identity_row,
    sort_by_urgency,
)
from mtls_operator.plugin.trust import (
    PodChain,
    Verdict,
    after_next_step,
    bundle_trusts,
    mutual_trust,
    pod_chain,
    signer_of,
    subject_alt_names,
)
from mtls_operator.rules.delivery import pod_certificate_signers
from mtls_operator.rules.plan import label_value, secret_data
from mtls_operator.rules.renewal import MANUAL_RENEWAL
from mtls_operator.rules.rotation import ORIGIN_SUPPLIED, ROTATE_ANNOTATION, Phase, read_rotation
from mtls_operator.times import format_time, parse_time

__all__ = ["CommandError", "Output", "check", "inspect", "renew", "rotate_ca", "status", "verify"]

NEXT_CRT = "next.crt"


@dataclass(frozen=True)
class Output:
    data: Any
    text: str
    code: int = 0


class CommandError(Exception):
    """A command cannot answer (an object is missing, a read is refused): one line for the user."""


async def _ca_view(cluster: PluginCluster, ref: OperatorRef, identities: Sequence[JSON]) -> tuple[CAView, JSON | None]:
    """From the CA Secret when the user may read it, else from the identities' status."""
    try:
        secret = await cluster.ca_secret(ref)
    except Unreadable:
        secret = None
    if secret is not None:
        return ca_view_from_secret((secret.get("metadata") or {}).get("annotations") or {}), secret
    return ca_view_from_identities(identities), None


# status -------------------------------------------------------------------------------------------


async def status(cluster: PluginCluster, ref: OperatorRef, namespace: str | None, within: timedelta | None,
                 now: datetime) -> Output:
    try:
        identities = await cluster.identities(namespace)
    except Unreadable as exc:
        raise CommandError(f"cannot list identities: {exc}") from None
    notes: list[str] = []
    try:
        secrets = await cluster.managed_secrets(namespace)
    except Unreadable as exc:
        secrets = []
        notes.append(f"pod Secrets not readable ({exc}): expiry and CA columns are empty")
    ca, _ = await _ca_view(cluster, ref, identities)
    by_namespace: dict[str, list[JSON]] = {}
    for secret in secrets:
        by_namespace.setdefault(str((secret.get("metadata") or {}).get("namespace")), []).append(secret)
    rows = [identity_row(body, by_namespace.get(str((body.get("metadata") or {}).get("namespace")), []), ca)
            for body in identities]
    if within is not None:
        rows = expiring_within(rows, within, now)
    rows = sort_by_urgency(rows, now)
    data = render.status_data(rows, now)
    data["ca"] = {"signing": ca.signing, "next": ca.next, "previous": ca.previous, "phase": ca.phase,
                  "source": ca.source}
    text = render.status_table(rows, now, all_namespaces=namespace is None)
    if ca.signing:
        text += f"\n\nCA signing now: {ca.signing} ({ca.source}); rotation phase {ca.phase}"
    text += "".join(f"\nnote: {note}" for note in notes)
    return Output(data, text)


# inspect / verify ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PodCertificate:
    pod: JSON
    secret: JSON
    chain: PodChain


async def _pod_certificate(cluster: PluginCluster, namespace: str, name: str) -> _PodCertificate:
    try:
        pod = await cluster.get(core_path("pods", namespace, name))
    except Unreadable as exc:
        raise CommandError(f"cannot read pod {namespace}/{name}: {exc}") from None
    if pod is None:
        raise CommandError(f"pod {namespace}/{name} not found")
    meta = pod.get("metadata") or {}
    signers = sorted(pod_certificate_signers((pod.get("spec") or {}).get("volumes")))
    if signers:
        node = (pod.get("spec") or {}).get("nodeName") or "its node"
        raise CommandError(
            f"pod {namespace}/{name} gets its certificate from the kubelet (delivery PodCertificate, signer "
            f"{', '.join(signers)}): its key and chain exist only in memory on {node}, never in a Secret; its "
            f"requests: kubectl get podcertificaterequests -n {namespace} --field-selector spec.podName={name}")
    secret_name = (meta.get("annotations") or {}).get(c.SECRET_NAME_ANNOTATION)
    secret: JSON | None
    try:
        if secret_name:
            secret = await cluster.get(core_path("secrets", namespace, str(secret_name)))
        else:
            candidates = await cluster.list_objects(core_path("secrets", namespace),
                                            f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME},{c.POD_LABEL}={label_value(name)}")
            secret = next((s for s in candidates if SecretView.of(s).owner_pod_uid == meta.get("uid")), None)
    except Unreadable as exc:
        raise CommandError(f"cannot read the Secrets of pod {namespace}/{name}: {exc}") from None
    if secret is None:
        labels = meta.get("labels") or {}
        why = ("it is not opted in (label mtls.dev/inject=true)" if labels.get(c.INJECT_LABEL) != c.INJECT_VALUE
               else "no certificate issued yet, or no identity selects it (kubectl mtls status)")
        raise CommandError(f"pod {namespace}/{name} has no mTLS certificate: {why}")
    chain_pem, bundle_pem = secret_data(secret, c.TLS_CRT), secret_data(secret, c.CA_CRT)
    if not chain_pem or not bundle_pem:
        raise CommandError(f"Secret {namespace}/{secret['metadata'].get('name')} lacks tls.crt or ca.crt")
    try:
        chain = pod_chain(f"pod/{name}", chain_pem, bundle_pem)
    except PKIError as exc:
        raise CommandError(f"Secret {namespace}/{secret['metadata'].get('name')}: {exc}") from None
    return _PodCertificate(pod, secret, chain)


def _ca_certificates(ca_secret: JSON | None) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for key in (c.TLS_CRT, NEXT_CRT, c.CA_CRT):
        data = secret_data(ca_secret, key) if ca_secret is not None else None
        if data:
            try:
                found.extend(parse_pem_certificates(data))
            except PKIError:
                continue
    return found


def _cert_summary(cert: x509.Certificate, ca: CAView) -> dict[str, Any]:
    fp = fingerprint(cert)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"), "notBefore": format_time(cert.not_valid_before_utc),
            "notAfter": format_time(cert.not_valid_after_utc), "fingerprint": fp, "generation": ca.generation(fp)}


def _trusts(chain: PodChain, ca_fingerprint: str | None, known: Sequence[x509.Certificate]) -> bool | None:
    return None if ca_fingerprint is None else bundle_trusts(chain.bundle, ca_fingerprint, known)


async def inspect(cluster: PluginCluster, ref: OperatorRef, namespace: str, name: str, now: datetime) -> Output:
    found = await _pod_certificate(cluster, namespace, name)
    chain = found.chain
    identity = ((found.secret.get("metadata") or {}).get("labels") or {}).get(c.IDENTITY_LABEL)
    try:
        identities = await cluster.identities(namespace)
    except Unreadable:
        identities = []
    ca, ca_secret = await _ca_view(cluster, ref, identities)
    known = [*chain.intermediates, *chain.bundle, *_ca_certificates(ca_secret)]
    annotations = (found.secret.get("metadata") or {}).get("annotations") or {}
    try:
        uris, dns_names = subject_alt_names(chain.leaf)
    except PKIError as exc:
        raise CommandError(f"pod {namespace}/{name}: {exc}") from None
    serial = format(chain.leaf.serial_number, "x")
    signer = signer_of(chain)
    data: dict[str, Any] = {
        "pod": f"{namespace}/{name}",
        "secret": str(found.secret["metadata"].get("name")),
        "identity": identity,
        "spiffeID": uris[0] if len(uris) == 1 else list(uris),
        "dnsNames": list(dns_names),
        "serial": serial,
        "notBefore": format_time(chain.leaf.not_valid_before_utc),
        "notAfter": format_time(chain.leaf.not_valid_after_utc),
        "renewAt": annotations.get(c.RENEW_AT_ANNOTATION),
        "renewReason": annotations.get(c.RENEW_REASON_ANNOTATION),
        "signedBy": {"fingerprint": signer, "generation": ca.generation(signer)},
        "chain": [_cert_summary(cert, ca) for cert in (chain.leaf, *chain.intermediates)],
        "bundle": [_cert_summary(cert, ca) for cert in chain.bundle],
        "trustsCurrentCA": _trusts(chain, ca.signing, known),
        "trustsNextCA": _trusts(chain, ca.next, known) if ca.rotating else None,
        "ca": {"signing": ca.signing, "next": ca.next, "previous": ca.previous, "phase": ca.phase,
               "source": ca.source},
    }
    expiry = parse_time(data["notAfter"])
    renew = parse_time(data["renewAt"])

    def yes_no(value: bool | None, unknown: str) -> str:
        return unknown if value is None else ("yes" if value else "NO")

    next_text = ("no rotation under way" if not ca.rotating
                 else yes_no(data["trustsNextCA"], "unknown (the CA Secret is not readable)"))
    text = render.fields_text([
        ("Pod", data["pod"]),
        ("Identity", identity or "-"),
        ("Secret", data["secret"]),
        ("SPIFFE ID", data["spiffeID"]),
        ("DNS names", ", ".join(dns_names) or "-"),
        ("Serial", serial),
        ("Valid", f"{data['notBefore']} .. {data['notAfter']} (expires {render.relative(expiry, now)})"),
        ("Renewal", f"{data['renewAt']} ({render.relative(renew, now)})"
                    + (f", requested: {data['renewReason']}" if data["renewReason"] else "")),
        ("Signed by", f"{signer or 'a CA outside its chain and bundle'} ({ca.generation(signer)} CA)"),
        ("Chain", [f"{s['subject']}  serial {s['serial']}  until {s['notAfter']}" for s in data["chain"]]),
        ("Bundle (ca.crt)", [f"{s['subject']}  {s['fingerprint'][:23]}…  {s['generation']}" for s in data["bundle"]]),
        ("Trusts current CA", yes_no(data["trustsCurrentCA"], "unknown")),
        ("Trusts next CA", next_text),
        ("Rotation phase", f"{ca.phase} (from {ca.source})"),
    ])
    return Output(data, text)


def _verdict_data(verdict: Verdict | None) -> dict[str, Any] | None:
    return None if verdict is None else {"trusted": verdict.ok, "reasons": list(verdict.reasons)}


async def verify(cluster: PluginCluster, ref: OperatorRef, namespace: str, first: str, second: str,
                 now: datetime) -> Output:
    a, b = await asyncio.gather(_pod_certificate(cluster, namespace, first),
                                _pod_certificate(cluster, namespace, second))
    try:
        identities = await cluster.identities(namespace)
    except Unreadable:
        identities = []
    ca, _ = await _ca_view(cluster, ref, identities)
    current = mutual_trust(a.chain, b.chain, now)
    upcoming = after_next_step(a.chain, b.chain, ca, now)
    data = {"pods": [f"{namespace}/{first}", f"{namespace}/{second}"], "now": _verdict_data(current),
            "rotationPhase": ca.phase, "afterNextStep": _verdict_data(upcoming)}
    pair = f"pod/{first} and pod/{second}"
    marks = {True: checks.Level.OK.symbol, False: checks.Level.FAIL.symbol, None: checks.Level.WARN.symbol}
    lines = [f"now: {marks[current.ok]} {pair} " + ("trust each other" if current.ok else "do not trust each other")]
    lines += [f"    {reason}" for reason in current.reasons]
    if upcoming is None:
        lines.append("after the next rotation step: no CA rotation under way")
    else:
        said = {True: "still trust each other", False: "will NOT trust each other", None: "cannot be told"}[upcoming.ok]
        lines.append(f"after the next rotation step (from {ca.phase}): {marks[upcoming.ok]} {pair} {said}")
        lines += [f"    {reason}" for reason in upcoming.reasons]
    failed = not current.ok or (upcoming is not None and upcoming.ok is False)
    return Output(data, "\n".join(lines), 1 if failed else 0)


# check --------------------------------------------------------------------------------------------


async def _signing_ca(cluster: PluginCluster, ref: OperatorRef) -> tuple[str | None, datetime | None, str]:
    """The signing CA's fingerprint and notAfter, and where they came from (or why they are unknown)."""
    try:
        secret = await cluster.ca_secret(ref)
    except Unreadable as exc:
        secret, why = None, f"the CA Secret is not readable ({exc})"
    else:
        why = f"CA Secret {ref.namespace}/{ref.ca_secret} not found"
    if secret is not None:
        data = secret_data(secret, c.TLS_CRT)
        try:
            cert = parse_pem_certificates(data)[0] if data else None
        except PKIError as exc:
            return None, None, f"the CA Secret's tls.crt is unreadable: {exc}"
        if cert is not None:
            return fingerprint(cert), cert.not_valid_after_utc, "the CA Secret"
        why = "the CA Secret has no tls.crt"
    # Without the CA Secret: the CA the identities report, found in a namespace's trust bundle.
    try:
        identities = await cluster.identities(None)
    except Unreadable:
        return None, None, why
    view = ca_view_from_identities(identities)
    for body in identities:
        namespace = str((body.get("metadata") or {}).get("namespace"))
        try:
            config_map = await cluster.get(core_path("configmaps", namespace, c.TRUST_BUNDLE_CONFIGMAP))
        except Unreadable:
            continue
        pem = str(((config_map or {}).get("data") or {}).get(c.CA_CRT) or "")
        try:
            certs = parse_pem_certificates(pem.encode()) if pem else []
        except PKIError:
            continue
        match = next((cert for cert in certs if fingerprint(cert) == view.signing), None)
        if match is not None:
            return view.signing, match.not_valid_after_utc, f"the trust bundle in {namespace}"
    return view.signing, None, why


async def _webhook_ca(cluster: PluginCluster, ref: OperatorRef) -> str | None:
    """The fingerprint of the webhook CA that signs the replicas' serving certificates, if readable."""
    try:
        secret = await cluster.get(core_path("secrets", ref.namespace, ref.webhook_ca_secret))
    except Unreadable:
        return None
    data = secret_data(secret, c.TLS_CRT) if secret is not None else None
    try:
        return fingerprint(parse_pem_certificates(data)[0]) if data else None
    except PKIError:
        return None


async def _probe(cluster: PluginCluster, namespace: str) -> checks.ProbeOutcome:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "kubectl-mtls-check-", "namespace": namespace,
                         "labels": {c.INJECT_LABEL: c.INJECT_VALUE, "app.kubernetes.io/name": "kubectl-mtls-check"}},
            "spec": {"containers": [{"name": "probe", "image": "registry.k8s.io/pause:3.10"}]}}
    try:
        created = await cluster.create(core_path("pods", namespace), body, dry_run=True)
    except KubernetesAPIError as exc:
        return checks.ProbeOutcome(exc.status or 0, str(exc))
    return checks.ProbeOutcome(201 if created else 0, "" if created else "empty answer")


async def _review(cluster: PluginCluster, user: str | None, groups: list[str], permission: checks.Permission
                  ) -> tuple[checks.Permission, bool | None, str]:
    """A SubjectAccessReview for ``user``, or (``user`` None) a SelfSubjectAccessReview for whoever we are."""
    kind = "SubjectAccessReview" if user is not None else "SelfSubjectAccessReview"
    spec: dict[str, Any] = {"resourceAttributes": permission.attributes()}
    if user is not None:
        spec.update(user=user, groups=groups)
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec}
    try:
        answer = await cluster.create(f"/apis/authorization.k8s.io/v1/{kind.lower()}s", body)
    except KubernetesAPIError as exc:
        if exc.status == 404:
            return permission, None, f"the API server does not serve authorization.k8s.io/v1 {kind}"
        return permission, None, f"{kind} refused: {exc}"
    result = answer.get("status") or {}
    if "allowed" not in result:
        return permission, None, f"the {kind} came back without a decision"
    return permission, bool(result.get("allowed")), str(result.get("reason") or "")


async def check(cluster: PluginCluster, ref: OperatorRef, probe_namespace: str, now: datetime) -> Output:
    results: list[checks.CheckResult] = []
    try:
        crd = await cluster.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{checks.CRD_NAME}")
        results.append(checks.check_crd(crd))
    except Unreadable as exc:
        if exc.status is None:
            # Nothing else can be told either.
            unreachable = checks.CheckResult("API server reachable", checks.Level.FAIL, str(exc),
                                             "check your kubeconfig and context (--kubeconfig, --context)")
            return Output({"checks": [{"name": unreachable.name, "result": unreachable.level.value,
                                       "message": unreachable.message, "hint": unreachable.hint}]},
                          render.check_text([unreachable]), 1)
        results.append(checks.CheckResult("CRD installed", checks.Level.WARN, f"could not check: {exc}",
                                          "needs get on customresourcedefinitions.apiextensions.k8s.io"))
    lease_ref = f"{ref.namespace}/{ref.lease}"
    try:
        lease = await cluster.get(group_path("coordination.k8s.io", "v1", "leases", ref.namespace, ref.lease))
        results.append(checks.check_lease(lease, lease_ref, now))
    except Unreadable as exc:
        results.append(checks.CheckResult("leader holds a fresh Lease", checks.Level.WARN, f"could not check: {exc}",
                                          f"needs get on leases.coordination.k8s.io in {ref.namespace}"))
    signing, not_after, where = await _signing_ca(cluster, ref)
    webhook_ca = await _webhook_ca(cluster, ref)
    configurations: dict[str, Mapping[str, Any] | None] = {}
    unreadable: list[str] = []
    for kind in checks.WEBHOOK_KINDS:
        try:
            configurations[kind] = await cluster.get(
                group_path("admissionregistration.k8s.io", "v1", kind, None, ref.webhook_configuration))
        except Unreadable as exc:
            unreadable.append(f"{kind}: {exc}")
    if unreadable:
        results.append(checks.CheckResult("webhook caBundle", checks.Level.WARN,
                                          f"could not check: {'; '.join(unreadable)}",
                                          "needs get on mutating/validatingwebhookconfigurations"))
    else:
        results.extend(checks.check_webhook_bundles(configurations, ref.webhook_configuration, webhook_ca))
    mutating = configurations.get("mutatingwebhookconfigurations")
    hooks = (mutating or {}).get("webhooks") or []
    inject = next((hook for hook in hooks if hook.get("name") == c.INJECT_WEBHOOK_NAME), None)
    if inject is not None:
        if probe_namespace in ("kube-system", ref.namespace):
            results.append(checks.probe_skipped(probe_namespace, "the webhook is not called there"))
        else:
            outcome = await _probe(cluster, probe_namespace)
            results.append(checks.check_probe(outcome, probe_namespace, str(inject.get("failurePolicy") or "Fail")))
    results.append(checks.check_ca_validity(not_after, signing, where, now))
    user = f"system:serviceaccount:{ref.namespace}:{ref.service_account}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{ref.namespace}", "system:authenticated"]
    permissions = checks.operator_permissions(ref.namespace, ref.lease, ref.webhook_configuration)
    answers = await asyncio.gather(*(_review(cluster, user, groups, p) for p in permissions))
    results.append(checks.check_rbac(user, answers))
    needs = checks.user_needs(ref.namespace, ref.ca_secret, probe_namespace)
    own = await asyncio.gather(*(_review(cluster, None, [], permission) for permission, _ in needs))
    results.append(checks.check_own_access([(perm, purpose, allowed, reason)
                                            for (perm, purpose), (_, allowed, reason) in zip(needs, own, strict=True)]))
    data = {"checks": [{"name": r.name, "result": r.level.value, "message": r.message, "hint": r.hint}
                       for r in results]}
    return Output(data, render.check_text(results), checks.exit_code(results))


# rotate-ca / renew --------------------------------------------------------------------------------


async def rotate_ca(cluster: PluginCluster, ref: OperatorRef) -> Output:
    try:
        secret = await cluster.ca_secret(ref)
    except Unreadable as exc:
        raise CommandError(f"cannot read the CA Secret {ref.namespace}/{ref.ca_secret}: {exc}") from None
    if secret is None:
        raise CommandError(f"CA Secret {ref.namespace}/{ref.ca_secret} not found (--operator-namespace, --ca-secret)")
    state = read_rotation((secret.get("metadata") or {}).get("annotations") or {})
    if state.phase is not Phase.IDLE:
        raise CommandError(f"a CA rotation is already under way (phase {state.phase}); follow it with "
                           "kubectl mtls status")
    if state.origin == ORIGIN_SUPPLIED:
        raise CommandError("the CA was supplied by you, so the operator never generates its successor: put the "
                           f"new CA into {ref.ca_secret}'s next.crt and next.key (and its root into ca.crt)")
    data = {"caSecret": f"{ref.namespace}/{ref.ca_secret}", "requested": True,
            "alreadyRequested": state.rotate_requested}
    if not state.rotate_requested:
        try:
            await cluster.merge_patch(core_path("secrets", ref.namespace, ref.ca_secret),
                                      {"metadata": {"annotations": {ROTATE_ANNOTATION: "true"}}})
        except KubernetesAPIError as exc:
            raise CommandError(f"cannot annotate the CA Secret: {exc}") from None
    text = (f"CA rotation requested ({ROTATE_ANNOTATION}=true on Secret {ref.namespace}/{ref.ca_secret}). "
            "Phases: Distributing -> Reissuing -> Retiring -> Idle; follow them with kubectl mtls status")
    return Output(data, text)


async def renew(cluster: PluginCluster, namespace: str, identity: str, now: datetime) -> Output:
    try:
        body = await cluster.get(group_path(c.GROUP, c.VERSION, c.PLURAL, namespace, identity))
        secrets = await cluster.managed_secrets(namespace, identity)
    except Unreadable as exc:
        raise CommandError(f"cannot read identity {namespace}/{identity} and its Secrets: {exc}") from None
    if body is None:
        raise CommandError(f"identity {namespace}/{identity} not found")
    patch = {"metadata": {"annotations": {c.RENEW_AT_ANNOTATION: format_time(now),
                                          c.RENEW_REASON_ANNOTATION: MANUAL_RENEWAL}}}
    marked: list[str] = []
    for secret in sorted(secrets, key=lambda s: str(s["metadata"].get("name"))):
        name = str(secret["metadata"].get("name"))
        try:
            await cluster.merge_patch(core_path("secrets", namespace, name), patch)
        except KubernetesAPIError as exc:
            raise CommandError(f"marked {len(marked)} Secret(s), then Secret {namespace}/{name} failed: "
                               f"{exc}") from None
        marked.append(name)
    data = {"identity": f"{namespace}/{identity}", "reason": MANUAL_RENEWAL, "secrets": marked}
    text = (f"{len(marked)} certificate(s) of identity {namespace}/{identity} marked for renewal (reason "
            f"{MANUAL_RENEWAL}); the operator re-issues them under its rate cap (MTLS_MAX_ISSUANCE_PER_SECOND)"
            if marked else f"identity {namespace}/{identity} has no certificates to renew")
    return Output(data, text)
