"""Pod injection by the mutating webhook: annotation, Secret volume and mounts, refusals, warnings."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from mtls_operator import constants as c
from mtls_operator.rules.delivery import PodCertificateSource
from mtls_operator.rules.injection import (
    SUFFIX_ALPHABET,
    SUFFIX_LENGTH,
    SUFFIX_SPACE,
    InjectionError,
    inject,
    mount_path_problem,
    secret_name_suffix,
)
from mtls_operator.rules.plan import IdentityRef, identity_ref
from mtls_operator.rules.policy import is_dns1123_subdomain

SUFFIX = "x7k2p9bq"
assert len(SUFFIX) == SUFFIX_LENGTH
MOUNT = {"name": "mtls-identity", "mountPath": "/var/run/secrets/mtls.dev", "readOnly": True}


def identity(name: str, created: str = "2026-01-01T00:00:00Z", *, app: str = "payments", sa: str | None = None,
             namespace: str = "shop", selector: Any = None) -> IdentityRef:
    spec: dict[str, Any] = {"selector": selector if selector is not None else {"matchLabels": {"app": app}}}
    if sa:
        spec["serviceAccountName"] = sa
    return identity_ref({"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                                      "creationTimestamp": created}, "spec": spec})


PAYMENTS = [identity("payments")]


def pod(*, name: str | None = None, generate_name: str | None = "web-7d9f-", app: str = "payments",
        opted_in: bool = True, sa: str = "default", annotations: dict[str, str] | None = None,
        containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A pod as the API server hands it to the webhook on CREATE (namespace set, no uid yet)."""
    labels = {"app": app}
    if opted_in:
        labels[c.INJECT_LABEL] = c.INJECT_VALUE
    metadata: dict[str, Any] = {"namespace": "shop", "labels": labels}
    if name:
        metadata["name"] = name
    elif generate_name:
        metadata["generateName"] = generate_name
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {"serviceAccountName": sa}
    if containers is not None:
        spec["containers"] = containers
    else:
        spec["containers"] = [{"name": "app", "image": "example/app:1"}]
    if init is not None:
        spec["initContainers"] = init
    if volumes is not None:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def secret_volume(secret_name: str) -> dict[str, Any]:
    return {"name": "mtls-identity", "secret": {"secretName": secret_name}}


def run(body: dict[str, Any], identities: list[IdentityRef] = PAYMENTS) -> dict[str, Any]:
    return inject(body, namespace="shop", identities=identities, suffix=SUFFIX).pod


# Served pods: what is added ---------------------------------------------------------------------------

