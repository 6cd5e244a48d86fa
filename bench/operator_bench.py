"""Operator benchmark (issue 3, item 7): N opted-in pods under one identity, every process real.

The API emulator and the operator (`mtls-operator run`) each run in their own process; this
process is the client: it creates the identity, starts the operator, then creates N pods as fast
as it can (a Deployment scaling up) and watches the Secrets appear. It prints, per N:
- throughput: N / (last Secret seen - first pod created), and p50/p99 pod -> Secret latency;
- object writes per issued certificate from the emulator's own request log, per resource, with
  Events apart (the client's own writes subtracted);
- the operator's peak RSS (VmHWM) and CPU time;
- the raw rate of the PKI code alone (issue_leaf, same key type) and the operator's rate as a
  fraction of it;
and then two checks: a restart re-issues nothing (0 writes), and the issuance rate limit holds.
Figures only, no thresholds: the issue's targets are >= 200 certificates/s at N = 3000 (stretch
300), one object write per first issuance, operator RSS < 200 MB at N = 3000.

BENCH_SIZES (default "1000,3000") chooses N.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from httpclient import Connection
from kube_emulator.server import REQUEST_LOG_PATH
from mtls_operator import constants as c
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import LeafRequest, create_self_signed_ca, issue_leaf

NS = "bench"
# The project's CRDs (the single source; the emulator is generic and installs what it is given).
CRDS = Path(__file__).resolve().parents[1] / "crds"
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1000,3000").split(",")]
CLIENT_THREADS = 8


class Emulator:
    """The emulator in its own process, reached over plain HTTP (no auth: it is the emulator)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = folder / "kubeconfig"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kube_emulator", "--crds", str(CRDS), "--kubeconfig", str(self.kubeconfig)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self.kubeconfig.exists() or not self.kubeconfig.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.05)
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.url = config["clusters"][0]["cluster"]["server"].rstrip("/")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def writes(self) -> Counter[str]:
        log = self.request("GET", REQUEST_LOG_PATH)
        # Summed: one resource is written with several verbs (creates, then patches).
        writes: Counter[str] = Counter()
        for entry in log["counts"]:
            if entry["verb"] in ("create", "update", "patch", "delete", "deletecollection"):
                sub = entry["subresource"]
                writes[f"{entry['resource']}{'/' + sub if sub else ''}"] += entry["count"]
        return writes

    def count(self, verb: str, resource: str) -> int:
        log = self.request("GET", REQUEST_LOG_PATH)
        return sum(e["count"] for e in log["counts"] if e["verb"] == verb and e["resource"] == resource)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# A watch of the Secrets' metadata only (PartialObjectMetadata), as the operator's own: the labels name
