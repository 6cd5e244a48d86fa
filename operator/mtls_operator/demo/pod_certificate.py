"""The demo's pod served by a pod certificate (``spec.delivery: PodCertificate``): the key never leaves the node.

An identity with ``delivery: PodCertificate``; a Node and a pod bound to it at creation (the emulator
has no scheduler), created through the API so the operator's webhook injects the projected volume;
the emulator's kubelet stand-in makes the key in memory and the PodCertificateRequest; the operator's
signer answers ``Issued``; the files the pod sees (the chain, the key, ``ca.crt`` from the signer's
ClusterTrustBundle) then do a mutual-TLS handshake with a Secret-served pod, and no Secret anywhere
holds that pod's key.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kube_emulator import Kubelet, VolumeNotReady
from mtls_operator import constants as c
from mtls_operator.demo.handshake import HandshakeResult, TLSFiles, mutual_tls_handshake
from mtls_operator.errors import PKIError
from mtls_operator.pki import (
    PrivateKey,
    key_matches_certificate,
    load_private_key_pem,
    parse_pem_certificates,
    verify_leaf,
)
from mtls_operator.pki.bundle import BUNDLE_LIMITS
from mtls_operator.rules.delivery import (
    CERTIFICATES_GROUP,
    CLUSTER_TRUST_BUNDLES,
    TRUST_BUNDLE_LABEL,
    cluster_trust_bundle_name,
)

APP = "inventory"
NODE = "node-1"
GENERATE_NAME = f"{APP}-5c6b7d-"
PCRS = "podcertificaterequests"
TIMEOUT = 20.0

Say = Callable[[str], None]
CreatePod = Callable[[Mapping[str, Any]], Awaitable[tuple[int, dict[str, Any], list[str]]]]
Check = tuple[str, bool]


def _identity(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{c.GROUP}/{c.VERSION}",
        "kind": c.KIND,
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": APP}},
            "serviceAccountName": APP,
            "dnsNames": [APP, f"{APP}.{namespace}.svc"],
            "duration": "24h",
            "delivery": "PodCertificate",
        },
    }


def _pod(namespace: str) -> dict[str, Any]:
    """A Deployment's pod (a generateName), already bound to the node: the emulator schedules nothing."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": GENERATE_NAME, "namespace": namespace,
                     "labels": {"app": APP, c.INJECT_LABEL: c.INJECT_VALUE}},
        "spec": {"serviceAccountName": APP, "nodeName": NODE,
                 "containers": [{"name": "app", "image": f"example/{APP}:1"}]},
        "status": {"phase": "Running"},
    }


def _sources(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sources of the pod's ``mtls-identity`` projected volume ([] when it has none)."""
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        if volume.get("name") == c.IDENTITY_VOLUME:
            return list(((volume.get("projected") or {}).get("sources")) or ())
    return []


def _describe_volume(sources: list[dict[str, Any]]) -> str:
    parts = []
    for source in sources:
        if "podCertificate" in source:
            pc = source["podCertificate"]
            parts.append(f"podCertificate (signer {pc.get('signerName')}, keyType {pc.get('keyType')}, "
                         f"maxExpirationSeconds {pc.get('maxExpirationSeconds')}) -> {pc.get('keyPath')}, "
                         f"{pc.get('certificateChainPath')}")
        elif "clusterTrustBundle" in source:
            ctb = source["clusterTrustBundle"]
            matched = (ctb.get("labelSelector") or {}).get("matchLabels") or {}
            labels = ",".join(f"{k}={v}" for k, v in matched.items())
            parts.append(f"clusterTrustBundle (signer {ctb.get('signerName')}, {labels}) -> {ctb.get('path')}")
        else:
            parts.append(", ".join(source))
    return " + ".join(parts)


def _ready_by_pod_certificate(identity: Mapping[str, Any] | None) -> str | None:
    """The Ready condition's message once the identity counts its pod among the kubelet's."""
    status = (identity or {}).get("status") or {}
    for cond in status.get("conditions") or ():
        if cond.get("type") == "Ready" and cond.get("status") == "True" and status.get("podCertificatePods") == 1:
            return str(cond.get("message"))
    return None


def _spiffe_and_dns(leaf: x509.Certificate) -> tuple[list[str], list[str]]:
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier), names.get_values_for_type(x509.DNSName)


def _describe_key(key: PrivateKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name} private key"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size} private key"
    return f"{type(key).__name__} private key"


def _ders(pem: bytes) -> set[bytes]:
    return {cert.public_bytes(serialization.Encoding.DER) for cert in parse_pem_certificates(pem, BUNDLE_LIMITS)}


