"""The certificates the interop suite hands to every TLS stack, written as files.

Issued by the operator: the real operator (kopf) runs against the embedded API emulator, as
``mtls-operator demo`` does, with a CA Secret put in place as a user would supply one; one
identity per key type the CRD offers (two pods each: a server and a client), one with
``usages: [server]``, one with ``usages: [client]``, and an impostor whose certificate carries a
server's DNS name under another SPIFFE ID. The pods' Secrets are written as files.

Built with the project's pure PKI code (``mtls_operator.pki``: ``create_self_signed_ca`` and the
operator's own ``issue_leaf``), because the operator never issues them on purpose: a leaf from a
foreign CA, an expired leaf from the operator's CA (issued with a clock two days back), and the
new CA of a CA rotation and its leaves (with the old CA's subject and with a subject of its own).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kube_emulator import EmulatorServer
from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.demo.run import project_crds
from mtls_operator.main import OperatorThread
from mtls_operator.models import KeyAlgorithm, KeySpec, Usage
from mtls_operator.pki import CertificateAuthority, LeafRequest, certs_to_pem, create_self_signed_ca, issue_leaf
from mtls_operator.pki.keystore import Pkcs12Profile, keystore_p12, truststore_p12
from mtls_operator.rules.plan import b64text, secret_data

NAMESPACE = "interop"
OPERATOR_NAMESPACE = "mtls-system"
TRUST_DOMAIN = "cluster.local"
API = f"{c.GROUP}/{c.VERSION}"
CA_NAME = "mtls-operator CA"
P12_PASSWORD = b"interop-keystore-password"
P12_SECRET = "p12-pass"
# The keystore profile each key type's identity asks for: both profiles reach the Java peer.
P12_PROFILES = {"ECDSA-384": Pkcs12Profile.LEGACY_DES, "RSA-3072": Pkcs12Profile.LEGACY_DES}
TIMEOUT = 60.0

# The key types of DESIGN.md, in the order the matrix shows them.
KEY_TYPES: dict[str, KeySpec] = {
    "ECDSA-256": KeySpec(KeyAlgorithm.ECDSA, 256),
    "ECDSA-384": KeySpec(KeyAlgorithm.ECDSA, 384),
    "Ed25519": KeySpec(KeyAlgorithm.ED25519, None),
    "RSA-2048": KeySpec(KeyAlgorithm.RSA, 2048),
    "RSA-3072": KeySpec(KeyAlgorithm.RSA, 3072),
    "RSA-4096": KeySpec(KeyAlgorithm.RSA, 4096),
}


def workload(key_type: str) -> str:
    """``ECDSA-256`` -> ``ecdsa-256``: the identity, app label and service account of a key type."""
    return key_type.lower()


def spiffe_id(service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service_account}"


def dns_name(app: str) -> str:
    return f"{app}.{NAMESPACE}.svc"


@dataclass(frozen=True)
class Endpoint:
    """One side's files: what a stack presents (``cert``, ``key``) and whom it trusts (``ca``)."""

    name: str
    cert: Path
    key: Path
    ca: Path
    spiffe_id: str
    origin: str  # "operator" or "pki"
    keystore: Path | None = None
    truststore: Path | None = None


@dataclass(frozen=True)
class Material:
    folder: Path
    endpoints: Mapping[str, Endpoint]
    bundles: Mapping[str, Path]  # "A", "A+B", "B" for each rotation variant
    operator_seconds: float
    # PKCS#12 files for the Java peer, per (endpoint, bundle file), made on first use.
    stores: dict[tuple[str, Path], dict[str, str]] = field(default_factory=dict)

    def java_stores(self, endpoint: str, bundle: Path) -> dict[str, str]:
        """``keystore``, ``truststore`` and ``password`` for the Java peer. An operator-issued endpoint
        with its own bundle uses the ``keystore.p12`` and ``truststore.p12`` the operator wrote into its
        Secret; otherwise they are built from the PEM files with the operator's keystore builder."""
        found = self.stores.get((endpoint, bundle))
        if found is not None:
            return found
        point = self.endpoints[endpoint]
        folder = self.folder / "p12" / f"{endpoint}--{bundle.parent.name}-{bundle.stem}"
        keystore = point.keystore or _write(
            folder / c.KEYSTORE_P12,
            keystore_p12(point.cert.read_bytes(), point.key.read_bytes(), P12_PASSWORD, Pkcs12Profile.MODERN_2023),
            private=True)
        truststore = point.truststore if point.truststore and bundle == point.ca else _write(
            folder / c.TRUSTSTORE_P12, truststore_p12(bundle.read_bytes(), P12_PASSWORD, Pkcs12Profile.MODERN_2023))
        made = {"keystore": str(keystore), "truststore": str(truststore), "password": P12_PASSWORD.decode()}
        self.stores[(endpoint, bundle)] = made
        return made


