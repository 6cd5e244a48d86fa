"""Operator throughput: pods -> certificates, with the API emulator in its own process.

Prints figures, asserts nothing about speed:
- unthrottled: how fast one operator process issues certificates for a fresh identity's pods,
  and how many API requests it spends per certificate;
- throttled: that MTLS_MAX_ISSUANCE_PER_SECOND holds (renewals never stampede the API);
- restart: how many writes a restarted operator makes when every certificate is still valid (0).

Sizes: BENCH_PODS (default 600) and BENCH_RATE (default 100) in the environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.handlers.runtime import Runtime
from mtls_operator.k8s import KubeAPI, core_path, group_path
from mtls_operator.k8s.config import load_configuration
from mtls_operator.main import OperatorThread

NS = "bench"
PODS = int(os.environ.get("BENCH_PODS", "600"))
RATE = float(os.environ.get("BENCH_RATE", "100"))


def start_emulator(folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = folder / "kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "mtls_operator.testing", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    return process, kubeconfig


def create_pods(api: KubeAPI, app: str, count: int) -> None:
    def one(index: int) -> None:
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-{index}", "namespace": NS,
                         "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
        }
        asyncio.run(api.request("POST", core_path("pods", NS), body=body))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def identity(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": c.KIND, "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": name}}}}


def wait_issued(api: KubeAPI, name: str, count: int, timeout: float = 600) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        body = asyncio.run(api.request("GET", group_path(c.GROUP, c.VERSION, c.PLURAL, NS, name)))
        if (body.get("status") or {}).get("issued") == count:
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"{name}: not all {count} certificates issued in {timeout}s")


def writes(counts: Counter[tuple[str, str]]) -> int:
    return sum(n for (method, _), n in counts.items() if method != "GET")


def run_case(
    api: KubeAPI, configuration: Any, name: str, pods: int, rate: float
) -> tuple[float, Counter[tuple[str, str]]]:
    create_pods(api, name, pods)
    operator = OperatorThread(Settings(namespace=NS, max_issuance_per_second=rate), configuration)
    operator.start()
    try:
        runtime: Runtime = operator.memo["runtime"]
        asyncio.run(api.request("POST", group_path(c.GROUP, c.VERSION, c.PLURAL, NS), body=identity(name)))
        elapsed = wait_issued(api, name, pods)
        counts = Counter(runtime.api.counts)
    finally:
        operator.stop()
    return elapsed, counts


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kopf").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="mtls-bench-") as tmp:
        emulator, kubeconfig = start_emulator(Path(tmp))
        try:
            configuration = load_configuration(str(kubeconfig))
            api = KubeAPI.from_configuration(configuration)
            asyncio.run(api.request("POST", core_path("namespaces"), body={"metadata": {"name": NS}}))

            elapsed, counts = run_case(api, configuration, "fast", PODS, 10_000.0)
            secret_writes = sum(n for (m, r), n in counts.items() if r == "secrets" and m != "GET")
            print(f"operator: {PODS} pods issued in {elapsed:.1f}s = {PODS / elapsed:.0f} certificates/s "
                  f"(rate limit off)")
            print(f"operator: {sum(counts.values()) / PODS:.2f} API requests per certificate "
                  f"({writes(counts) / PODS:.2f} writes, {secret_writes / PODS:.2f} Secret writes)")

            throttled = max(1, int(RATE * 3))
            elapsed, _ = run_case(api, configuration, "throttled", throttled, RATE)
            print(f"operator: MTLS_MAX_ISSUANCE_PER_SECOND={RATE:g}: {throttled} certificates in {elapsed:.1f}s "
                  f"= {throttled / elapsed:.0f}/s")

            operator = OperatorThread(Settings(namespace=NS), configuration)
            operator.start()
            try:
                runtime: Runtime = operator.memo["runtime"]
                deadline = time.monotonic() + 60
                while len(runtime.reconciler.served) < 2 and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)
                restart_writes = writes(runtime.api.counts)
            finally:
                operator.stop()
            print(f"operator: restart with {PODS + throttled} valid certificates: {restart_writes} writes")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"operator: bench process max RSS {rss:.0f} MB (operator, its threads and the bench client)")
            api.close()
        finally:
            emulator.terminate()
            emulator.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