def _secrets_holding(emulator: Any, key_pem: bytes) -> list[str]:
    """Every Secret, in any namespace, one of whose values holds the key (PEM or its DER)."""
    der = load_private_key_pem(key_pem).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    found = []
    for secret in emulator.list("v1", "secrets"):
        for value in (secret.get("data") or {}).values():
            decoded = base64.b64decode(value)
            if key_pem.strip() in decoded or der in decoded:
                found.append(f"{secret['metadata']['namespace']}/{secret['metadata']['name']}")
                break
    return found


def _write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        mode = 0o600 if name == c.TLS_KEY else 0o644
        descriptor = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)


async def serve_by_pod_certificate(
    emulator: Any,
    *,
    namespace: str,
    signer: str,
    create_pod: CreatePod,
    peer_name: str,
    peer: TLSFiles,
    ca_bundle: bytes,
    output_dir: Path | None,
    say: Say,
    report: Callable[[Say, str, HandshakeResult], None],
) -> list[Check]:
    """The pod-certificate part of the demo: its lines through ``say``, its checks returned."""
    checks: list[Check] = []
    say("")
    say(f"Pod certificates (delivery: PodCertificate, signer {signer}): the key never leaves the node")
    emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    emulator.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": APP, "namespace": namespace}})
    emulator.create(_identity(namespace))
    say(f"Created Node {NODE}, ServiceAccount {namespace}/{APP}, MTLSIdentity {namespace}/{APP} with delivery: "
        "PodCertificate")
    code, pod, warnings = await create_pod(_pod(namespace))
    if code != 201:
        say(f"FAILED: creating the {APP} pod through the API answered {code}: {pod.get('message')}")
        return [(f"the {APP} pod was admitted", False)]
    name = str(pod["metadata"]["name"])
    sources = _sources(pod)
    mounted_in = [ctr["name"] for ctr in pod["spec"]["containers"]
                  if any(m.get("name") == c.IDENTITY_VOLUME and m.get("mountPath") == c.DEFAULT_MOUNT_PATH
                         for m in ctr.get("volumeMounts") or [])]
    say(f"Created pod {namespace}/{name} bound to {NODE} (spec.nodeName) through the API; the webhook injected "
        f"projected volume {c.IDENTITY_VOLUME}, mounted at {c.DEFAULT_MOUNT_PATH} in {', '.join(mounted_in)}:\n"
        f"  {_describe_volume(sources)}" + "".join(f"\n  warning: {text}" for text in warnings))
    kinds = [next(iter(source)) for source in sources]
    annotations = pod["metadata"].get("annotations") or {}
    checks.append(("the webhook gave the PodCertificate pod the projected volume (podCertificate + "
                   "clusterTrustBundle for our signer), no Secret",
                   kinds == ["podCertificate", "clusterTrustBundle"] and mounted_in == ["app"]
                   and all(next(iter(s.values())).get("signerName") == signer for s in sources)
                   and c.SECRET_NAME_ANNOTATION not in annotations))
    if kinds[:1] != ["podCertificate"]:
        return checks

    kubelet = Kubelet(emulator, NODE)
    kubelet.sync()
    projection = kubelet.projection(namespace, name, c.IDENTITY_VOLUME, 0)
    if projection is None or not projection.request_name:
        say(f"FAILED: the kubelet made no PodCertificateRequest: {projection.last_error if projection else 'no pod'}")
        checks.append(("the kubelet asked for a certificate", False))
        return checks
    request_name = projection.request_name
    request = emulator.get(f"{CERTIFICATES_GROUP}/v1", PCRS, request_name, namespace) or {}
    spec = request.get("spec") or {}
    say(f"kubelet on {NODE}: made its {sources[0]['podCertificate']['keyType']} key in memory, created "
        f"PodCertificateRequest {namespace}/{request_name} as the node (stub PKCS#10 of "
        f"{len(base64.b64decode(spec.get('stubPKCS10Request', '')))} bytes, pod/service account/node UIDs)")
    try:
        files = await kubelet.wait_for_volume(namespace, name, c.IDENTITY_VOLUME, within=TIMEOUT)
    except VolumeNotReady as exc:
        say(f"FAILED: the kubelet could not set up the volume: {exc}")
        checks.append(("the signer issued the kubelet's request", False))
        return checks
    request = emulator.get(f"{CERTIFICATES_GROUP}/v1", PCRS, request_name, namespace) or {}
    status = request.get("status") or {}
    (condition, *_) = status.get("conditions") or [{}]
    say(f"signer {signer} answered {condition.get('type')}: notBefore {status.get('notBefore')}, notAfter "
        f"{status.get('notAfter')}, beginRefreshAt {status.get('beginRefreshAt')}")

    try:
        chain = parse_pem_certificates(files.get(c.TLS_CRT, b""))
        key = load_private_key_pem(files.get(c.TLS_KEY, b""))
        anchors = parse_pem_certificates(files.get(c.CA_CRT, b""), BUNDLE_LIMITS)
    except PKIError as exc:
        say(f"FAILED: the files the kubelet mounted do not parse: {exc}")
        checks.append(("the pod's files hold a key, a chain and a trust bundle", False))
        return checks
    leaf = chain[0]
    uris, dns_names = _spiffe_and_dns(leaf)
    bundle_name = cluster_trust_bundle_name(signer)
    same_trust = _ders(files.get(c.CA_CRT, b"")) == _ders(ca_bundle)
    say(f"Files the pod sees in {c.DEFAULT_MOUNT_PATH} (the kubelet's memory, not a Secret):")
    say(f"  {c.TLS_CRT}  {', '.join(uris)}  DNS {', '.join(dns_names)}  not after "
        f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, renewed by the kubelet from {status.get('beginRefreshAt')}")
    say(f"  {c.TLS_KEY}  {_describe_key(key)}, made by the kubelet"
        f"{'' if key_matches_certificate(key, leaf) else f' (NOT the key of {c.TLS_CRT})'}")
    say(f"  {c.CA_CRT}   {len(anchors)} certificate(s) from ClusterTrustBundle {bundle_name} "
        f"({'the same as' if same_trust else 'NOT the same as'} the Secrets' {c.CA_CRT})")
    checks.append(_issued_check(status, chain, key, ca_bundle, request_name))
    expected = f"spiffe://cluster.local/ns/{namespace}/sa/{APP}"
    checks.append((f"{c.TLS_CRT} carries {expected}; {c.CA_CRT} is the Secrets' trust bundle, from ClusterTrustBundle "
                   f"{bundle_name}",
                   uris == [expected] and same_trust and _bundle_labelled(emulator, bundle_name, signer)))

    server = TLSFiles(cert_chain=files[c.TLS_CRT], key=files[c.TLS_KEY], bundle=files[c.CA_CRT])
    result = await asyncio.to_thread(mutual_tls_handshake, server, peer, server_hostname=f"{APP}.{namespace}.svc")
    report(say, f"{peer_name} (Secret) -> {name} (PodCertificate, mutual TLS)", result)
    checks.append((f"mutual TLS between {peer_name} (Secret) and {name} (PodCertificate) succeeds",
                   result.ok and result.server_spiffe_id == expected))

    message = await _identity_counts_the_pod(emulator, namespace)
    holders = _secrets_holding(emulator, files[c.TLS_KEY])
    own = emulator.list("v1", "secrets", namespace, label_selector=f"{c.POD_LABEL}={name}")
    say(f"MTLSIdentity {APP}: {message or 'not Ready'}; Secrets for {name}: {len(own)}; Secrets holding its key: "
        f"{len(holders)}")
    checks.append((f"no Secret holds {name}'s key (the key never left the node)",
                   message is not None and not own and not holders))
    if output_dir is not None:
        folder = output_dir / "nodes" / NODE / namespace / name / c.IDENTITY_VOLUME
        _write_files(folder, files)
        say(f"Wrote the files the kubelet of {NODE} mounted under {folder}/")
    return checks


def _issued_check(status: Mapping[str, Any], chain: list[x509.Certificate], key: PrivateKey, ca_bundle: bytes,
                  request_name: str) -> Check:
    """Issued, for the kubelet's key, chaining to the operator's CA, the status dates the leaf's."""
    conditions = [cond.get("type") for cond in status.get("conditions") or ()]
    leaf = chain[0]
    try:
        verify_leaf(leaf, chain[1:], parse_pem_certificates(ca_bundle, BUNDLE_LIMITS), datetime.now(UTC))
        chains = True
    except PKIError:
        chains = False
    held = (conditions == ["Issued"] and chains and key_matches_certificate(key, leaf)
            and status.get("notAfter") == f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    return (f"the signer issued PodCertificateRequest {request_name} for the kubelet's key, chained to the "
            "operator's CA", held)


def _bundle_labelled(emulator: Any, name: str, signer: str) -> bool:
    bundle = emulator.get(f"{CERTIFICATES_GROUP}/v1", CLUSTER_TRUST_BUNDLES, name) or {}
    labels = (bundle.get("metadata") or {}).get("labels") or {}
    return (bundle.get("spec") or {}).get("signerName") == signer and labels.get(TRUST_BUNDLE_LABEL) == "true"


async def _identity_counts_the_pod(emulator: Any, namespace: str) -> str | None:
    """The identity's Ready message once its pass has counted the pod as the kubelet's (None if never)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        message = _ready_by_pod_certificate(emulator.get(f"{c.GROUP}/{c.VERSION}", c.PLURAL, APP, namespace))
        if message is not None:
            return message
        await asyncio.sleep(0.1)
    return None