# Identities beyond one per key type: (name, usages, extra DNS names).
_SPECIAL = {
    "server-only": ([Usage.SERVER.value], []),
    "client-only": ([Usage.CLIENT.value], []),
    # Same namespace, so the policy lets it name ecdsa-256's DNS name: only the SPIFFE ID tells them apart.
    "impostor": (None, [dns_name(workload("ECDSA-256"))]),
}


def _identity(name: str, *, key: KeySpec, usages: list[str] | None, dns: list[str],
              keystore: Pkcs12Profile | None = None) -> dict[str, Any]:
    private_key: dict[str, Any] = {"algorithm": key.algorithm.value}
    if key.size is not None:
        private_key["size"] = key.size
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "serviceAccountName": name,
        "dnsNames": [dns_name(name), *dns],
        "privateKey": private_key,
        "duration": "24h",
    }
    if usages is not None:
        spec["usages"] = usages
    if keystore is not None:
        spec["keystores"] = {"pkcs12": {"create": True, "profile": keystore.value,
                                        "passwordSecretRef": {"name": P12_SECRET, "key": "password"}}}
    return {"apiVersion": API, "kind": c.KIND, "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _pod(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
        "spec": {"serviceAccountName": app, "containers": [{"name": "app", "image": f"example/{app}:1"}]},
        "status": {"phase": "Running"},
    }


def _ca_secret(ca: CertificateAuthority) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": c.SECRET_TYPE_TLS,
        "metadata": {"name": c.DEFAULT_CA_SECRET, "namespace": OPERATOR_NAMESPACE},
        "data": {key: base64.b64encode(value).decode() for key, value in ca.secret_data().items()},
    }


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    return path


def _ready(body: Mapping[str, Any] | None) -> bool:
    conditions = ((body or {}).get("status") or {}).get("conditions") or []
    return any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in conditions)


