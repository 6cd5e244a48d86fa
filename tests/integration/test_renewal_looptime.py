"""Renewal on fast-forwarded time: the real reconciler and queue, the emulated API, days in a second.

kopf itself stays out of this test (it must not share a loop, and its watch timers would race the
fake clock); what schedules renewals is the queue and the reconciler, and those run here for real,
with the wall clock derived from the loop's (looptime) clock. The emulator serves on the test's own
loop: the operator's HTTP client runs on it too, and looptime moves the clock only when the loop has
nothing to do, so a request in flight to a server on another thread would see its timeout fire early.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from kube_emulator import Emulator, EmulatorServer
from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.controller.ca_store import CAStore
from mtls_operator.controller.reconciler import IdentityKey, Reconciler
from mtls_operator.controller.workqueue import IssuePriority, RateLimiter, WorkQueue
from mtls_operator.demo.run import project_crds
from mtls_operator.k8s import Cluster, KubeAPI
from mtls_operator.rules.reissue import RENEWAL_HORIZON
from mtls_operator.rules.renewal import JITTER_FRACTION

from .conftest import API, NS, OPERATOR_NS, identity, managed_secrets, pod

BASE = datetime(2026, 11, 27, tzinfo=UTC)
HOUR = 3600.0


# How often the tests below look at every Secret: each minute of loop time.
SAMPLE = 60.0


def wall_clock() -> datetime:
    """The operator's wall clock in these tests: derived from the loop's (fast-forwarded) clock."""
    return BASE + timedelta(seconds=asyncio.get_running_loop().time())


class RecordingLimiter(RateLimiter):
    """The real token bucket, noting when (loop time) and at which priority each token was granted."""

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        super().__init__(rate, burst=burst)
        self.grants: list[tuple[float, IssuePriority]] = []

    async def acquire(self, priority: IssuePriority = IssuePriority.BACKGROUND) -> None:
        await super().acquire(priority)
        self.grants.append((asyncio.get_running_loop().time(), priority))


@contextlib.asynccontextmanager
async def reconciling(
    server: EmulatorServer, *, limiter: RateLimiter | None = None, jitter: Callable[[], float] = lambda: 0.0
) -> AsyncIterator[WorkQueue[IdentityKey]]:
    api = KubeAPI.from_configuration(server.client_configuration())
    cluster = Cluster(api)
    settings = Settings(namespace=OPERATOR_NS, webhook_port=0, health_port=0, leader_election=False)
    ca_store = CAStore(cluster, namespace=OPERATOR_NS, secret_name=settings.ca_secret, clock=wall_clock)
    reconciler = Reconciler(cluster, settings, ca_store, clock=wall_clock,
                            limiter=limiter if limiter is not None else RateLimiter(50), jitter=jitter)
    queue: WorkQueue[IdentityKey] = WorkQueue(reconciler.reconcile)
    task = asyncio.create_task(queue.run())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


def serials(emulator: Emulator) -> dict[str, str]:
    return {name: s["metadata"]["annotations"][c.SERIAL_ANNOTATION] for name, s in managed_secrets(emulator).items()}


async def wait_for_change(emulator: Emulator, before: dict[str, Any], *, step: float, limit: float) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while serials(emulator) == before:
        assert loop.time() < deadline, f"nothing changed within {limit / HOUR:.0f}h of loop time"
        await asyncio.sleep(step)
    return loop.time()


@pytest.mark.looptime
async def test_certificates_renew_at_renew_before_and_again_after() -> None:
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        for namespace in (OPERATOR_NS, NS):
            emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        emulator.create(identity("payments", duration="24h", renewBefore="8h"))
        emulator.create(pod("payments-0", "payments"))
        emulator.create(pod("payments-1", "payments"))
        async with reconciling(server) as queue:
            queue.add((NS, "payments"))
            issued_at = await wait_for_change(emulator, {}, step=1, limit=HOUR)
            first = serials(emulator)
            assert len(first) == 2

            # Renewal is due 16h after issuance (24h - renewBefore 8h): nothing happens before.
            renewed_at = await wait_for_change(emulator, first, step=60, limit=48 * HOUR)
            assert renewed_at - issued_at == pytest.approx(16 * HOUR, abs=120)
            second = serials(emulator)
            assert all(second[name] != first[name] for name in first), "both pods renewed in one batch"

            again_at = await wait_for_change(emulator, second, step=60, limit=48 * HOUR)
            assert again_at - renewed_at == pytest.approx(16 * HOUR, abs=120)

        status = emulator.get(f"{c.GROUP}/{c.VERSION}", c.PLURAL, "payments", NS)
        assert status is not None
        assert status["status"]["issued"] == 2
        renewals = [e for e in emulator.list("v1", "events", NS) if "renewal: 2" in e["message"]]
        assert len(renewals) == 2


# --- Many cycles, spread, rate cap and priorities on the fast-forwarded clock ----------------------


def create_namespaces(emulator: Emulator) -> None:
    for namespace in (OPERATOR_NS, NS):
        emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})


@dataclass(frozen=True)
class Held:
    """What one pod's Secret holds at one moment: the leaf's serial and validity, and the annotation."""

    serial: str
    not_before: datetime
    not_after: datetime
    annotated_not_after: datetime


def held_certificates(emulator: Emulator) -> dict[str, Held]:
    """Each served pod's certificate, by pod name, parsed from ``tls.crt`` (the leaf comes first)."""
    found: dict[str, Held] = {}
    for secret in managed_secrets(emulator).values():
        meta = secret["metadata"]
        leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"][c.TLS_CRT]))
        found[meta["labels"][c.POD_LABEL]] = Held(
            serial=meta["annotations"][c.SERIAL_ANNOTATION],
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            annotated_not_after=datetime.fromisoformat(meta["annotations"][c.NOT_AFTER_ANNOTATION]),
        )
    return found


