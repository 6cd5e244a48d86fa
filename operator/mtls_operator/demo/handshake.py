"""A real mutual-TLS handshake between two sets of Secret files, with Python's ``ssl``.

Used by the demo to prove that issued certificates work, and by the tests. The server demands a
client certificate chained to its trust bundle and reports the client's SPIFFE ID; the client
checks the server's chain and its DNS name, as a real service would.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509


@dataclass(frozen=True)
class TLSFiles:
    """The three files of a pod Secret, as PEM bytes."""

    cert_chain: bytes
    key: bytes
    bundle: bytes


@dataclass(frozen=True)
class HandshakeResult:
    ok: bool
    client_spiffe_id: str | None = None  # as the server saw it
    server_spiffe_id: str | None = None  # as the client saw it
    tls_version: str | None = None
    error: str | None = None


def _spiffe_id(der: bytes | None) -> str | None:
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _context(purpose: ssl.Purpose, files: TLSFiles, folder: Path, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(files.cert_chain)
    key_fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(key_fd, "wb") as handle:
        handle.write(files.key)
    context.load_cert_chain(cert_path, key_path)
    context.load_verify_locations(cadata=files.bundle.decode("ascii"))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def mutual_tls_handshake(
    server: TLSFiles, client: TLSFiles, *, server_hostname: str, timeout: float = 10.0
) -> HandshakeResult:
    """Serve with ``server``'s files on 127.0.0.1, connect with ``client``'s, exchange one message."""
    with tempfile.TemporaryDirectory(prefix="mtls-handshake-") as tmp:
        folder = Path(tmp)
        server_context = _context(ssl.Purpose.CLIENT_AUTH, server, folder, "server")
        client_context = _context(ssl.Purpose.SERVER_AUTH, client, folder, "client")
        client_context.check_hostname = True
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(timeout)
        port = listener.getsockname()[1]
        outcome: dict[str, object] = {}

        def serve() -> None:
            try:
                connection, _ = listener.accept()
                connection.settimeout(timeout)
                with server_context.wrap_socket(connection, server_side=True) as tls:
                    outcome["client_id"] = _spiffe_id(tls.getpeercert(binary_form=True))
                    tls.sendall(b"hello " + str(outcome["client_id"]).encode() + b"\n")
            except (OSError, ssl.SSLError) as exc:
                outcome["server_error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
                client_context.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                server_id = _spiffe_id(tls.getpeercert(binary_form=True))
                version = tls.version()
                # With TLS 1.3 the server's verdict on our certificate arrives with the first read.
                greeting = tls.recv(1024)
                if not greeting:
                    raise ssl.SSLError("the server closed the connection")
        except (OSError, ssl.SSLError) as exc:
            thread.join(timeout)
            listener.close()
            sides = [f"client: {type(exc).__name__}: {exc}"]
            if "server_error" in outcome:
                sides.append(f"server: {outcome['server_error']}")
            return HandshakeResult(ok=False, error="; ".join(sides))
        thread.join(timeout)
        listener.close()
        if "server_error" in outcome:
            return HandshakeResult(ok=False, error=f"server: {outcome['server_error']}")
        client_id = outcome.get("client_id")
        return HandshakeResult(
            ok=True,
            client_spiffe_id=client_id if isinstance(client_id, str) else None,
            server_spiffe_id=server_id,
            tls_version=version,
        )
