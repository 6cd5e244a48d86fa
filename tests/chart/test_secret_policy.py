"""The chart's ValidatingAdmissionPolicy on the operator's Secret writes, evaluated with real CEL.

The API server evaluates it (https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/):
``matchConditions`` first (all true, or the request is not matched), then every validation with
``request``, ``object`` (null on DELETE), ``oldObject`` (null on CREATE) and the ``variables``, each
evaluated lazily; a validation that is false *or fails to evaluate* refuses the request
(``failurePolicy: Fail``), with its ``messageExpression``. cel-python does that here, over the
policy as helm renders it, for the requests the operator really makes: the Secret bodies come from
the operator's own code (``secret_body``, the CA Secret as ``CAStore`` writes it), and updates are the
operator's merge patches applied to them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import celpy
import pytest
from celpy import celtypes
from celpy.evaluation import CELEvalError

from kube_emulator.patching import merge_patch
from mtls_operator import constants as c
from mtls_operator.rules.plan import SecretContent, pod_info, secret_body
from tests.chart.conftest import MATRIX, NAMESPACE, RELEASE, Rendered

OPERATOR = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Verdict:
    matched: bool
    allowed: bool = True
    message: str | None = None

    @property
    def refused(self) -> bool:
        return self.matched and not self.allowed


class Policy:
    """The rendered ValidatingAdmissionPolicy, compiled once, evaluated like the API server does."""

    def __init__(self, rendered: Rendered) -> None:
        self.body = rendered.one("ValidatingAdmissionPolicy")
        binding = rendered.one("ValidatingAdmissionPolicyBinding")
        assert binding["spec"] == {"policyName": self.body["metadata"]["name"], "validationActions": ["Deny"]}
        spec = self.body["spec"]
        assert spec["failurePolicy"] == "Fail"
        self._env = celpy.Environment()
        self._conditions = [self._compile(item["expression"]) for item in spec["matchConditions"]]
        self._variables = [(item["name"], self._compile(item["expression"])) for item in spec["variables"]]
        self._validations = [(self._compile(item["expression"]), self._compile(item["messageExpression"]))
                             for item in spec["validations"]]

    def _compile(self, expression: str) -> celpy.Runner:
        return self._env.program(self._env.compile(expression))

    def matches_resource(self, operation: str) -> bool:
        (rule,) = self.body["spec"]["matchConstraints"]["resourceRules"]
        return rule == {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": ["secrets"]} and operation in rule["operations"]

    def admit(self, operation: str, username: str, namespace: str, name: str,
              new: dict[str, Any] | None, old: dict[str, Any] | None) -> Verdict:
        if not self.matches_resource(operation):
            return Verdict(matched=False)
        request = {"operation": operation, "namespace": namespace, "name": name,
                   "userInfo": {"username": username, "groups": ["system:authenticated"]},
                   "resource": {"group": "", "version": "v1", "resource": "secrets"}}
        activation: dict[str, Any] = {"request": celpy.json_to_cel(request), "object": celpy.json_to_cel(new),
                                      "oldObject": celpy.json_to_cel(old)}
        for condition in self._conditions:
            try:
                if condition.evaluate(activation) != celtypes.BoolType(True):
                    return Verdict(matched=False)
            except CELEvalError as error:  # failurePolicy Fail
                return Verdict(matched=True, allowed=False, message=f"matchCondition failed: {error}")
        variables: dict[celtypes.StringType, Any] = {}
        for name_, program in self._variables:
            try:
                variables[celtypes.StringType(name_)] = program.evaluate({**activation,
                                                                          "variables": celtypes.MapType(variables)})
            except CELEvalError as error:  # an error only counts where a validation reads it
                variables[celtypes.StringType(name_)] = error
        activation["variables"] = celtypes.MapType(variables)
        for validation, message in self._validations:
            try:
                allowed = validation.evaluate(activation) == celtypes.BoolType(True)
            except CELEvalError:
                allowed = False
            if not allowed:
                return Verdict(matched=True, allowed=False, message=str(message.evaluate(activation)))
        return Verdict(matched=True)


@pytest.fixture(scope="module")
def policy(rendered: dict[str, Rendered]) -> Policy:
    return Policy(rendered["secret-policy"])


def pod_secret(name: str = "payments-payments-0", namespace: str = "shop", **template_labels: str) -> dict[str, Any]:
    """A pod Secret exactly as the operator creates it."""
    pod = pod_info({"metadata": {"name": "payments-0", "namespace": namespace, "uid": "u-1",
                                 "labels": {"app": "payments"}}, "spec": {"serviceAccountName": "payments"}})
    content = SecretContent(chain_pem=b"leaf", key_pem=b"key", bundle_pem=b"bundle",
                            spiffe_id=f"spiffe://cluster.local/ns/{namespace}/sa/payments", serial="01",
                            not_after=NOW + timedelta(hours=24), renew_at=NOW + timedelta(hours=16),
                            ca_fingerprint="sha256:aa", spec_hash="h1")
    body = secret_body(name=name, identity="payments", pod=pod, content=content, template_labels=template_labels,
                       template_annotations={})
    body["metadata"].update(uid="s-1", resourceVersion="7")
    return body


def foreign_secret(name: str = "shop-tls", namespace: str = "shop", **labels: str) -> dict[str, Any]:
    """A Secret somebody else made (a tenant's own TLS Secret)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace, "uid": "f-1", "resourceVersion": "3",
                         **({"labels": labels} if labels else {})},
            "data": {"tls.crt": "Zm9v", "tls.key": "YmFy"}}


