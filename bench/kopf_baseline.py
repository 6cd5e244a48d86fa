"""The baseline of issue 13: a minimal plain kopf operator, written the way kopf's docs suggest.

One async ``on.event`` handler for opted-in pods (the watch carries the server-side label selector
``mtls.dev/inject=true``), a P-256 key and a leaf from an in-memory CA with ``cryptography``, and one
Secret POST over a shared ``aiohttp`` session (409 means the Secret is already there). Nothing else:
no identities, policy, status, Events, renewal, rotation, leader election or chain checks. It is
what a user would write in an afternoon, and what ``bench/versus_bench.py`` measures the project
against, on the same emulator, in alternating rounds.

``python bench/kopf_baseline.py --kubeconfig FILE`` runs it until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

SELECTOR = "mtls.dev/inject=true"
TRUST_DOMAIN = "cluster.local"


class CA:
    """A self-signed P-256 CA held in memory only."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kopf baseline CA")])
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, spiffe_id: str) -> tuple[bytes, bytes]:
        """A fresh P-256 key and a 24-hour SPIFFE leaf for it: (certificate PEM, key PEM)."""
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=24))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.watching.label_selectors["pods"] = SELECTOR
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    configuration: k8s_client.Configuration = memo["configuration"]
    context: ssl.SSLContext | bool = False
    if configuration.host.startswith("https"):
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization")
    if token:
        headers["Authorization"] = token
    memo["session"] = aiohttp.ClientSession(configuration.host, headers=headers,
                                            connector=aiohttp.TCPConnector(ssl=context, limit=32))
    memo["ca"] = CA()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo["session"].close()


@kopf.on.event("", "v1", "pods")
async def pod_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    if event["type"] not in (None, "ADDED"):  # None: seen in the initial listing
        return
    metadata = body.get("metadata", {})
    namespace, name = metadata["namespace"], metadata["name"]
    account = body.get("spec", {}).get("serviceAccountName") or "default"
    spiffe_id = f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{account}"
    cert_pem, key_pem = memo["ca"].issue(spiffe_id)
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {
            "name": f"{name}-tls", "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "mtls-operator", "mtls.dev/pod": name},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": metadata["uid"]}],
        },
        "data": {"tls.crt": b64(cert_pem), "tls.key": b64(key_pem), "ca.crt": b64(memo["ca"].pem)},
    }
    session: aiohttp.ClientSession = memo["session"]
    async with session.post(f"/api/v1/namespaces/{namespace}/secrets", json=secret) as response:
        if response.status not in (201, 409):  # 409: there already (a restart, a repeated event)
            raise kopf.TemporaryError(f"creating Secret {name}-tls: HTTP {response.status}", delay=1)
        await response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)

    @kopf.on.login()
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=configuration.host, ca_path=configuration.ssl_ca_cert,
                                   insecure=not configuration.verify_ssl)

    asyncio.run(kopf.operator(clusterwide=True, standalone=True, memo=kopf.Memo(configuration=configuration)))


if __name__ == "__main__":
    main()
