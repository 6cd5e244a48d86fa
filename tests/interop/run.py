"""``make interop``: every pair of TLS stacks performs mutual handshakes with certificates the
operator issued, in both directions, for every key type; refusals; a CA rotation; the matrix.

    python -m tests.interop.run [--stacks go-spiffe,go,rust,java,openssl,python] [--markdown FILE]

Each stack's peer is compiled once (the Makefile builds them) and runs many handshakes per
process: for each (server stack, client stack) pair, one server process listens once per
scenario and one client process connects once per scenario. Exit status 0 only if every cell is
what the matrix expects (tests/interop/matrix.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from mtls_operator.pki.keystore import Pkcs12Profile
from tests.interop import material as m
from tests.interop.matrix import (
    CHECK_CHAIN,
    CHECK_EXPIRY,
    CHECK_ID,
    CHECK_USAGE,
    CLIENT,
    SERVER,
    Cell,
    Scenario,
    Side,
    Stack,
    cell,
    render,
)

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".tools" / "interop"
PYTHON = sys.executable
PAIR_TIMEOUT = 300.0

STACKS: dict[str, Stack] = {
    "go-spiffe": Stack("go-spiffe", authorizes_ids=True, checks_usage=False),
    "go": Stack("go"),
    "rust": Stack("rust"),
    "java": Stack("java"),
    "openssl": Stack("openssl"),
    "python": Stack("python"),
}

COMMANDS: dict[str, list[str]] = {
    "go-spiffe": [str(BUILD / "interop-go"), "{mode}", "spiffe"],
    "go": [str(BUILD / "interop-go"), "{mode}", "tls"],
    "rust": [str(ROOT / "interop" / "rust" / "target" / "release" / "interop-rust"), "{mode}"],
    "java": ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar",
             str(ROOT / "interop" / "java" / "target" / "interop-java.jar"), "{mode}"],
    "openssl": [PYTHON, "-m", "tests.interop.peers", "openssl", "{mode}"],
    "python": [PYTHON, "-m", "tests.interop.peers", "python", "{mode}"],
}

P256 = m.workload("ECDSA-256")


def scenarios() -> list[Scenario]:
    """Key types, refusals and the CA rotation, in the order the matrix prints them."""
    result: list[Scenario] = []
    for key_type in m.KEY_TYPES:
        app = m.workload(key_type)
        me = m.spiffe_id(app)
        result.append(Scenario(
            id=f"key-{app}", group="Key types (operator-issued, both sides the same type)", column=key_type,
            server=Side(f"{app}-0", me), client=Side(f"{app}-1", me), server_name=m.dns_name(app),
            key_type=key_type,
            note=f"Java loads the operator's keystore.p12 and truststore.p12, profile "
                 f"{m.P12_PROFILES.get(key_type, Pkcs12Profile.MODERN_2023)}",
        ))
    p256, impostor = m.spiffe_id(P256), m.spiffe_id("impostor")
    refusals = "Refusals"
    result += [
        Scenario("foreign-client", refusals, "foreign CA (client)", Side(f"{P256}-0", p256),
                 Side("foreign-ca", p256), m.dns_name(P256), SERVER, CHECK_CHAIN,
                 note="client leaf for the right SPIFFE ID and DNS name, from a CA nobody trusts (PKI code)"),
        Scenario("foreign-server", refusals, "foreign CA (server)", Side("foreign-ca", p256),
                 Side(f"{P256}-1", p256), m.dns_name(P256), CLIENT, CHECK_CHAIN,
                 note="the same, presented by the server"),
        Scenario("expired-client", refusals, "expired (client)", Side(f"{P256}-0", p256),
                 Side("expired", p256), m.dns_name(P256), SERVER, CHECK_EXPIRY,
                 note="leaf from the operator's CA that expired 47 hours ago (PKI code, clock set back)"),
        Scenario("expired-server", refusals, "expired (server)", Side("expired", p256),
                 Side(f"{P256}-1", p256), m.dns_name(P256), CLIENT, CHECK_EXPIRY,
                 note="the same, presented by the server"),
        Scenario("no-client-usage", refusals, "no clientAuth as client", Side(f"{P256}-0", m.spiffe_id("server-only")),
                 Side("server-only-1", p256), m.dns_name(P256), SERVER, CHECK_USAGE,
                 note="operator-issued, identity with usages: [server]"),
        Scenario("no-server-usage", refusals, "no serverAuth as server", Side("client-only-0", p256),
                 Side(f"{P256}-1", m.spiffe_id("client-only")), m.dns_name("client-only"), CLIENT, CHECK_USAGE,
                 note="operator-issued, identity with usages: [client]"),
        Scenario("wrong-id-client", refusals, "wrong SPIFFE ID (client)", Side(f"{P256}-0", p256),
                 Side("impostor-1", p256), m.dns_name(P256), SERVER, CHECK_ID,
                 note=f"operator-issued for {impostor}; the server demands {p256}"),
        Scenario("wrong-id-server", refusals, "wrong SPIFFE ID (server)", Side("impostor-0", p256),
                 Side(f"{P256}-1", p256), m.dns_name(P256), CLIENT, CHECK_ID,
                 note=f"operator-issued for {impostor} with {P256}'s DNS name; the client demands {p256}"),
    ]
    result += rotation_scenarios()
    return result


# The states a pod passes through in a CA rotation from A to B: leaf's CA : bundle.
_STATES = {
    "A:A": ("a", "A"),  # before: leaf from A, bundle [A]
    "A:AB": ("a", "A+B"),  # distributing: the new bundle reached this pod
    "B:AB": ("b", "A+B"),  # re-issuing: this pod's leaf is from B
    "B:B": ("b", "B"),  # retiring: A left the bundle
}
# (server state, client state, who refuses): every pair of states that coexist during a rotation,
# in both directions, then the pairs the phases exist to prevent.
_ROTATION_PAIRS: tuple[tuple[str, str, str | None], ...] = (
    ("A:A", "A:AB", None), ("A:AB", "A:A", None),
    ("A:AB", "B:AB", None), ("B:AB", "A:AB", None),
    ("B:AB", "B:B", None), ("B:B", "B:AB", None),
    ("A:A", "B:AB", SERVER), ("B:AB", "A:A", CLIENT),
    ("B:B", "A:AB", SERVER), ("A:AB", "B:B", CLIENT),
)


def rotation_scenarios() -> list[Scenario]:
    p256 = m.spiffe_id(P256)
    result = []
    for variant, title in (("same-subject", "CA rotation, new CA with the old CA's subject"),
                           ("new-subject", "CA rotation, new CA with its own subject")):
        def side(state: str, index: int, variant: str = variant) -> Side:
            ca, bundle = _STATES[state]
            endpoint = f"{P256}-{index}" if ca == "a" else f"{variant}-b-{index}"
            return Side(endpoint, p256, bundle=f"{variant}:{bundle}")

        for server_state, client_state, refused_by in _ROTATION_PAIRS:
            result.append(Scenario(
                id=f"{variant}-{server_state}-{client_state}".replace(":", "").lower(), group=title,
                column=f"{server_state}→{client_state}", server=side(server_state, 0), client=side(client_state, 1),
                server_name=m.dns_name(P256), refused_by=refused_by, check=CHECK_CHAIN if refused_by else None,
                note="never coexist in a rotation (the phases exist to prevent it)" if refused_by else "",
            ))
    return result


def _case(scenario: Scenario, side: Side, material: m.Material, java: bool, **extra: Any) -> dict[str, Any]:
    endpoint = material.endpoints[side.endpoint]
    ca = material.bundles[side.bundle] if side.bundle else endpoint.ca
    case = {"id": scenario.id, "cert": str(endpoint.cert), "key": str(endpoint.key), "ca": str(ca),
            "authorize": side.authorize, **extra}
    if java:
        case.update(material.java_stores(side.endpoint, ca))
    return case


def _command(stack: str, mode: str, cases: Path) -> list[str]:
    return [part.replace("{mode}", mode) for part in COMMANDS[stack]] + [str(cases)]


def _reader(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_pair(server: str, client: str, chosen: Sequence[Scenario], material: m.Material,
             workdir: Path) -> list[Cell]:
    """One server process and one client process of the two stacks, every scenario once."""
    server_file = workdir / f"{server}--{client}.server.json"
    server_file.write_text(json.dumps([_case(s, s.server, material, server == "java") for s in chosen]))
    process = subprocess.Popen(_command(server, "server", server_file), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    assert process.stdin is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True).start()
    server_results: dict[str, dict[str, Any]] = {}
    client_results: dict[str, dict[str, Any]] = {}
    try:
        first = lines.get(timeout=60)
        if first is None:
            raise RuntimeError(f"{server} server exited: {process.stderr.read() if process.stderr else ''}")
        ports = json.loads(first)["ports"]
        client_file = workdir / f"{server}--{client}.client.json"
        client_file.write_text(json.dumps([
            _case(s, s.client, material, client == "java", port=ports[s.id], server_name=s.server_name)
            for s in chosen]))
        done = subprocess.run(_command(client, "client", client_file), capture_output=True, text=True,
                              timeout=PAIR_TIMEOUT, check=False, cwd=ROOT)
        for line in done.stdout.splitlines():
            reported = json.loads(line)
            client_results[reported["id"]] = reported
        if done.returncode != 0 and not client_results:
            raise RuntimeError(f"{client} client failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        # Servers report a connection after answering it: wait for every scenario's line.
        deadline = time.monotonic() + 15
        while len(server_results) < len(chosen) and time.monotonic() < deadline:
            try:
                next_line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if next_line is None:
                break
            reported = json.loads(next_line)
            server_results.setdefault(reported["id"], reported)
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return [cell(s, STACKS[server], STACKS[client], server_results.get(s.id), client_results.get(s.id))
            for s in chosen]


def run(stacks: Sequence[str], out: Path | None = None) -> tuple[str, list[Cell], dict[str, float]]:
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="mtls-interop-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        material = m.build(workdir / "material")
        timings["material"] = time.monotonic() - started
        timings["operator"] = material.operator_seconds
        chosen = scenarios()
        cells: list[Cell] = []
        started = time.monotonic()
        for server in stacks:
            for client in stacks:
                pair_started = time.monotonic()
                cells += run_pair(server, client, chosen, material, workdir)
                timings[f"{server} → {client}"] = time.monotonic() - pair_started
        timings["handshakes"] = time.monotonic() - started
        timings["count"] = len(cells)
    text = render(chosen, stacks, cells)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps([
            {"scenario": c.scenario.id, "server": c.server, "client": c.client, "expected": c.expected.outcome,
             "why": c.expected.why, "got": c.judged.outcome, "refused_by": c.judged.refused_by,
             "detail": c.judged.detail, "matches": c.matches} for c in cells], indent=1))
    return text, cells, timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated, from: " + ", ".join(STACKS))
    parser.add_argument("--markdown", type=Path, default=BUILD / "matrix.md",
                        help="where to write the matrix (and the raw results beside it as .json)")
    args = parser.parse_args(argv)
    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    unknown = [name for name in stacks if name not in STACKS]
    if unknown:
        parser.error(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(STACKS)}")
    logging.basicConfig(level=logging.WARNING, format="  [%(levelname)s %(name)s] %(message)s")
    logging.getLogger("kopf").setLevel(logging.ERROR)
    text, cells, timings = run(stacks, args.markdown)
    print(text)
    failures = sum(not c.matches for c in cells)
    print(f"{len(cells)} handshakes between {len(stacks)} stacks in {timings['handshakes']:.1f}s "
          f"(certificates: {timings['material']:.1f}s, of which the operator on the emulator "
          f"{timings['operator']:.1f}s); {failures} unexpected; matrix in {args.markdown}")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