def ca_secret(name: str = c.DEFAULT_CA_SECRET, **labels: str) -> dict[str, Any]:
    """A CA Secret as the operator creates it (only the managed-by label), or a user's (none)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": NAMESPACE, **({"labels": labels} if labels else {})},
            "data": {"tls.crt": "Y2E=", "tls.key": "a2V5", "ca.crt": "Y2E="}}


def patched(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = merge_patch(copy.deepcopy(body), patch)
    assert isinstance(result, dict)
    return result


OURS = {c.MANAGED_BY_LABEL: c.MANAGER_NAME}
RENEWAL = {"metadata": {"annotations": {c.SERIAL_ANNOTATION: "02"}, "resourceVersion": "7"},
           "data": {"tls.crt": "bmV3", "tls.key": "bmV3a2V5"}}


def test_the_operator_creates_updates_and_deletes_its_pod_secrets(policy: Policy) -> None:
    created = pod_secret()
    assert policy.admit("CREATE", OPERATOR, "shop", created["metadata"]["name"], created, None) == Verdict(True)
    # Its first update after creating it: a renewal, then labels from a changed secretTemplate.
    renewed = patched(created, RENEWAL)
    assert policy.admit("UPDATE", OPERATOR, "shop", "payments-payments-0", renewed, created) == Verdict(True)
    relabelled = patched(renewed, {"metadata": {"labels": {"team": "shop"}}})
    assert policy.admit("UPDATE", OPERATOR, "shop", "payments-payments-0", relabelled, renewed) == Verdict(True)
    # A full re-issue writes labels, annotations, ownerReferences, data and type at once.
    reissued = pod_secret(team="shop")
    patch = {"metadata": {k: reissued["metadata"][k] for k in ("labels", "annotations", "ownerReferences")},
             "data": reissued["data"], "type": reissued["type"]}
    assert policy.admit("UPDATE", OPERATOR, "shop", "payments-payments-0", patched(relabelled, patch),
                        relabelled) == Verdict(True)
    assert policy.admit("DELETE", OPERATOR, "shop", "payments-payments-0", None, relabelled) == Verdict(True)


@pytest.mark.parametrize(("operation", "new", "old"), [
    ("CREATE", foreign_secret(), None),
    ("CREATE", foreign_secret(**OURS), None),
    ("CREATE", foreign_secret(**OURS, **{c.IDENTITY_LABEL: ""}), None),
    ("CREATE", foreign_secret(**{c.MANAGED_BY_LABEL: "Helm", c.IDENTITY_LABEL: "payments"}), None),
    ("UPDATE", patched(foreign_secret(), RENEWAL), foreign_secret()),
    # The hijack of issue 10: the operator's full re-issue over a Secret it never made, labels and all.
    ("UPDATE", patched(foreign_secret(), {"metadata": {"labels": pod_secret()["metadata"]["labels"]}}),
     foreign_secret()),
    # Its own Secret, stripped of its labels by the write.
    ("UPDATE", patched(pod_secret(), {"metadata": {"labels": {c.MANAGED_BY_LABEL: None}}}), pod_secret()),
    ("DELETE", None, foreign_secret()),
    ("DELETE", None, foreign_secret(**OURS)),
], ids=["create unlabelled", "create without identity label", "create with an empty identity",
        "create managed by another tool", "patch unmanaged", "patch unmanaged adding the labels",
        "patch removing the labels", "delete unmanaged", "delete labelled managed-by only"])
def test_the_operator_is_refused_every_other_secret(policy: Policy, operation: str, new: dict[str, Any] | None,
                                                    old: dict[str, Any] | None) -> None:
    verdict = policy.admit(operation, OPERATOR, "shop", "shop-tls", new, old)
    assert verdict.refused
    assert verdict.message == (
        "mtls-operator may only write Secrets labelled app.kubernetes.io/managed-by=mtls-operator and "
        f"mtls.dev/identity, and its CA Secrets in {NAMESPACE}: {operation} of Secret shop/shop-tls refused by "
        "ValidatingAdmissionPolicy mtls-operator-secret-writes"
    )


def test_the_operator_writes_its_ca_secrets_by_name(policy: Policy) -> None:
    for name in (c.DEFAULT_CA_SECRET, c.DEFAULT_WEBHOOK_CA_SECRET):
        created = ca_secret(name, **OURS)
        assert policy.admit("CREATE", OPERATOR, NAMESPACE, name, created, None) == Verdict(True)
        rotating = patched(created, {"metadata": {"annotations": {"mtls.dev/rotation-phase": "Distributing"}},
                                     "data": {"next.crt": "bmV4dA==", "next.key": "bmV4dGtleQ=="}})
        assert policy.admit("UPDATE", OPERATOR, NAMESPACE, name, rotating, created) == Verdict(True)
    # A CA a person supplied carries no label of ours: the rotation still annotates it.
    supplied = ca_secret()
    assert policy.admit("UPDATE", OPERATOR, NAMESPACE, c.DEFAULT_CA_SECRET,
                        patched(supplied, {"metadata": {"annotations": {"mtls.dev/ca-origin": "supplied"}}}),
                        supplied) == Verdict(True)
    # The same names anywhere else are not its CA Secrets.
    elsewhere = policy.admit("CREATE", OPERATOR, "shop", c.DEFAULT_CA_SECRET, ca_secret(**OURS), None)
    assert elsewhere.refused


@pytest.mark.parametrize("username", [
    "system:admin",
    "kubernetes-admin",
    "system:serviceaccount:shop:mtls-operator",  # the same name in a tenant's namespace
    f"system:serviceaccount:{NAMESPACE}:default",
    "system:kube-controller-manager",
])
def test_nobody_else_is_matched(policy: Policy, username: str) -> None:
    for operation, new, old in [("CREATE", foreign_secret(), None),
                                ("UPDATE", patched(foreign_secret(), RENEWAL), foreign_secret()),
                                ("DELETE", None, pod_secret())]:
        assert policy.admit(operation, username, "shop", "shop-tls", new, old) == Verdict(matched=False)


def test_the_ca_secret_names_follow_the_values(rendered: dict[str, Rendered]) -> None:
    """An existing CA, the webhooks off, another ServiceAccount: the policy follows each."""
    own = Policy(rendered["secret-policy-own-names"])
    operator = f"system:serviceaccount:{NAMESPACE}:mtls"
    assert own.admit("UPDATE", operator, NAMESPACE, "corp-intermediate-ca", ca_secret("corp-intermediate-ca"),
                     ca_secret("corp-intermediate-ca")) == Verdict(True)
    for name in (c.DEFAULT_CA_SECRET, c.DEFAULT_WEBHOOK_CA_SECRET):
        refused = own.admit("CREATE", operator, NAMESPACE, name, ca_secret(name, **OURS), None)
        assert refused.refused, name
    assert own.admit("CREATE", OPERATOR, NAMESPACE, "x", foreign_secret(), None) == Verdict(matched=False)
    assert own.admit("CREATE", operator, "shop", "p", pod_secret(), None) == Verdict(True)


def test_the_policy_is_rendered_only_where_the_api_serves_it(rendered: dict[str, Rendered]) -> None:
    kinds = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for name in MATRIX:
        present = {obj["kind"] for obj in rendered[name].objects} & kinds
        expected = kinds if MATRIX[name].api_versions and name != "secret-policy-off" else set()
        assert present == expected, name