SERVED_CASES: list[tuple[str, dict[str, Any], str, list[str]]] = [
    # (case, pod, expected Secret name, containers (init first) that end up with the default mount)
    ("deployment pod: generateName plus a random suffix", pod(), f"payments-web-7d9f-{SUFFIX}", ["app"]),
    ("named pod: the operator's usual <identity>-<pod>", pod(name="payments-0"), "payments-payments-0", ["app"]),
    ("no name at all: identity and suffix", pod(generate_name=None), f"payments-{SUFFIX}", ["app"]),
    ("init containers too", pod(init=[{"name": "setup", "image": "x"}],
                                containers=[{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]),
     f"payments-web-7d9f-{SUFFIX}", ["setup", "a", "b"]),
    ("no containers: admitted, no mounts", pod(containers=[]), f"payments-web-7d9f-{SUFFIX}", []),
    ("an annotation of the pod's own is kept", pod(annotations={c.SECRET_NAME_ANNOTATION: "mine"}), "mine", ["app"]),
    ("a hand-made Secret volume names the Secret", pod(volumes=[secret_volume("handmade")]), "handmade", ["app"]),
    ("hand-made volume and annotation agree", pod(volumes=[secret_volume("same")],
                                                  annotations={c.SECRET_NAME_ANNOTATION: "same"}), "same", ["app"]),
    ("a hand-made Secret volume without a secretName gets one", pod(volumes=[{"name": "mtls-identity", "secret": {}}]),
     f"payments-web-7d9f-{SUFFIX}", ["app"]),
    ("a generateName ending in '.' is trimmed", pod(generate_name="web."), f"payments-web-{SUFFIX}", ["app"]),
    ("a malformed generateName still gives a valid name", pod(generate_name="Web_"), f"payments-{SUFFIX}", ["app"]),
]


@pytest.mark.parametrize(("body", "secret_name", "mounted"), [case[1:] for case in SERVED_CASES],
                         ids=[case[0] for case in SERVED_CASES])
def test_served_pod_gets_annotation_volume_and_mounts(body: dict[str, Any], secret_name: str,
                                                      mounted: list[str]) -> None:
    original = copy.deepcopy(body)
    result = inject(body, namespace="shop", identities=PAYMENTS, suffix=SUFFIX)
    assert body == original, "the input is never modified"
    assert (result.identity, result.secret_name, result.warnings) == ("payments", secret_name, ())
    out = result.pod
    assert out["metadata"]["annotations"][c.SECRET_NAME_ANNOTATION] == secret_name
    identity_volumes = [v for v in out["spec"]["volumes"] if v["name"] == "mtls-identity"]
    assert identity_volumes == [{"name": "mtls-identity", "secret": {"secretName": secret_name}}]
    containers = [*out["spec"].get("initContainers", []), *out["spec"]["containers"]]
    assert [ctr["name"] for ctr in containers if MOUNT in ctr.get("volumeMounts", [])] == mounted
    assert [ctr["name"] for ctr in containers] == mounted, "every container and init container mounts it"
    # Only the annotation, the volume and the mounts change.
    for key in ("labels", "namespace", "name", "generateName"):
        assert out["metadata"].get(key) == original["metadata"].get(key)
    assert out["spec"]["serviceAccountName"] == original["spec"]["serviceAccountName"]


@pytest.mark.parametrize("body", [case[1] for case in SERVED_CASES], ids=[case[0] for case in SERVED_CASES])
def test_a_second_pass_adds_nothing(body: dict[str, Any]) -> None:
    once = run(body)
    # Another suffix on the second pass: it must not matter, the first pass's name stays.
    assert inject(once, namespace="shop", identities=PAYMENTS, suffix="zzzzzzzz").pod == once


@pytest.mark.parametrize(
    ("annotation", "expected_path"),
    [
        (None, "/var/run/secrets/mtls.dev"),
        ("/etc/tls", "/etc/tls"),
        ("/etc/tls/", "/etc/tls/"),
        ("/srv/my certs", "/srv/my certs"),
    ],
)
def test_mount_path_default_and_override(annotation: str | None, expected_path: str) -> None:
    body = pod(annotations={c.MOUNT_PATH_ANNOTATION: annotation} if annotation else None)
    mounts = run(body)["spec"]["containers"][0]["volumeMounts"]
    assert mounts == [{"name": "mtls-identity", "mountPath": expected_path, "readOnly": True}]


def test_existing_mounts_are_kept_and_a_container_mounting_the_volume_elsewhere_keeps_its_mount() -> None:
    other = {"name": "data", "mountPath": "/data"}
    own = {"name": "mtls-identity", "mountPath": "/tls", "readOnly": True}
    out = run(pod(containers=[{"name": "a", "volumeMounts": [other]}, {"name": "b", "volumeMounts": [own]}],
                  volumes=[{"name": "data", "emptyDir": {}}]))
    assert out["spec"]["containers"][0]["volumeMounts"] == [other, MOUNT]
    assert out["spec"]["containers"][1]["volumeMounts"] == [own]
    assert [v["name"] for v in out["spec"]["volumes"]] == ["data", "mtls-identity"]


def test_a_long_generate_name_is_shortened_to_a_valid_secret_name() -> None:
    result = inject(pod(generate_name="w" * 240 + "-"), namespace="shop", identities=PAYMENTS, suffix=SUFFIX)
    assert result.secret_name is not None
    assert len(result.secret_name) == 253
    assert result.secret_name.endswith(f"-{SUFFIX}")
    assert is_dns1123_subdomain(result.secret_name)


# Which identity serves ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identities", "expected"),
    [
        ([identity("new", "2026-02-01T00:00:00Z"), identity("old", "2026-01-01T00:00:00Z")], "old"),
        ([identity("b"), identity("a")], "a"),
        ([identity("narrow", sa="payments"), identity("wide", "2026-03-01T00:00:00Z")], "wide"),
        ([identity("elsewhere", namespace="other"), identity("here", "2026-05-01T00:00:00Z")], "here"),
        ([identity("broken", selector={"matchLabels": "x"}), identity("fine", "2026-05-01T00:00:00Z")], "fine"),
    ],
    ids=["older wins", "then by name", "service account must match", "own namespace only", "invalid selector"],
)
def test_the_serving_identity_follows_the_operators_rules(identities: list[IdentityRef], expected: str) -> None:
    result = inject(pod(name="p"), namespace="shop", identities=identities, suffix=SUFFIX)
    assert result.identity == expected
    assert result.secret_name == f"{expected}-p"