def serials_by_pod(emulator: Emulator) -> dict[str, str]:
    return {s["metadata"]["labels"][c.POD_LABEL]: s["metadata"]["annotations"][c.SERIAL_ANNOTATION]
            for s in managed_secrets(emulator).values()}


async def wait_for_secrets(emulator: Emulator, count: int, *, step: float = 0.5, limit: float = 600.0) -> float:
    """Wait until ``count`` managed Secrets exist; return the loop time when they did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while len(managed_secrets(emulator)) < count:
        assert loop.time() < deadline, f"fewer than {count} Secrets after {limit:.0f}s of loop time"
        await asyncio.sleep(step)
    return loop.time()


@pytest.mark.looptime
async def test_one_hour_certificates_renew_all_day_and_none_is_ever_expired() -> None:
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        create_namespaces(emulator)
        for app in ("payments", "orders"):
            emulator.create(identity(app, duration="1h"))
            for index in range(3):
                emulator.create(pod(f"{app}-{index}", app))
        async with reconciling(server, jitter=random.Random(7).random) as queue:  # noqa: S311 -- a reproducible jitter
            loop = asyncio.get_running_loop()
            queue.add((NS, "payments"))
            queue.add((NS, "orders"))
            start = await wait_for_secrets(emulator, 6)
            previous = held_certificates(emulator)
            renewals = dict.fromkeys(previous, 0)
            samples = 0
            # Every minute, every certificate is valid now (not before its notBefore, before its
            # notAfter, in tls.crt and in the annotation alike), and a certificate replaced since the
            # last look was still valid at this look, so it was valid until it was replaced: a pod
            # never holds an expired certificate, at any moment, not only at the samples. (The new
            # certificate's notBefore is backdated before its issuance, so it is valid from then on.)
            while loop.time() - start < 24 * HOUR:
                await asyncio.sleep(SAMPLE)
                samples += 1
                now = wall_clock()
                current = held_certificates(emulator)
                assert current.keys() == previous.keys()
                for name, cert in current.items():
                    assert cert.not_before <= now < cert.not_after, f"{name} holds an invalid certificate at {now}"
                    assert cert.annotated_not_after == cert.not_after, f"{name}: annotation and tls.crt disagree"
                    if cert.serial != previous[name].serial:
                        assert now < previous[name].not_after, f"{name}: replaced after its certificate expired"
                        renewals[name] += 1
                previous = current
            await queue.wait_idle()
        assert samples == 24 * 60
        # 1h certificates (default renewBefore: a third, 20m) are renewed 40m after issuance, minus the
        # jitter (up to 10% of 20m = 2m), minus up to 5m when the renewal is batched with an identity's
        # other pods (RENEWAL_HORIZON): one cycle lasts 33m to 40m, so a day holds 24h/40m = 36 to
        # 24h/33m = 43.6 cycles; one fewer for a day that does not start with an issuance.
        assert all(35 <= count <= 44 for count in renewals.values()), renewals


@pytest.mark.looptime
async def test_two_hundred_pods_created_together_renew_spread_over_the_jitter_window() -> None:
    pods = 200
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        create_namespaces(emulator)
        emulator.create(identity("web", duration="24h", renewBefore="8h"))
        for index in range(pods):
            emulator.create(pod(f"web-{index:03}", "web"))
        async with reconciling(server, jitter=random.Random(2026).random) as queue:  # noqa: S311 -- a reproducible jitter
            loop = asyncio.get_running_loop()
            started = loop.time()
            queue.add((NS, "web"))
            issued = await wait_for_secrets(emulator, pods)
            first = serials_by_pod(emulator)
            renewed_in_sample: dict[str, int] = {}
            sample = 0
            while len(renewed_in_sample) < pods:
                assert loop.time() < issued + 17 * HOUR, f"only {len(renewed_in_sample)} pods renewed by 17h"
                await asyncio.sleep(SAMPLE)
                sample += 1
                for name, serial in serials_by_pod(emulator).items():
                    if serial != first[name]:
                        renewed_in_sample.setdefault(name, sample)
            await queue.wait_idle()
        renewed_at = {name: issued + index * SAMPLE for name, index in renewed_in_sample.items()}

    # Each renewal is due 16h after its issuance (24h - renewBefore 8h), moved earlier by the jitter:
    # up to 10% of the 8h window, 48m. The reconciler wakes at the earliest due renewal and also
    # renews what falls due within RENEWAL_HORIZON (5m), so a renewal may come up to 5m before its
    # jittered time, and two batches are at least 5m apart. A sample sees it up to one minute late.
    window = JITTER_FRACTION * timedelta(hours=8)
    earliest = started + (timedelta(hours=16) - window - RENEWAL_HORIZON).total_seconds()
    latest = issued + 16 * HOUR + SAMPLE
    assert all(earliest <= moment <= latest for moment in renewed_at.values())
    # 200 uniform jitters cover nearly all of the 48m, and batching trims at most 5m off the end:
    # about 43m expected; at least half the window, 24m, asserted.
    spread = max(renewed_at.values()) - min(renewed_at.values())
    assert spread >= window.total_seconds() / 2, f"renewals span only {spread / 60:.0f}m"
    # A minute holds at most one batch (batches are >= 5m apart), and a batch is the pods whose
    # jittered time falls in one 5m slice of the 48m: binomial, 200 * 5/48 = 21 pods on average (sd
    # 4.3); this seed's busiest slice holds 36. A quarter of the pods (50) is 6.7 sd above the mean,
    # and far below what no jitter gives (all 200 in one minute).
    busiest = max(collections.Counter(renewed_in_sample.values()).values())
    assert busiest <= pods // 4, f"{busiest} of {pods} pods renewed in one minute"


@pytest.mark.looptime
async def test_one_hour_certificates_created_together_renew_spread_too() -> None:
    """Short certificates have a short jitter window (10% of 20m: 2m); batching must not undo it."""
    pods, sample = 100, 10.0
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        create_namespaces(emulator)
        emulator.create(identity("api", duration="1h"))
        for index in range(pods):
            emulator.create(pod(f"api-{index:03}", "api"))
        async with reconciling(server, jitter=random.Random(7).random) as queue:  # noqa: S311 -- reproducible
            loop = asyncio.get_running_loop()
            queue.add((NS, "api"))
            issued = await wait_for_secrets(emulator, pods)
            first = serials_by_pod(emulator)
            renewed: dict[str, float] = {}
            while len(renewed) < pods:
                assert loop.time() < issued + HOUR, f"only {len(renewed)} pods renewed within the hour"
                await asyncio.sleep(sample)
                for name, serial in serials_by_pod(emulator).items():
                    if serial != first[name]:
                        renewed.setdefault(name, loop.time())
            await queue.wait_idle()
    # Due at 40m less up to 2m of jitter; a batch takes what falls due within half the window (1m), so
    # the renewals come in at least two batches spanning at least a minute; a batch holds about half the
    # pods (binomial, sd 5): at most 65 asserted, where no jitter (or a 5m batch) puts all 100 in one.
    spread = max(renewed.values()) - min(renewed.values())
    assert spread >= 60, f"renewals span only {spread:.0f}s of the 2m jitter window"
    busiest = max(collections.Counter(renewed.values()).values())
    assert busiest <= 65, f"{busiest} of {pods} pods renewed in one {sample:.0f}s sample"


def assert_token_bucket(times: list[float], rate: float, burst: float) -> None:
    """No interval holds more grants than a token bucket allows: burst + rate * its length."""
    for i, begin in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - begin) + 1e-6, (
                f"{j - i + 1} grants in {times[j] - begin:.3f}s (rate {rate}/s, burst {burst})")


@pytest.mark.looptime
async def test_the_rate_cap_holds_for_first_issues_and_for_a_renewal_wave() -> None:
    pods, rate = 200, 20.0
    limiter = RecordingLimiter(rate)
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        create_namespaces(emulator)
        # 1h certificates: the whole set falls due within one 2m jitter window, 38m-40m later: a
        # renewal wave as large as the first issue, both squeezed through the limit.
        emulator.create(identity("web", duration="1h"))
        for index in range(pods):
            emulator.create(pod(f"web-{index:03}", "web"))
        seen: dict[str, set[str]] = collections.defaultdict(set)
        jitter = random.Random(9).random  # noqa: S311 -- a reproducible jitter, not a secret
        async with reconciling(server, limiter=limiter, jitter=jitter) as queue:
            loop = asyncio.get_running_loop()
            queue.add((NS, "web"))
            # Until 55m: both waves are done, the next one is due after 66m.
            while loop.time() < 55 * 60:
                await asyncio.sleep(5)
                for name, serial in serials_by_pod(emulator).items():
                    seen[name].add(serial)
            await queue.wait_idle()

    # Every certificate written took a token, and every token became a certificate.
    assert sum(len(serials) for serials in seen.values()) == len(limiter.grants) == 2 * pods
    assert all(priority is IssuePriority.STARTING for _, priority in limiter.grants[:pods])
    times = [moment for moment, _ in limiter.grants]
    assert_token_bucket(times, rate, limiter.burst)
    per_second = collections.Counter(int(moment) for moment in times)
    assert max(per_second.values()) <= rate + limiter.burst
    first_wave, second_wave = times[:pods], times[pods:]
    for wave in (first_wave, second_wave):
        # Over a wave, the long-run rate is the cap: the burst, then one token per 1/rate seconds.
        assert (len(wave) - limiter.burst) / (wave[-1] - wave[0]) <= rate + 1e-6
    # The waves came 33m to 40m apart; each was held back by the cap, not by a lack of work.
    assert 33 * 60 <= second_wave[0] - first_wave[0] <= 41 * 60
    assert first_wave[-1] - first_wave[0] >= (pods - limiter.burst) / rate - 1e-6


@pytest.mark.looptime
async def test_starting_pods_are_served_before_a_pending_batch_of_background_reissues() -> None:
    pods, rate = 200, 5.0
    limiter = RecordingLimiter(rate)
    async with EmulatorServer(crds=project_crds()) as server:
        emulator = server.emulator
        create_namespaces(emulator)
        emulator.create(identity("payments", duration="24h"))
        emulator.create(identity("orders", duration="24h"))
        for index in range(pods):
            emulator.create(pod(f"payments-{index:03}", "payments"))
        async with reconciling(server, limiter=limiter) as queue:
            loop = asyncio.get_running_loop()
            queue.add((NS, "payments"))
            await wait_for_secrets(emulator, pods)
            await queue.wait_idle()
            before = serials_by_pod(emulator)

            # A spec change re-issues all 200 certificates in the background: at 5/s, a CA
            # rotation-sized batch that takes at least (200 - burst 5) / 5 = 39s.
            granted_before = len(limiter.grants)
            changed_at = loop.time()
            emulator.patch(API, c.PLURAL, "payments", NS, {"spec": {"dnsNames": ["payments"]}})
            queue.add((NS, "payments"))
            await asyncio.sleep(10)

            # Two pods start meanwhile: one more of the same identity, and the first of another.
            newcomers = ("payments-new", "orders-0")
            emulator.create(pod("payments-new", "payments"))
            emulator.create(pod("orders-0", "orders"))
            queue.add((NS, "payments"))
            queue.add((NS, "orders"))
            added_at = loop.time()
            appeared_at: dict[str, float] = {}
            reissued_when_appeared: dict[str, int] = {}
            batch_done_at: float | None = None
            while batch_done_at is None:
                assert loop.time() < changed_at + 600, "the spec-change batch did not finish in 10m"
                await asyncio.sleep(0.25)
                current = serials_by_pod(emulator)
                reissued = sum(1 for name, serial in before.items() if current.get(name) != serial)
                for name in newcomers:
                    if name in current and name not in appeared_at:
                        appeared_at[name] = loop.time()
                        reissued_when_appeared[name] = reissued
                if reissued == pods:
                    batch_done_at = loop.time()
            await queue.wait_idle()

    assert set(appeared_at) == set(newcomers)
    assert batch_done_at - changed_at >= (pods - rate) / rate - 1e-6
    # A starting pod of another identity takes the next token ahead of every waiting re-issue; one of
    # the identity being re-issued waits for the current pass (at most 2s of tokens: 10 re-issues)
    # and then goes first. 5s of loop time bounds both with room for the API calls.
    for name in newcomers:
        assert appeared_at[name] - added_at <= 5.0, f"{name} waited {appeared_at[name] - added_at:.1f}s"
        assert reissued_when_appeared[name] < pods // 2, (name, reissued_when_appeared[name])
        assert batch_done_at - appeared_at[name] >= 20.0
    priorities = collections.Counter(priority for _, priority in limiter.grants[granted_before:])
    assert priorities == {IssuePriority.BACKGROUND: pods, IssuePriority.STARTING: len(newcomers)}
