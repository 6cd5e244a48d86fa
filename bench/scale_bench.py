"""Scale benchmark (issue 13, items 2-4): one identity at 10,000 pods, then 30,000; every piece a process.

The emulator and ``mtls-operator run`` each run in their own process; this process is the client.
Printed, each with its target (figures, never pass/fail):
- peak RSS of the operator that issued the first 10,000 certificates (target <= 150 MB);
- a restart over 10,000 valid certificates: object writes (target 0) and the time from the process's
  start until its first full look at the identity is done (the identity's metric reports every pod
  issued; target <= 3 s), with what it is made of: the end of each start-up phase as the operator
  publishes it (``mtls_startup_seconds``: imports, runtime, lists, store, first_look);
- a full CA rotation of the 10,000 pods with MTLS_MAX_ISSUANCE_PER_SECOND=1000 and
  MTLS_CA_PROPAGATION_DELAY=0s: each phase's duration and the total (target <= 30 s plus twice the
  propagation delay, here 0);
- memory growth per pod from 10,000 to 30,000 pods, from a fresh operator's settled RSS (VmRSS) at
  both sizes (target <= 5 KB/pod).
The machine is shared with other engineers' builds and tests: the figures move with their load.

SCALE_N (default 10000) and SCALE_MORE (default 20000) choose the sizes; SCALE_MORE=0 leaves out the growth;
SCALE_RESTARTS (default 1) restarts that many times (each printed: the machine is shared).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mtls_operator import constants as c
from mtls_operator.constants import DEFAULT_CA_SECRET
from mtls_operator.k8s.api import MERGE_PATCH
from mtls_operator.observability.startup import PHASES
from mtls_operator.rules.rotation import PHASE_ANNOTATION, ROTATE_ANNOTATION
from operator_bench import (
    NS,
    Emulator,
    Operator,
    SecretWatch,
    identity,
    identity_status,
    operator_flags,
    pod,
    wait_until,
)
from versus_bench import CLIENT_THREADS, Client

N = int(os.environ.get("SCALE_N", "10000"))
MORE = int(os.environ.get("SCALE_MORE", "20000"))
RESTARTS = int(os.environ.get("SCALE_RESTARTS", "1"))
ROTATION_RATE = 1000


def rss_kb(operator: Operator, field: str) -> int:
    return int(operator.status(field).split()[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def issued_gauge(port: int) -> float | None:
    """``mtls_identity_pods{state="issued"}`` of the identity, as the operator publishes it after a pass."""
    pattern = re.compile(r'^mtls_identity_pods\{[^}]*state="issued"[^}]*\} (\S+)$', re.MULTILINE)
    match = pattern.search(scrape(port))
    return float(match.group(1)) if match else None


def startup_phases(port: int) -> str:
    """When each start-up phase ended, seconds since the operator's process started (its own figures)."""
    found = dict(re.findall(r'^mtls_startup_seconds\{phase="([^"]+)"\} (\S+)$', scrape(port), re.MULTILINE))
    return ", ".join(f"{phase} {float(found[phase]):.2f}s" for phase in PHASES if phase in found) or "not published"


def restart(emulator: Emulator) -> Operator:
    """Restart over N valid certificates, with the rotation's settings already (they change nothing here);
    prints the writes, the first full look and its phases. Returns the running operator."""
    port = free_port()
    before = emulator.writes()
    started = time.monotonic()
    operator = Operator(emulator, *operator_flags(ROTATION_RATE), "--ca-propagation-delay", "0s",
                        "--metrics-port", str(port))
    wait_until(lambda: issued_gauge(port) == N, 120, "the first full look after the restart")
    first_look = time.monotonic() - started
    time.sleep(2)
    written = emulator.writes() - before
    lease = written.pop("leases", 0)
    writes = sum(written.values())
    print(f"scale: restart over {N} valid certificates: {writes} object writes (target 0: "
          f"{'met' if writes == 0 else 'NOT met'}; {dict(written) or 'none'}; the Lease apart: {lease})")
    print(f"scale: first full look at the identity {first_look:.1f}s after the process started "
          f"(target <= 3 s: {'met' if first_look <= 3 else 'NOT met'}; load average {os.getloadavg()[0]:.1f})")
    print(f"scale:   start-up phases, ended at (the operator's own figures, from its process's start): "
          f"{startup_phases(port)}", flush=True)
    return operator


def create_pods(client: Client, names: range) -> None:
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(lambda i: client.post(f"/api/v1/namespaces/{NS}/pods", pod(f"app-{i}", "app")), names))


