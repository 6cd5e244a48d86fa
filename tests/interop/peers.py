"""The Python ``ssl`` and OpenSSL command-line peers of the interop suite, speaking the same
protocol as the Go, Rust and Java peers (see interop/go/main.go):

    python -m tests.interop.peers python|openssl server|client CASES.json

A server listens once per case on 127.0.0.1, prints ``{"ports": {id: port}}``, then one result
line per connection until stdin closes; a client connects once per case, sends ``ping``, reads the
server's answer and prints one result line per case. Neither can authorise a peer by SPIFFE ID
(the stack has no such check; an application would inspect the certificate itself), so the cases'
``authorize`` field is not used here.

The OpenSSL peer drives the real ``openssl s_server``/``s_client`` (the stack in Envoy and nginx):
one ``s_server -rev -naccept 1`` per case, one ``s_client`` per connection.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

TIMEOUT = 10.0
_OUT = threading.Lock()


def emit(value: Mapping[str, Any]) -> None:
    with _OUT:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()


def result(case_id: str, error: str | None = None, stage: str | None = None) -> dict[str, Any]:
    if error is None:
        return {"id": case_id, "ok": True}
    return {"id": case_id, "ok": False, "error": error, "stage": stage}


# Python ssl ------------------------------------------------------------------------------------


def _context(case: Mapping[str, Any], purpose: ssl.Purpose) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=case["ca"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(case["cert"], case["key"])
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _python_serve_one(context: ssl.SSLContext, case_id: str, sock: socket.socket) -> None:
    sock.settimeout(TIMEOUT)
    try:
        with context.wrap_socket(sock, server_side=True) as tls:
            tls.makefile("rb").readline()
            tls.sendall(b"ok\n")
    except (OSError, ssl.SSLError) as exc:
        emit(result(case_id, str(exc), "handshake"))
        return
    emit(result(case_id))


def _python_accept(listener: socket.socket, case: Mapping[str, Any]) -> None:
    try:
        context: ssl.SSLContext | None = _context(case, ssl.Purpose.CLIENT_AUTH)
        setup_error = None
    except (OSError, ssl.SSLError) as exc:
        context, setup_error = None, str(exc)
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        if context is None:
            sock.close()
            emit(result(case["id"], setup_error, "setup"))
            continue
        threading.Thread(target=_python_serve_one, args=(context, case["id"], sock), daemon=True).start()


def python_client(case: Mapping[str, Any]) -> dict[str, Any]:
    try:
        context = _context(case, ssl.Purpose.SERVER_AUTH)
        context.check_hostname = True
    except (OSError, ssl.SSLError) as exc:
        return result(case["id"], str(exc), "setup")
    try:
        with socket.create_connection(("127.0.0.1", case["port"]), timeout=TIMEOUT) as raw, \
                context.wrap_socket(raw, server_hostname=case["server_name"]) as tls:
            tls.sendall(b"ping\n")
            # In TLS 1.3 only the server's answer proves that it accepted the client's certificate.
            line = tls.makefile("rb").readline()
    except (OSError, ssl.SSLError) as exc:
        return result(case["id"], str(exc), "handshake")
    return result(case["id"]) if line.strip() else result(case["id"], "connection closed without an answer", "read")


def python_server(cases: list[dict[str, Any]]) -> None:
    listeners = {case["id"]: socket.create_server(("127.0.0.1", 0)) for case in cases}
    emit({"ports": {case_id: listener.getsockname()[1] for case_id, listener in listeners.items()}})
    for case in cases:
        threading.Thread(target=_python_accept, args=(listeners[case["id"]], case), daemon=True).start()
    sys.stdin.read()


# OpenSSL command line --------------------------------------------------------------------------

_ACCEPT = re.compile(rb"^ACCEPT .*:(\d+)$", re.MULTILINE)


def _openssl_error(output: str) -> str:
    """The lines of s_server/s_client output that say why a handshake failed."""
    lines = [line.strip() for line in output.splitlines()
             if "error" in line.lower() or "alert" in line.lower() or "failure" in line.lower()]
    return "; ".join(lines) or output.strip()[-300:] or "no output"


def _openssl_wait(process: subprocess.Popen[bytes], case_id: str) -> None:
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    process.wait()
    if "CONNECTION ESTABLISHED" in output:
        emit(result(case_id))
    else:
        emit(result(case_id, _openssl_error(output), "handshake"))


def openssl_server(cases: list[dict[str, Any]]) -> None:
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    for case in cases:
        process = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-rev",
             "-cert", case["cert"], "-key", case["key"], "-CAfile", case["ca"],
             "-Verify", "4", "-verify_return_error"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        head = b""
        while (match := _ACCEPT.search(head)) is None:
            line = process.stdout.readline()
            if not line:
                break
            head += line
        if match is None:
            # s_server refused its own files: nothing listens, so the client's connect fails.
            emit(result(case["id"], _openssl_error(head.decode(errors="replace")), "setup"))
            ports[case["id"]] = 1
            continue
        ports[case["id"]] = int(match[1])
        processes.append(process)
        threading.Thread(target=_openssl_wait, args=(process, case["id"]), daemon=True).start()
    emit({"ports": ports})
    sys.stdin.read()
    for process in processes:
        if process.poll() is None:
            process.terminate()


def openssl_client(case: Mapping[str, Any]) -> dict[str, Any]:
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{case['port']}",
               "-cert", case["cert"], "-key", case["key"], "-CAfile", case["ca"],
               "-verify_return_error", "-verify_hostname", case["server_name"], "-servername", case["server_name"],
               "-quiet"]
    # stdin stays open until the answer arrives: s_client ends the connection at end of input.
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None
    answer: list[bytes] = []
    reader = threading.Thread(target=lambda: answer.append(stdout.readline()), daemon=True)
    reader.start()
    try:
        stdin.write(b"ping\n")
        stdin.flush()
    except OSError:
        pass
    reader.join(TIMEOUT)
    process.kill()
    _, errors = process.communicate()
    # s_server -rev answers the line reversed; any answer means the server accepted us.
    if answer and answer[0].strip():
        return result(case["id"])
    if reader.is_alive():
        return result(case["id"], "timed out", "handshake")
    return result(case["id"], _openssl_error(errors.decode(errors="replace")), "handshake")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("python", "openssl") or argv[1] not in ("server", "client"):
        print("usage: python -m tests.interop.peers python|openssl server|client CASES.json", file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as handle:
        cases = json.load(handle)
    stack, mode = argv[0], argv[1]
    if mode == "server":
        (python_server if stack == "python" else openssl_server)(cases)
    else:
        client = python_client if stack == "python" else openssl_client
        for case in cases:
            emit(client(case))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