# the pod, and neither the emulator nor this client handles the certificates and keys.
METADATA_ONLY = b"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class SecretWatch(threading.Thread):
    """When each pod's Secret first appears (the time its ADDED event reached this client)."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(daemon=True)
        self.emulator = emulator
        self.seen: dict[str, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        parts = urlsplit(self.emulator.url)
        connection = Connection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=600)
        selector = f"{c.MANAGED_BY_LABEL}%3D{c.MANAGER_NAME}"
        lines = connection.stream_lines(f"/api/v1/namespaces/{NS}/secrets?watch=true&labelSelector={selector}",
                                        accept=METADATA_ONLY)
        self.ready.set()
        seen, now, loads = self.seen, time.monotonic, json.loads
        for line in lines:
            event = loads(line)
            if event.get("type") != "ADDED":
                continue
            pod = ((event.get("object") or {}).get("metadata", {}).get("labels") or {}).get(c.POD_LABEL)
            if pod and pod not in seen:
                seen[pod] = now()


class Operator:
    """``mtls-operator run`` as a process of its own against the emulator (no metrics or health port);
    ``flags`` are the rest of its command line. Every bench runs the operator this way."""

    def __init__(self, emulator: Any, *flags: str) -> None:
        self.log_path = emulator.kubeconfig.with_name("operator.log")
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mtls_operator.cli", "run", "--kubeconfig", str(emulator.kubeconfig),
             "--metrics-port", "0", "--health-port", "0", *flags],
            stdout=self.log, stderr=self.log,
        )

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def status(self, field: str) -> str:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return "?"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def operator_flags(rate: float) -> list[str]:
    return ["--namespace", NS, "--webhook-port", "0", "--max-issuance-per-second", str(rate)]


def identity(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": c.KIND, "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": name}}}}


def pod(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}


def identity_status(emulator: Emulator, name: str) -> dict[str, Any]:
    path = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NS}/{c.PLURAL}/{name}"
    return emulator.request("GET", path).get("status") or {}


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def pki_rate(seconds: float = 2.0) -> float:
    """Certificates per second of the PKI code alone: key generation, signing, chain verification."""
    now = datetime.now(UTC)
    ca = create_self_signed_ca(now)
    request = LeafRequest("spiffe://cluster.local/ns/bench/sa/default", (), frozenset(Usage), KeySpec(),
                          timedelta(hours=24))
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        issue_leaf(ca, request, now)
        count += 1
    return count / (time.perf_counter() - started)


def run_size(n: int, folder: Path, raw_pki: float) -> None:
    emulator = Emulator(folder / f"n{n}")
    try:
        emulator.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        emulator.request("POST", f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NS}/{c.PLURAL}", identity("app"))
        watch = SecretWatch(emulator)
        watch.start()
        watch.ready.wait(10)
        operator = Operator(emulator, *operator_flags(10_000))
        try:
            # The operator is up once its CA exists (it creates one on first start).
            wait_until(lambda: identity_status(emulator, "app").get("conditions"), 30, "operator start")
            before = emulator.writes()
            created: dict[str, float] = {}

            def create(index: int) -> None:
                name = f"app-{index}"
                created[name] = time.monotonic()
                emulator.request("POST", f"/api/v1/namespaces/{NS}/pods", pod(name, "app"))

            cpu_before = operator.cpu_seconds()
            started = time.monotonic()
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                list(pool.map(create, range(n)))
            created_in = time.monotonic() - started
            wait_until(lambda: len(watch.seen) >= n, 600, f"{n} Secrets")
            wait_until(lambda: identity_status(emulator, "app").get("issued") == n, 60, "status issued=N")
            time.sleep(0.5)  # let the last status and Event land in the log
            elapsed = max(watch.seen.values()) - started
            cpu = operator.cpu_seconds() - cpu_before
            writes = emulator.writes() - before
            writes["pods"] -= n  # ours, not the operator's
            latencies = sorted(watch.seen[name] - created[name] for name in created)
            p50 = statistics.median(latencies)
            p99 = statistics.quantiles(latencies, n=100)[98]
            rate = n / elapsed
            object_writes = sum(count for resource, count in writes.items() if resource != "events")
            print(f"N={n}: {rate:.0f} certificates/s ({n} Secrets {elapsed:.1f}s after the first pod; "
                  f"the client took {created_in:.1f}s to create the pods)")
            print(f"N={n}: pod -> Secret latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
            detail = ", ".join(f"{resource} {count}" for resource, count in sorted(writes.items())
                               if count and resource != "events")
            print(f"N={n}: {object_writes / n:.3f} object writes per certificate ({detail}); "
                  f"events {writes['events']} apart")
            print(f"N={n}: operator peak RSS {operator.status('VmHWM')}, CPU {cpu:.1f}s "
                  f"({cpu * 1000 / n:.2f} ms per certificate)")
            print(f"N={n}: operator rate is {rate / raw_pki:.0%} of the raw PKI rate")

            # A restart re-derives everything from the Secrets: no writes at all.
            operator.stop()
            before, lists_before = emulator.writes(), emulator.count("list", "secrets")
            operator = Operator(emulator, *operator_flags(10_000))
            # Until the restarted operator has made a full pass (it lists the Secrets), then a bit more.
            wait_until(lambda: emulator.count("list", "secrets") > lists_before, 60, "a pass after restart")
            time.sleep(2)
            restart = emulator.writes() - before
            lease = restart.pop("leases", 0)
            print(f"N={n}: restart with {n} valid certificates: {sum(restart.values())} writes "
                  f"({dict(restart) or 'none'}; the Lease taken over apart: {lease})")
        finally:
            operator.stop()
    finally:
        emulator.stop()


def run_throttled(folder: Path, rate: float = 100.0, n: int = 500) -> None:
    emulator = Emulator(folder / "throttled")
    try:
        emulator.request("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(pool.map(lambda i: emulator.request("POST", f"/api/v1/namespaces/{NS}/pods", pod(f"t-{i}", "t")),
                          range(n)))
        watch = SecretWatch(emulator)
        watch.start()
        watch.ready.wait(10)
        operator = Operator(emulator, *operator_flags(rate))
        try:
            emulator.request("POST", f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NS}/{c.PLURAL}", identity("t"))
            wait_until(lambda: len(watch.seen) >= n, 120, "throttled issuance")
            times = sorted(watch.seen.values())
            burst = int(rate)
            steady = (n - burst) / (times[-1] - times[burst - 1])
            print(f"rate limit MTLS_MAX_ISSUANCE_PER_SECOND={rate:g}: a burst of {burst}, then "
                  f"{steady:.1f} certificates/s ({n} in all)")
        finally:
            operator.stop()
    finally:
        emulator.stop()


def main() -> int:
    raw_pki = pki_rate()
    print(f"raw PKI (ECDSA P-256 key, sign, verify): {raw_pki:.0f} certificates/s on one core")
    folder = Path(tempfile.mkdtemp(prefix="mtls-bench-"))
    try:
        for n in SIZES:
            run_size(n, folder, raw_pki)
        run_throttled(folder)
    except Exception:
        print(f"bench failed; the emulator's and operator's logs are kept in {folder}", file=sys.stderr)
        raise
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