def settled_rss(operator: Operator) -> int:
    time.sleep(3)
    return rss_kb(operator, "VmRSS")


def run(folder: Path) -> None:
    emulator = Emulator(folder)
    operator: Operator | None = None
    client = Client(emulator.url)
    try:
        emulator.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        emulator.request("POST", f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NS}/{c.PLURAL}", identity("app"))
        watch = SecretWatch(emulator)
        watch.start()
        watch.ready.wait(10)
        operator = Operator(emulator, *operator_flags(10_000))
        wait_until(lambda: identity_status(emulator, "app").get("conditions"), 60, "operator start")

        started = time.monotonic()
        create_pods(client, range(N))
        wait_until(lambda: len(watch.seen) >= N, 900, f"{N} Secrets")
        elapsed = max(watch.seen.values()) - started
        wait_until(lambda: identity_status(emulator, "app").get("issued") == N, 120, "status issued=N")
        peak = rss_kb(operator, "VmHWM") / 1024
        print(f"scale: {N} pods issued in {elapsed:.1f}s ({N / elapsed:.0f} certificates/s)")
        print(f"scale: operator peak RSS at {N} pods {peak:.0f} MB (target <= 150 MB: "
              f"{'met' if peak <= 150 else 'NOT met'})", flush=True)
        operator.stop()

        operator = restart(emulator)
        for _ in range(RESTARTS - 1):
            operator.stop()
            operator = restart(emulator)

        # A full CA rotation of the N pods at a rate cap of 1000/s, no propagation delay.
        path = f"/api/v1/namespaces/{NS}/secrets/{DEFAULT_CA_SECRET}"
        rotate = json.dumps({"metadata": {"annotations": {ROTATE_ANNOTATION: "true"}}}).encode()
        ask = urllib.request.Request(emulator.url + path, method="PATCH", headers={"Content-Type": MERGE_PATCH},
                                     data=rotate)
        urllib.request.urlopen(ask, timeout=30).close()
        started = time.monotonic()
        phases: list[tuple[str, float]] = []
        seen_idle_again = False
        while time.monotonic() - started < 600 and not seen_idle_again:
            current = (emulator.request("GET", path)["metadata"].get("annotations") or {}).get(PHASE_ANNOTATION, "?")
            if not phases or phases[-1][0] != current:
                phases.append((current, time.monotonic() - started))
            seen_idle_again = current == "Idle" and len(phases) > 1
            time.sleep(0.1)
        total = phases[-1][1]
        steps = ", ".join(f"{name} {end - start:.1f}s" for (name, start), (_, end) in itertools.pairwise(phases))
        print(f"scale: CA rotation of {N} pods at MTLS_MAX_ISSUANCE_PER_SECOND={ROTATION_RATE}, "
              f"MTLS_CA_PROPAGATION_DELAY=0s: {total:.1f}s ({steps}) (target <= 30 s plus twice the "
              f"propagation delay: {'met' if total <= 30 else 'NOT met'})", flush=True)
        operator.stop()
        if not MORE:
            return

        # Memory growth per pod, from a fresh operator's settled RSS at N pods to N + MORE.
        port = free_port()
        operator = Operator(emulator, *operator_flags(10_000), "--metrics-port", str(port))
        wait_until(lambda: issued_gauge(port) == N, 120, "the fresh operator's first look")
        at_n = settled_rss(operator)
        create_pods(client, range(N, N + MORE))
        wait_until(lambda: len(watch.seen) >= N + MORE, 1800, f"{N + MORE} Secrets")
        wait_until(lambda: issued_gauge(port) == N + MORE, 300, "the identity at N + MORE pods")
        at_more = settled_rss(operator)
        growth = (at_more - at_n) / MORE
        print(f"scale: operator RSS {at_n / 1024:.0f} MB at {N} pods, {at_more / 1024:.0f} MB at {N + MORE}: "
              f"{growth:.1f} KB per pod (target <= 5 KB/pod: {'met' if growth <= 5 else 'NOT met'}); "
              f"peak RSS {rss_kb(operator, 'VmHWM') / 1024:.0f} MB")
    finally:
        if operator is not None:
            operator.stop()
        emulator.stop()


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="mtls-scale-bench-"))
    print("scale: a 2-core machine shared with other engineers' builds and tests (figures move with their load)")
    try:
        run(folder)
    except Exception:
        print(f"bench failed; the emulator's and operator's logs are kept in {folder}", file=sys.stderr)
        raise
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
