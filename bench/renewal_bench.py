"""Renewal and CA rotation benchmark (issue 4, item 8): every process real.

The API emulator (`mtls-operator emulator`) and the operator (`mtls-operator run`) each run in
their own process; this process is the client. Per N (BENCH_SIZES, default "1000") it creates N
opted-in pods under four identities, waits until every pod holds a certificate, and then prints:

1. Renewal of N certificates. The operator keeps each certificate's schedule in its Secret's
   `mtls.dev/renew-at` annotation; the client moves that annotation to the present on every Secret
   (as if their renewal time had come at once), and the running operator renews them: reason
   `renewal`, a fresh key, under the rate cap. Object writes per renewal come from the emulator's
   request log (Secret writes per renewal; identity status writes and Events apart; the client's
   own N annotation patches subtracted), with the renewal rate. For comparison, the same figures for
   a spec change (`spec-change` re-issues, served as background work in short passes; its
   `mtlsidentities` writes are kopf's `last-handled-configuration` annotation, one per identity).
   Why not a real clock: a certificate may not be renewed sooner than 5 minutes after issuance, and
   the shortest duration is 1h, so a genuine renewal would keep the bench waiting for minutes.
2. A full CA rotation of N pods at the default rate cap (50/s): the client annotates the CA Secret
   `mtls.dev/rotate: "true"` and times, from the CA Secret's own watch events, each phase
   (Distributing, Reissuing, Retiring) until `mtls.dev/rotation-phase` is `Idle` again with a new
   `mtls.dev/ca-fingerprint`; with writes per pod. The operator runs with
   `--ca-propagation-delay 0s`: the default (2m, the kubelet's time to refresh mounted files) would
   add 2 x 2m of plain waiting.

Figures only, no thresholds.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kube_emulator.server import REQUEST_LOG_PATH
from mtls_operator import constants as c
from mtls_operator.rules.rotation import PHASE_ANNOTATION, ROTATE_ANNOTATION, SIGNING_FINGERPRINT_ANNOTATION
from operator_bench import Operator

NS = "bench"
OPERATOR_NS = "mtls-system"
CA_SECRET = c.DEFAULT_CA_SECRET
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1000").split(",")]
IDENTITIES = 4
DEFAULT_RATE = 50.0  # MTLS_MAX_ISSUANCE_PER_SECOND's default: the operator runs without the flag
CLIENT_THREADS = 8
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
IDENTITY_API = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{NS}/{c.PLURAL}"


class Emulator:
    """`mtls-operator emulator` in its own process, reached over plain HTTP (no auth: it is the emulator)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = folder / "kubeconfig"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mtls_operator.cli", "emulator", "--kubeconfig", str(self.kubeconfig)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self.kubeconfig.exists() or not self.kubeconfig.read_text().strip():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.05)
        config = yaml.safe_load(self.kubeconfig.read_text())
        self.url = config["clusters"][0]["cluster"]["server"].rstrip("/")

    def request(self, method: str, path: str, body: Any = None, *, merge_patch: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        content_type = "application/merge-patch+json" if merge_patch else "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def writes(self) -> Counter[str]:
        """Writes so far, per resource (``mtlsidentities/status`` for a subresource)."""
        counted: Counter[str] = Counter()
        for entry in self.request("GET", REQUEST_LOG_PATH)["counts"]:
            if entry["verb"] in WRITE_VERBS:
                resource = entry["resource"] + (f"/{entry['subresource']}" if entry["subresource"] else "")
                counted[resource] += entry["count"]
        return counted

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def watch_events(url: str) -> Iterator[dict[str, Any]]:
    """Events of one watch, reconnecting when the server ends it (a new watch replays ADDED)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3600) as stream:
                for line in stream:
                    yield json.loads(line)
        except OSError:
            return  # the emulator went away: the bench is over


class PodSecrets(threading.Thread):
    """The managed Secrets of the bench namespace as this client sees them: per pod, its Secret's
    name and annotations, when its serial last changed, and how many times it was written."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(daemon=True)
        selector = urllib.parse.quote(f"{c.MANAGED_BY_LABEL}={c.MANAGER_NAME}")
        self.url = f"{emulator.url}/api/v1/namespaces/{NS}/secrets?watch=true&labelSelector={selector}"
        self.names: dict[str, str] = {}
        self.annotations: dict[str, dict[str, str]] = {}
        self.serial_changed: dict[str, float] = {}
        self.modified: Counter[str] = Counter()
        self.versions: dict[str, str] = {}

    def run(self) -> None:
        for event in watch_events(self.url):
            meta = (event.get("object") or {}).get("metadata") or {}
            pod = (meta.get("labels") or {}).get(c.POD_LABEL)
            if not pod or event.get("type") not in ("ADDED", "MODIFIED"):
                continue
            annotations = meta.get("annotations") or {}
            if self.versions.get(pod) != meta.get("resourceVersion"):
                self.versions[pod] = str(meta.get("resourceVersion"))
                self.modified[pod] += event.get("type") == "MODIFIED"
            old = self.annotations.get(pod, {}).get(c.SERIAL_ANNOTATION)
            if old != annotations.get(c.SERIAL_ANNOTATION):
                self.serial_changed[pod] = time.monotonic()
            self.names[pod] = str(meta.get("name"))
            self.annotations[pod] = annotations

    def serials(self) -> dict[str, str]:
        return {pod: notes.get(c.SERIAL_ANNOTATION, "") for pod, notes in list(self.annotations.items())}


class CASecret(threading.Thread):
    """The CA Secret's rotation phase over time, from its own watch events."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(daemon=True)
        field = urllib.parse.quote(f"metadata.name={CA_SECRET}")
        self.url = f"{emulator.url}/api/v1/namespaces/{OPERATOR_NS}/secrets?watch=true&fieldSelector={field}"
        self.annotations: dict[str, str] = {}
        self.phases: list[tuple[float, str]] = []
        self.writes = 0
        self.version: str | None = None

    def run(self) -> None:
        for event in watch_events(self.url):
            meta = (event.get("object") or {}).get("metadata") or {}
            if event.get("type") not in ("ADDED", "MODIFIED"):
                continue
            if event.get("type") == "MODIFIED" and meta.get("resourceVersion") != self.version:
                self.writes += 1
            self.version = meta.get("resourceVersion")
            self.annotations = meta.get("annotations") or {}
            phase = self.annotations.get(PHASE_ANNOTATION, "")
            if not self.phases or self.phases[-1][1] != phase:
                self.phases.append((time.monotonic(), phase))


def identity(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{c.GROUP}/{c.VERSION}", "kind": c.KIND, "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": name}}, "duration": "24h"}}


def pod(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": app, c.INJECT_LABEL: c.INJECT_VALUE}},
            "spec": {"containers": [{"name": "app", "image": "example/app:1"}]}}


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def all_issued(emulator: Emulator, names: list[str], n: int) -> bool:
    statuses = [(emulator.request("GET", f"{IDENTITY_API}/{name}").get("status") or {}) for name in names]
    return sum(int(status.get("issued") or 0) for status in statuses) == n


def reasons(emulator: Emulator, since: int) -> Counter[str]:
    """Certificates issued per reason, from the identities' Events newer than resourceVersion ``since``."""
    counted: Counter[str] = Counter()
    for event in emulator.request("GET", f"/api/v1/namespaces/{NS}/events").get("items", []):
        if int(event["metadata"]["resourceVersion"]) <= since or event.get("reason") != "Issued":
            continue
        # "issued 12 certificate(s) (renewal: 12); ..."
        summary = event["message"].split("(", 2)[2].split(")", 1)[0] if event["message"].count("(") >= 2 else ""
        for part in summary.split(", "):
            reason, _, count = part.partition(": ")
            if count.isdigit():
                counted[reason] += int(count)
    return counted


def resource_version(emulator: Emulator) -> int:
    return int(emulator.request("GET", f"/api/v1/namespaces/{NS}/events")["metadata"]["resourceVersion"])


def describe_writes(writes: Counter[str], n: int, per: str) -> str:
    secrets = writes["secrets"]
    others = ", ".join(f"{resource} {count}" for resource, count in sorted(writes.items())
                       if count and resource not in ("secrets", "events"))
    return (f"{secrets / n:.3f} Secret writes per {per} ({secrets}); apart: {others or 'nothing else'}, "
            f"Events {writes['events']}")


def reissue_all(emulator: Emulator, secrets: PodSecrets, n: int, trigger: Callable[[], Counter[str]], label: str,
                names: list[str]) -> None:
    """Run ``trigger`` (which returns the client's own writes) and measure until all N serials changed."""
    before_serials = secrets.serials()
    before_writes = emulator.writes()
    since = resource_version(emulator)
    started = time.monotonic()
    own_writes = trigger()
    triggered_in = time.monotonic() - started
    wait_until(lambda: sum(1 for pod, serial in secrets.serials().items() if serial != before_serials[pod]) >= n,
               600, f"{label}: {n} new serials")
    wait_until(lambda: all_issued(emulator, names, n), 60, f"{label}: status issued=N")
    time.sleep(1.0)  # the last status writes and Events
    writes = emulator.writes() - before_writes - own_writes
    moments = sorted(secrets.serial_changed[pod] for pod in before_serials)
    elapsed = moments[-1] - started
    steady = (n - 1) / (moments[-1] - moments[0]) if moments[-1] > moments[0] else float("inf")
    counted = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons(emulator, since).items()))
    print(f"N={n}: {label}: {n} in {elapsed:.1f}s after the trigger ({n / elapsed:.1f}/s; first to last "
          f"{steady:.1f}/s; the client's trigger took {triggered_in:.1f}s); issued by reason: {counted}")
    print(f"N={n}: {label}: {describe_writes(writes, n, label.split()[0])}")