# Left unchanged -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "identities", "warning_parts"),
    [
        (pod(app="orders"), PAYMENTS,
         ["no MTLSIdentity in this namespace selects this pod", "app=orders", "mtls.dev/inject=true",
          "service account default", "no mtls-identity volume"]),
        (pod(), [], ["no MTLSIdentity in this namespace selects this pod"]),
        (pod(), [identity("payments", sa="payments")],
         ["service account default",
          "an identity selects these labels but serves only another service account"]),
        (pod(), [identity("payments", namespace="other")], ["no MTLSIdentity in this namespace"]),
        (pod(opted_in=False), PAYMENTS, []),
    ],
    ids=["no selector matches", "no identity at all", "other service account", "other namespace", "not opted in"],
)
def test_unserved_pods_are_admitted_unchanged_with_a_warning_saying_why(
    body: dict[str, Any], identities: list[IdentityRef], warning_parts: list[str]
) -> None:
    result = inject(body, namespace="shop", identities=identities, suffix=SUFFIX)
    assert (result.pod, result.identity, result.secret_name) == (body, None, None)
    assert len(result.warnings) == (1 if warning_parts else 0)
    for part in warning_parts:
        assert part in result.warnings[0]


# Refused ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message_parts"),
    [
        (pod(annotations={c.MOUNT_PATH_ANNOTATION: "certs"}),
         ["annotation mtls.dev/mount-path='certs'", "it must be an absolute path"]),
        (pod(annotations={c.MOUNT_PATH_ANNOTATION: "/var/../etc"}), ["it must not contain '..'"]),
        (pod(annotations={c.MOUNT_PATH_ANNOTATION: "//"}), ["it must not be the root directory"]),
        (pod(annotations={c.MOUNT_PATH_ANNOTATION: "/tls\n"}), ["it must not contain control characters"]),
        (pod(volumes=[{"name": "mtls-identity", "emptyDir": {}}]), ["volume mtls-identity is not a Secret volume"]),
        (pod(volumes=[secret_volume("a")], annotations={c.SECRET_NAME_ANNOTATION: "b"}),
         ["volume mtls-identity mounts Secret 'a'", "mtls.dev/secret-name names 'b'", "make them agree"]),
        (pod(annotations={c.SECRET_NAME_ANNOTATION: "Not_Valid"}), ["'Not_Valid'", "is not a valid Secret name"]),
        (pod(containers=[{"name": "app", "volumeMounts": [{"name": "x", "mountPath": "/var/run/secrets/mtls.dev/"}]}]),
         ["container 'app' already mounts volume 'x' at /var/run/secrets/mtls.dev", "mtls.dev/mount-path"]),
    ],
    ids=["relative mount path", "dot-dot", "root", "control character", "volume of another kind",
         "volume and annotation disagree", "invalid Secret name", "mount path taken"],
)
def test_pods_that_cannot_work_are_refused_with_what_to_change(body: dict[str, Any], message_parts: list[str]) -> None:
    with pytest.raises(InjectionError) as refused:
        inject(body, namespace="shop", identities=PAYMENTS, suffix=SUFFIX)
    for part in message_parts:
        assert part in str(refused.value)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/var/run/secrets/mtls.dev", None),
        ("/a/b..c/d", None),
        ("relative/path", "it must be an absolute path"),
        ("", "it must be an absolute path"),
        ("/a/../b", "it must not contain '..'"),
        ("/..", "it must not contain '..'"),
        ("/", "it must not be the root directory"),
        ("/./", "it must not be the root directory"),
        ("/a\x00b", "it must not contain control characters"),
    ],
)
def test_mount_path_problem(path: str, problem: str | None) -> None:
    assert mount_path_problem(path) == problem


@pytest.mark.parametrize(
    ("draw", "suffix"),
    [
        (0, "bbbbbbbb"),
        (1, "cbbbbbbb"),
        (len(SUFFIX_ALPHABET), "bcbbbbbb"),
        (SUFFIX_SPACE - 1, "99999999"),
    ],
)
def test_secret_name_suffix_spans_the_alphabet(draw: int, suffix: str) -> None:
    assert secret_name_suffix(draw) == suffix
    assert len(suffix) == SUFFIX_LENGTH