async def _issue_with_operator(ca: CertificateAuthority, identities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the operator on the emulator until every identity is Ready; return its pod Secrets."""
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
            emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        emulator.create(_ca_secret(ca))
        emulator.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": P12_SECRET, "namespace": NAMESPACE},
                         "data": {"password": b64text(P12_PASSWORD)}})
        for body in identities:
            emulator.create(body)
            name = body["metadata"]["name"]
            for index in range(2):
                emulator.create(_pod(f"{name}-{index}", name))
        operator = OperatorThread(
            Settings(namespace=OPERATOR_NAMESPACE, metrics_port=0, webhook_port=0, health_port=0,
                     leader_election=False),
            server.client_configuration(),
        )
        await asyncio.to_thread(operator.start)
        try:
            names = [body["metadata"]["name"] for body in identities]
            deadline = time.monotonic() + TIMEOUT
            while not all(_ready(emulator.get(API, c.PLURAL, name, NAMESPACE)) for name in names):
                if time.monotonic() > deadline:
                    waiting = {name: (emulator.get(API, c.PLURAL, name, NAMESPACE) or {}).get("status")
                               for name in names if not _ready(emulator.get(API, c.PLURAL, name, NAMESPACE))}
                    raise RuntimeError(f"identities not Ready within {TIMEOUT:.0f}s: {waiting}")
                await asyncio.sleep(0.1)
            selector = f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}"
            return list(emulator.list("v1", "secrets", NAMESPACE, label_selector=selector))
        finally:
            await asyncio.to_thread(operator.stop)


def _secret_endpoint(folder: Path, secret: Mapping[str, Any]) -> Endpoint:
    pod = secret["metadata"]["labels"][c.POD_LABEL]
    where = folder / "operator" / pod
    files = {key: _write(where / key, data, private=key in (c.TLS_KEY, c.KEYSTORE_P12))
             for key in (c.TLS_CRT, c.TLS_KEY, c.CA_CRT, c.KEYSTORE_P12, c.TRUSTSTORE_P12)
             if (data := secret_data(secret, key)) is not None}
    return Endpoint(
        name=pod,
        cert=files[c.TLS_CRT],
        key=files[c.TLS_KEY],
        ca=files[c.CA_CRT],
        spiffe_id=secret["metadata"]["annotations"][c.SPIFFE_ID_ANNOTATION],
        origin="operator",
        keystore=files.get(c.KEYSTORE_P12),
        truststore=files.get(c.TRUSTSTORE_P12),
    )


def _pki_endpoint(folder: Path, name: str, ca: CertificateAuthority, *, app: str, bundle: Path,
                  now: datetime, duration: timedelta = timedelta(hours=24)) -> Endpoint:
    leaf = issue_leaf(
        ca,
        LeafRequest(spiffe_id=spiffe_id(app), dns_names=(dns_name(app),), usages=frozenset(Usage),
                    key=KeySpec(), duration=duration),
        now,
    )
    where = folder / "pki" / name
    return Endpoint(
        name=name,
        cert=_write(where / c.TLS_CRT, leaf.chain_pem),
        key=_write(where / c.TLS_KEY, leaf.key_pem, private=True),
        ca=bundle,
        spiffe_id=spiffe_id(app),
        origin="pki",
    )


def build(folder: Path, now: datetime | None = None) -> Material:
    """Issue and write everything; ``endpoints`` is keyed by pod or case name."""
    now = now or datetime.now(UTC)
    # Valid from three days back, so that it can sign a leaf that expired two days ago.
    old_ca = create_self_signed_ca(now - timedelta(days=3), validity=timedelta(days=365), common_name=CA_NAME)
    identities = [_identity(workload(key_type), key=spec, usages=None, dns=[],
                            keystore=P12_PROFILES.get(key_type, Pkcs12Profile.MODERN_2023))
                  for key_type, spec in KEY_TYPES.items()]
    identities += [_identity(name, key=KeySpec(), usages=usages, dns=dns) for name, (usages, dns) in _SPECIAL.items()]
    started = time.monotonic()
    secrets = asyncio.run(_issue_with_operator(old_ca, identities))
    operator_seconds = time.monotonic() - started
    endpoints = {endpoint.name: endpoint for endpoint in (_secret_endpoint(folder, s) for s in secrets)}
    expected = {f"{body['metadata']['name']}-{index}" for body in identities for index in range(2)}
    if set(endpoints) != expected:
        raise RuntimeError(f"the operator issued {sorted(endpoints)}, expected {sorted(expected)}")
    lacking = [name for name in endpoints if name.startswith(tuple(map(workload, KEY_TYPES)))
               and endpoints[name].keystore is None]
    if lacking:
        raise RuntimeError(f"the operator wrote no keystore.p12 for {lacking}")

    p256 = workload("ECDSA-256")
    old_bundle = endpoints[f"{p256}-0"].ca
    foreign_ca = create_self_signed_ca(now, common_name="foreign CA")
    endpoints["foreign-ca"] = _pki_endpoint(folder, "foreign-ca", foreign_ca, app=p256, bundle=old_bundle, now=now)
    endpoints["expired"] = _pki_endpoint(folder, "expired", old_ca, app=p256, bundle=old_bundle,
                                         now=now - timedelta(days=2), duration=timedelta(hours=1))

    # CA rotation: the operator's CA is "A"; "B" is the next one, once with A's subject (what a
    # rotation produced before each CA had its own subject) and once with a subject of its own.
    bundles: dict[str, Path] = {}
    for variant, common_name in (("same-subject", CA_NAME), ("new-subject", f"{CA_NAME} 2")):
        new_ca = create_self_signed_ca(now, common_name=common_name)
        both = _write(folder / "bundles" / variant / "A+B.crt", certs_to_pem((*old_ca.trust, *new_ca.trust)))
        only_new = _write(folder / "bundles" / variant / "B.crt", certs_to_pem(new_ca.trust))
        bundles[f"{variant}:A"] = old_bundle
        bundles[f"{variant}:A+B"] = both
        bundles[f"{variant}:B"] = only_new
        for index in range(2):
            name = f"{variant}-b-{index}"
            endpoints[name] = _pki_endpoint(folder, name, new_ca, app=p256, bundle=both, now=now)
    return Material(folder=folder, endpoints=endpoints, bundles=bundles, operator_seconds=operator_seconds)