def run_size(n: int, folder: Path) -> bool:
    emulator = Emulator(folder / f"n{n}")
    operator: Operator | None = None
    try:
        for namespace in (OPERATOR_NS, NS):
            emulator.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        names = [f"app{index}" for index in range(IDENTITIES)]
        for name in names:
            emulator.request("POST", IDENTITY_API, identity(name))
        secrets = PodSecrets(emulator)
        secrets.start()
        ca = CASecret(emulator)
        ca.start()
        operator = Operator(emulator, "--namespace", OPERATOR_NS, "--webhook-port", "0", "--leader-election", "false",
                            "--ca-propagation-delay", "0s")
        wait_until(lambda: ca.annotations.get(SIGNING_FINGERPRINT_ANNOTATION), 60, "the operator's CA")

        # The fleet: N pods, first issuance at the default cap.
        before = emulator.writes()
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            list(pool.map(lambda i: emulator.request("POST", f"/api/v1/namespaces/{NS}/pods",
                                                     pod(f"{names[i % IDENTITIES]}-{i}", names[i % IDENTITIES])),
                          range(n)))
        wait_until(lambda: len(secrets.serials()) >= n, 600, f"{n} Secrets")
        wait_until(lambda: all_issued(emulator, names, n), 60, "status issued=N")
        elapsed = max(secrets.serial_changed.values()) - started
        first = emulator.writes() - before
        first["pods"] -= n
        print(f"N={n}: first issue: {n} certificates in {elapsed:.1f}s ({n / elapsed:.1f}/s, cap "
              f"{DEFAULT_RATE:g}/s), {IDENTITIES} identities; {describe_writes(first, n, 'certificate')}")

        # 1. Renewal: every Secret's schedule says "now".
        def renewal_time_now() -> Counter[str]:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = {"metadata": {"annotations": {c.RENEW_AT_ANNOTATION: stamp}}}
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                list(pool.map(lambda name: emulator.request("PATCH", f"/api/v1/namespaces/{NS}/secrets/{name}",
                                                            patch, merge_patch=True),
                              list(secrets.names.values())))
            return Counter({"secrets": len(secrets.names)})

        reissue_all(emulator, secrets, n, renewal_time_now, "renewal", names)

        # For comparison: a spec change re-issues everything as background work.
        def change_spec() -> Counter[str]:
            for name in names:
                emulator.request("PATCH", f"{IDENTITY_API}/{name}", {"spec": {"dnsNames": [name]}}, merge_patch=True)
            return Counter({c.PLURAL: len(names)})

        reissue_all(emulator, secrets, n, change_spec, "spec-change re-issue", names)

        # 2. A full CA rotation on demand.
        old_fingerprint = ca.annotations.get(SIGNING_FINGERPRINT_ANNOTATION)
        before, ca_writes_before = emulator.writes(), ca.writes
        modified_before = Counter(secrets.modified)
        phases_before = len(ca.phases)
        started = time.monotonic()
        emulator.request("PATCH", f"/api/v1/namespaces/{OPERATOR_NS}/secrets/{CA_SECRET}",
                         {"metadata": {"annotations": {ROTATE_ANNOTATION: "true"}}}, merge_patch=True)

        def rotated() -> bool:
            notes = ca.annotations
            return notes.get(PHASE_ANNOTATION) == "Idle" and notes.get(SIGNING_FINGERPRINT_ANNOTATION) not in (
                None, old_fingerprint)

        try:
            wait_until(rotated, float(os.environ.get("BENCH_ROTATION_TIMEOUT", "600")), "CA rotation")
        except TimeoutError:
            print(f"N={n}: CA rotation did not complete in {time.monotonic() - started:.0f}s; CA Secret "
                  f"annotations: {json.dumps(ca.annotations, sort_keys=True)}; phases seen: "
                  f"{[(round(t - started, 1), phase) for t, phase in ca.phases[phases_before:]]}")
            print(f"operator log (last lines):\n{operator.tail()}")
            return False
        total = time.monotonic() - started
        time.sleep(1.0)
        writes = emulator.writes() - before
        writes["secrets"] -= 1  # our annotation
        ca_writes = ca.writes - ca_writes_before - 1
        pod_secret_writes = writes["secrets"] - ca_writes
        writes["secrets"] = 0
        moments = ca.phases[phases_before - 1:]
        steps = [f"{phase} {later - t:.1f}s" for (t, phase), (later, _) in itertools.pairwise(moments)
                 if phase != "Idle"]
        noticed = moments[1][0] - started if len(moments) > 1 else float("nan")
        per_pod = [secrets.modified[pod] - modified_before[pod] for pod in secrets.names]
        print(f"N={n}: CA rotation at the default cap ({DEFAULT_RATE:g}/s), --ca-propagation-delay 0s (the "
              f"default 2m would add 2 x 2m): Idle again with a new CA {total:.1f}s after the annotation; "
              f"Distributing began after {noticed:.1f}s, then "
              f"{', '.join(steps)}: {total - noticed:.1f}s from the first phase to Idle")
        print(f"N={n}: CA rotation: {pod_secret_writes / n:.2f} pod Secret writes per pod ({pod_secret_writes}; "
              f"per pod min {min(per_pod)}, median {statistics.median(per_pod):g}, max {max(per_pod)}); "
              f"CA Secret {ca_writes}; apart: "
              + ", ".join(f"{resource} {count}" for resource, count in sorted(writes.items())
                          if count and resource != "events")
              + f", Events {writes['events']}")
        return True
    finally:
        if operator is not None:
            operator.stop()
        emulator.stop()


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="mtls-renewal-bench-"))
    try:
        complete = all([run_size(n, folder) for n in SIZES])
    except Exception:
        print(f"bench failed; the operator's log is kept in {folder}", file=sys.stderr)
        raise
    if not complete:
        print(f"the operator's log is kept in {folder}", file=sys.stderr)
        return 1
    shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