# delivery: PodCertificate ------------------------------------------------------------------------------

SIGNER = "mtls.dev/spiffe"
SOURCE = PodCertificateSource(key_type="ECDSAP256", max_expiration_seconds=86400)
PCR_IDENTITY = [dataclasses.replace(identity("payments"), pod_certificate=SOURCE)]
PROJECTED = {
    "name": "mtls-identity",
    "projected": {"sources": [
        {"podCertificate": {"signerName": SIGNER, "keyType": "ECDSAP256", "maxExpirationSeconds": 86400,
                            "keyPath": "tls.key", "certificateChainPath": "tls.crt"}},
        {"clusterTrustBundle": {"signerName": SIGNER,
                                "labelSelector": {"matchLabels": {"mtls.dev/trust-bundle": "true"}},
                                "path": "ca.crt"}},
    ]},
}


def test_pod_certificate_identity_gets_the_projected_volume_at_the_same_place_and_file_names() -> None:
    result = inject(pod(init=[{"name": "setup", "image": "x"}]), namespace="shop", identities=PCR_IDENTITY,
                    suffix=SUFFIX, signer=SIGNER)
    assert (result.identity, result.secret_name, result.warnings) == ("payments", None, ())
    assert result.pod["spec"]["volumes"] == [PROJECTED]
    assert c.SECRET_NAME_ANNOTATION not in (result.pod["metadata"].get("annotations") or {})
    for container in (*result.pod["spec"]["initContainers"], *result.pod["spec"]["containers"]):
        assert container["volumeMounts"] == [MOUNT]
    # Idempotent: a second pass (the pod as stored) adds nothing.
    again = inject(result.pod, namespace="shop", identities=PCR_IDENTITY, suffix="other000", signer=SIGNER)
    assert again.pod == result.pod


def test_pod_certificate_volume_follows_the_mount_path_annotation() -> None:
    body = pod(annotations={c.MOUNT_PATH_ANNOTATION: "/etc/tls"})
    result = inject(body, namespace="shop", identities=PCR_IDENTITY, suffix=SUFFIX, signer=SIGNER)
    assert result.pod["spec"]["containers"][0]["volumeMounts"] == [{**MOUNT, "mountPath": "/etc/tls"}]


def test_pod_certificates_off_admit_the_pod_unchanged_with_a_warning() -> None:
    body = pod()
    result = inject(body, namespace="shop", identities=PCR_IDENTITY, suffix=SUFFIX, signer=None)
    assert result.pod == body
    assert result.identity is None
    (warning,) = result.warnings
    assert "asks for delivery: PodCertificate" in warning
    assert "podCertificates.enabled" in warning
    assert "payments" not in warning.replace("app=payments", "")


def test_a_hand_made_secret_volume_keeps_the_secret_for_a_pod_certificate_identity() -> None:
    result = inject(pod(volumes=[secret_volume("handmade")]), namespace="shop", identities=PCR_IDENTITY,
                    suffix=SUFFIX, signer=SIGNER)
    assert result.secret_name == "handmade"
    assert result.pod["spec"]["volumes"] == [secret_volume("handmade")]


def test_another_volume_under_the_name_is_refused_for_a_pod_certificate_identity() -> None:
    foreign = {"name": "mtls-identity", "projected": {"sources": [
        {"podCertificate": {"signerName": "example.com/other", "keyType": "ED25519", "keyPath": "k"}}]}}
    with pytest.raises(InjectionError, match=r"podCertificate source for signer mtls\.dev/spiffe"):
        inject(pod(volumes=[foreign]), namespace="shop", identities=PCR_IDENTITY, suffix=SUFFIX, signer=SIGNER)


def test_a_duration_beyond_91_days_is_capped_with_a_warning() -> None:
    capped = PodCertificateSource(key_type="RSA3072", max_expiration_seconds=7862400, capped=True)
    identities = [dataclasses.replace(identity("payments"), pod_certificate=capped)]
    result = inject(pod(), namespace="shop", identities=identities, suffix=SUFFIX, signer=SIGNER)
    source = result.pod["spec"]["volumes"][0]["projected"]["sources"][0]["podCertificate"]
    assert (source["keyType"], source["maxExpirationSeconds"]) == ("RSA3072", 7862400)
    (warning,) = result.warnings
    assert "91 days" in warning
