"""Real handshakes with issued Secrets: Python ssl, and the openssl command line (a TLS stack nobody here wrote)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kube_emulator import Emulator
from mtls_operator import constants as c
from mtls_operator.demo.handshake import TLSFiles, mutual_tls_handshake
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import LeafRequest, create_self_signed_ca, issue_leaf
from mtls_operator.rules.plan import secret_data
from tests.integration.conftest import OperatorHandle, eventually, identity, managed_secrets, pod, ready

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command line is not installed")

KEYS = [
    pytest.param({"algorithm": "ECDSA", "size": 256}, id="ecdsa-256"),
    pytest.param({"algorithm": "ECDSA", "size": 384}, id="ecdsa-384"),
    pytest.param({"algorithm": "Ed25519"}, id="ed25519"),
    pytest.param({"algorithm": "RSA", "size": 2048}, id="rsa-2048"),
]


Issued = tuple[TLSFiles, TLSFiles, list[dict[str, Any]]]


async def _issue_pair(emulator: Emulator, private_key: dict[str, Any]) -> Issued:
    emulator.create(identity("api", dnsNames=["api", "api.shop.svc"], privateKey=private_key))
    emulator.create(identity("web", privateKey=private_key, usages=["client"]))
    emulator.create(pod("api-0", "api", sa="api"))
    emulator.create(pod("web-0", "web", sa="web"))
    await eventually(lambda: all((ready(emulator, n) or {}).get("status") == "True" for n in ("api", "web")),
                     what="both identities Ready", within=20)
    secrets = managed_secrets(emulator)
    return _files(secrets["api-api-0"]), _files(secrets["web-web-0"]), list(secrets.values())


def _files(secret: dict[str, Any]) -> TLSFiles:
    return TLSFiles(cert_chain=secret_data(secret, c.TLS_CRT) or b"", key=secret_data(secret, c.TLS_KEY) or b"",
                    bundle=secret_data(secret, c.CA_CRT) or b"")


def _foreign(bundle: bytes) -> TLSFiles:
    now = datetime.now(UTC)
    rogue = create_self_signed_ca(now, common_name="rogue")
    leaf = issue_leaf(rogue, LeafRequest("spiffe://cluster.local/ns/shop/sa/web", (), frozenset({Usage.CLIENT}),
                                         KeySpec(), timedelta(hours=1)), now)
    return TLSFiles(cert_chain=leaf.chain_pem, key=leaf.key_pem, bundle=bundle)


@pytest.mark.parametrize("private_key", KEYS)
async def test_python_ssl_mutual_tls(emulator: Emulator, operator: OperatorHandle, private_key: dict[str, Any]) -> None:
    api, web, _ = await _issue_pair(emulator, private_key)
    result = mutual_tls_handshake(api, web, server_hostname="api.shop.svc")
    assert result.ok, result.error
    assert result.client_spiffe_id == "spiffe://cluster.local/ns/shop/sa/web"
    assert result.server_spiffe_id == "spiffe://cluster.local/ns/shop/sa/api"


async def test_python_ssl_refuses_foreign_ca_and_wrong_name(emulator: Emulator, operator: OperatorHandle) -> None:
    api, web, _ = await _issue_pair(emulator, {"algorithm": "ECDSA"})
    foreign = mutual_tls_handshake(api, _foreign(web.bundle), server_hostname="api.shop.svc")
    assert not foreign.ok
    assert "certificate verify failed" in (foreign.error or "")
    wrong_name = mutual_tls_handshake(api, web, server_hostname="db.shop.svc")
    assert not wrong_name.ok
    assert "Hostname mismatch" in (wrong_name.error or "")
    # A client-only certificate cannot serve: its extended key usage says so.
    client_only = mutual_tls_handshake(web, api, server_hostname="web")
    assert not client_only.ok
    assert "unsuitable certificate purpose" in (client_only.error or "")


def _write(folder: Path, name: str, files: TLSFiles) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}-ca.crt")
    for path, data in zip(paths, (files.cert_chain, files.key, files.bundle), strict=True):
        path.write_bytes(data)
    return paths


@needs_openssl
@pytest.mark.parametrize("private_key", KEYS)
async def test_openssl_verify_every_issued_chain(
    emulator: Emulator, operator: OperatorHandle, private_key: dict[str, Any], tmp_path: Path
) -> None:
    _, _, secrets = await _issue_pair(emulator, private_key)
    assert secrets
    for secret in secrets:
        cert, _, bundle = _write(tmp_path, secret["metadata"]["name"], _files(secret))
        purpose = "sslserver" if secret["metadata"]["labels"][c.IDENTITY_LABEL] == "api" else "sslclient"
        command = [str(OPENSSL), "verify", "-purpose", purpose, "-CAfile", str(bundle), str(cert)]
        run = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.strip().endswith(": OK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _openssl_handshake(tmp_path: Path, server: TLSFiles, client: TLSFiles) -> tuple[int, str, str]:
    s_cert, s_key, s_ca = _write(tmp_path / "server", "server", server)
    c_cert, c_key, c_ca = _write(tmp_path / "client", "client", client)
    port = _free_port()
    srv = subprocess.Popen(
        [str(OPENSSL), "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(s_cert), "-key", str(s_key),
         "-CAfile", str(s_ca), "-Verify", "1", "-verify_return_error", "-naccept", "1", "-www"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # s_server prints ACCEPT once it listens; a probe connection would use up -naccept 1.
        assert srv.stdout is not None
        banner: list[str] = []
        while not any("ACCEPT" in line for line in banner):
            line = srv.stdout.readline()
            assert line, f"openssl s_server did not start: {banner}"
            banner.append(line)
        cli = subprocess.run(
            [str(OPENSSL), "s_client", "-connect", f"127.0.0.1:{port}", "-cert", str(c_cert), "-key", str(c_key),
             "-CAfile", str(c_ca), "-verify_return_error", "-verify_hostname", "api.shop.svc",
             "-servername", "api.shop.svc", "-ign_eof"],
            input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True, timeout=20, check=False,
        )
    finally:
        srv.kill()
        server_out = srv.communicate(timeout=10)[0]
    return cli.returncode, cli.stdout + cli.stderr, server_out


@needs_openssl
async def test_openssl_s_server_and_s_client_mutual_tls(
    emulator: Emulator, operator: OperatorHandle, tmp_path: Path
) -> None:
    api, web, _ = await _issue_pair(emulator, {"algorithm": "ECDSA"})
    code, client_out, server_out = _openssl_handshake(tmp_path, api, web)
    assert code == 0, client_out + server_out
    assert "Verify return code: 0 (ok)" in client_out
    assert "HTTP/1.0 200 ok" in client_out
    # s_server's status page prints the client certificate it verified: the web pod's SPIFFE ID.
    assert "URI:spiffe://cluster.local/ns/shop/sa/web" in client_out


@needs_openssl
async def test_openssl_s_server_refuses_foreign_client(
    emulator: Emulator, operator: OperatorHandle, tmp_path: Path
) -> None:
    api, web, _ = await _issue_pair(emulator, {"algorithm": "ECDSA"})
    _, client_out, server_out = _openssl_handshake(tmp_path, api, _foreign(web.bundle))
    assert "HTTP/1.0 200 ok" not in client_out
    assert "verify error" in server_out.lower() or "unknown ca" in (client_out + server_out).lower(), server_out
