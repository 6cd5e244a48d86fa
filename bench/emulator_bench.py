"""The emulator's own throughput: writes/s and watch events/s, with the emulator in its own process.

Starts ``python -m kube_emulator`` on a free port, then drives it with concurrent aiohttp
clients creating and merge-patching Secrets while watchers stream the events. Prints figures
only (no pass/fail): ``emulator: N writes/s`` and ``emulator: M watch events/s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

NAMESPACE = "bench"
# The project's CRDs (the single source; the emulator is generic and installs what it is given).
CRDS = Path(__file__).resolve().parents[1] / "crds"


def start_emulator(kubeconfig: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "kube_emulator", "--crds", str(CRDS), "--port", "0",
             "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if match:
            return process, match.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"the emulator did not start:\n{log.read_text()}")


async def watcher(session: aiohttp.ClientSession, url: str, expected: int, counts: list[int], index: int,
                  started: asyncio.Event, done: asyncio.Event) -> None:
    params = {"watch": "true", "resourceVersion": "0", "timeoutSeconds": "120"}
    async with session.get(f"{url}/api/v1/namespaces/{NAMESPACE}/secrets", params=params) as resp:
        started.set()
        async for line in resp.content:
            if line.strip():
                counts[index] += 1
                if counts[index] >= expected:
                    break
    done.set()


async def writer(session: aiohttp.ClientSession, url: str, names: list[str]) -> None:
    base = f"{url}/api/v1/namespaces/{NAMESPACE}/secrets"
    for name in names:
        body = {"metadata": {"name": name, "labels": {"bench": "yes"}}, "stringData": {"tls.crt": "x" * 600}}
        async with session.post(base, json=body) as resp:
            assert resp.status == 201, await resp.text()
            await resp.read()
        patch = json.dumps({"metadata": {"annotations": {"mtls.dev/serial": name}}})
        async with session.patch(f"{base}/{name}", data=patch,
                                 headers={"Content-Type": "application/merge-patch+json"}) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) the emulator process has used; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(url: str, objects: int, concurrency: int, watchers: int,
              pid: int | None = None) -> tuple[float, float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency + watchers + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}) as resp:
            assert resp.status == 201, await resp.text()
        expected = objects * 2  # ADDED + MODIFIED per secret
        counts = [0] * watchers
        dones = [asyncio.Event() for _ in range(watchers)]
        starts = [asyncio.Event() for _ in range(watchers)]
        watch_tasks = [asyncio.create_task(watcher(session, url, expected, counts, i, starts[i], dones[i]))
                       for i in range(watchers)]
        await asyncio.gather(*(s.wait() for s in starts))
        names = [f"s-{i:06d}" for i in range(objects)]
        chunks = [names[i::concurrency] for i in range(concurrency)]
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(writer(session, url, chunk) for chunk in chunks))
        t_writes = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
        await asyncio.wait_for(asyncio.gather(*(d.wait() for d in dones)), 60)
        t_events = time.perf_counter() - t0
        await asyncio.gather(*watch_tasks)
        per_core = objects * 2 / cpu if cpu > 0 else 0.0
        return objects * 2 / t_writes, sum(counts) / t_events, per_core


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=int(os.environ.get("EMULATOR_BENCH_OBJECTS", "3000")))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--watchers", type=int, default=2)
    parser.add_argument("--url", help="drive an already running emulator instead of starting one")
    args = parser.parse_args()
    if args.url:
        writes, events, _ = asyncio.run(run(args.url, args.objects, args.concurrency, args.watchers))
        print(f"emulator: {writes:,.0f} writes/s")
        print(f"emulator: {events:,.0f} watch events/s")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "emulator.log"
        process, url = start_emulator(Path(tmp) / "kubeconfig", log)
        try:
            writes, events, per_core = asyncio.run(
                run(url, args.objects, args.concurrency, args.watchers, process.pid))
        except BaseException:
            print(log.read_text(), file=sys.stderr)
            raise
        finally:
            process.terminate()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
    print(f"emulator: {writes:,.0f} writes/s ({args.objects * 2} writes by {args.concurrency} concurrent clients, "
          f"wall clock; the clients share the machine)")
    if per_core:
        print(f"emulator: {per_core:,.0f} writes/s per core of emulator CPU time (its capacity on one core)")
    print(f"emulator: {events:,.0f} watch events/s ({args.watchers} watchers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
