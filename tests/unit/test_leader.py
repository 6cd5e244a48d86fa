"""The election loop (controller/leader.py) against an in-memory Lease API, on fast-forwarded time."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from mtls_operator.controller.leader import LeaderElector, LeaderWork
from mtls_operator.errors import ConflictError, KubernetesAPIError
from mtls_operator.k8s import JSON
from mtls_operator.observability.metrics import Metrics

NAMESPACE = "mtls-system"
NAME = "mtls-operator"
LEASE = timedelta(seconds=3)  # renew deadline 2s, retry period 0.4s
RENEW_DEADLINE = 2.0
RETRY = 0.4
LATENCY = 0.01  # per request, so that candidates interleave as they would over a network
SLACK = 0.05


class LeaseStore:
    """The API server's one Lease: resourceVersions, 409 on a stale write or a second create."""

    def __init__(self) -> None:
        self.lease: JSON | None = None
        self.version = 0
        self.conflicts = 0
        # (loop time, holder written) for every successful write.
        self.writes: list[tuple[float, str]] = []

    def put(self, spec: Mapping[str, Any]) -> JSON:
        self.version += 1
        self.lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "metadata": {"name": NAME, "namespace": NAMESPACE, "resourceVersion": str(self.version)},
                      "spec": dict(spec)}
        self.writes.append((asyncio.get_running_loop().time(), str(spec.get("holderIdentity"))))
        return copy.deepcopy(self.lease)

    @property
    def spec(self) -> dict[str, Any]:
        assert self.lease is not None
        spec: dict[str, Any] = self.lease["spec"]
        return spec


class Client:
    """One replica's connection to the store; it can fail (errors) or hang (a network partition)."""

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.failing = False
        self.partitioned = False

    async def _network(self) -> None:
        await asyncio.sleep(LATENCY)
        if self.partitioned:
            await asyncio.Event().wait()
        if self.failing:
            raise KubernetesAPIError("HTTP 503: etcd is unhappy", status=503)

    async def get_lease(self, namespace: str, name: str) -> JSON | None:
        assert (namespace, name) == (NAMESPACE, NAME)
        await self._network()
        return copy.deepcopy(self.store.lease)

    async def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> JSON:
        assert (namespace, name) == (NAMESPACE, NAME)
        await self._network()
        if self.store.lease is not None:
            self.store.conflicts += 1
            raise ConflictError("leases.coordination.k8s.io mtls-operator already exists")
        return self.store.put(spec)

    async def replace_lease(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> JSON:
        await self._network()
        current = self.store.lease
        if current is None or current["metadata"]["resourceVersion"] != lease["metadata"]["resourceVersion"]:
            self.store.conflicts += 1
            raise ConflictError("the object has been modified")
        return self.store.put(spec)


class Terms:
    """Who led when: the leader work records its own start and end."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, float, float]] = []
        self.current: dict[str, float] = {}

    def work(self, who: str) -> LeaderWork:
        async def lead() -> None:
            loop = asyncio.get_running_loop()
            self.current[who] = loop.time()
            try:
                await asyncio.Event().wait()
            finally:
                self.ended.append((who, self.current.pop(who), loop.time()))

        return lead

    def all(self, now: float) -> list[tuple[str, float, float]]:
        ongoing = [(who, start, now) for who, start in self.current.items()]
        return sorted(self.ended + ongoing, key=lambda term: term[1])


def elector(client: Client, who: str, metrics: Metrics | None = None) -> LeaderElector:
    return LeaderElector(client, namespace=NAMESPACE, name=NAME, identity=who, lease_duration=LEASE,
                         metrics=metrics if metrics is not None else Metrics())


@contextlib.asynccontextmanager
async def running(candidate: LeaderElector, work: LeaderWork) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(candidate.run(work))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def now() -> float:
    return asyncio.get_running_loop().time()


def assert_one_leader_at_a_time(terms: list[tuple[str, float, float]]) -> None:
    for (_, _, end), (_, start, _) in itertools.pairwise(terms):
        assert end <= start, terms


@pytest.mark.looptime
async def test_acquires_a_free_lease_renews_it_and_releases_it_on_stop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mtls_operator.controller.leader")
    store, terms, metrics = LeaseStore(), Terms(), Metrics()
    candidate = elector(Client(store), "a", metrics)
    assert metrics.registry.get_sample_value("mtls_leader") == 0
    async with running(candidate, terms.work("a")):
        await asyncio.sleep(5)
        assert candidate.leading
        assert metrics.registry.get_sample_value("mtls_leader") == 1
        assert store.spec["holderIdentity"] == "a"
        assert store.spec["leaseDurationSeconds"] == 3
        assert store.spec["leaseTransitions"] == 0
        assert store.spec["acquireTime"] != store.spec["renewTime"]
    [(who, start, end)] = terms.all(now())
    assert who == "a"
    assert start == pytest.approx(2 * LATENCY)
    assert end == pytest.approx(5)
    times = [when for when, _ in store.writes]
    assert [holder for _, holder in store.writes] == ["a"] * (len(times) - 1) + [""]
    assert max(b - a for a, b in itertools.pairwise(times[:-1])) <= RETRY + 2 * LATENCY + SLACK
    assert len(times) >= 5 / (RETRY + 2 * LATENCY)
    # Released: unheld, a one-second lease, the count of holders kept.
    assert (store.spec["holderIdentity"], store.spec["leaseDurationSeconds"], store.spec["leaseTransitions"]) == (
        "", 1, 0)
    assert not candidate.leading
    assert metrics.registry.get_sample_value("mtls_leader") == 0
    messages = [record.getMessage() for record in caplog.records]
    assert "leading: Lease mtls-system/mtls-operator is held by a (it was free)" in messages
    assert "released Lease mtls-system/mtls-operator" in messages


@pytest.mark.looptime
async def test_concurrent_candidates_elect_exactly_one() -> None:
    store, terms = LeaseStore(), Terms()
    candidates = [elector(Client(store), who) for who in "abc"]
    async with contextlib.AsyncExitStack() as stack:
        for candidate in candidates:
            await stack.enter_async_context(running(candidate, terms.work(candidate.identity)))
        await asyncio.sleep(10)
        leaders = [candidate.identity for candidate in candidates if candidate.leading]
        assert len(leaders) == 1
        assert store.spec["holderIdentity"] == leaders[0]
        assert store.spec["leaseTransitions"] == 0
        assert store.conflicts == 2  # the losers of the race to create it
        assert [who for who, _, _ in terms.all(now())] == leaders
    assert_one_leader_at_a_time(terms.all(now()))


@pytest.mark.looptime
async def test_a_released_lease_is_taken_over_at_once() -> None:
    store, terms = LeaseStore(), Terms()
    a = asyncio.create_task(elector(Client(store), "a").run(terms.work("a")))
    await asyncio.sleep(0.1)  # "a" leads; "b" arrives later
    async with running(elector(Client(store), "b"), terms.work("b")):
        await asyncio.sleep(5)
        a.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await a
        await asyncio.sleep(5)
        (first, _, a_end), (second, b_start, _) = terms.all(now())
        assert store.spec["holderIdentity"] == "b"
        assert store.spec["leaseTransitions"] == 1
    assert (first, second) == ("a", "b")
    assert_one_leader_at_a_time(terms.all(now()))
    assert a_end == pytest.approx(5.1)
    # At b's next look: within a retry period, not a lease duration later.
    assert a_end <= b_start <= a_end + RETRY + 3 * LATENCY + SLACK


@pytest.mark.looptime
async def test_a_partitioned_leader_stops_at_the_renew_deadline_before_a_follower_takes_over() -> None:
    store, terms = LeaseStore(), Terms()
    leader_client = Client(store)
    async with running(elector(leader_client, "a"), terms.work("a")), \
            running(elector(Client(store), "b"), terms.work("b")):
        await asyncio.sleep(5)
        last_renewal = max(when for when, holder in store.writes if holder == "a")
        leader_client.partitioned = True  # its requests hang: no errors, no answers
        partitioned_at = now()
        await asyncio.sleep(10)
        (first, _, a_end), (second, b_start, _) = terms.all(now())
        assert store.spec["holderIdentity"] == "b"
        assert store.spec["leaseTransitions"] == 1
    assert (first, second) == ("a", "b")
    assert_one_leader_at_a_time(terms.all(now()))
    # "a" stops a renew deadline after its last successful renewal began (a GET and a PUT before it).
    assert a_end == pytest.approx(last_renewal - 2 * LATENCY + RENEW_DEADLINE, abs=SLACK)
    # "b" waits a full lease duration from when it last saw that renewal: a second after "a" stopped.
    assert b_start - a_end >= LEASE.total_seconds() - RENEW_DEADLINE - SLACK
    assert b_start <= partitioned_at + LEASE.total_seconds() + RETRY + 3 * LATENCY + SLACK


@pytest.mark.looptime
async def test_a_short_api_outage_does_not_end_leadership() -> None:
    store, terms = LeaseStore(), Terms()
    client = Client(store)
    async with running(elector(client, "a"), terms.work("a")), running(elector(Client(store), "b"), terms.work("b")):
        await asyncio.sleep(2)
        client.failing = True
        # Shorter than the renew deadline by two retry periods: a renewal succeeds in time, whatever the phase.
        await asyncio.sleep(RENEW_DEADLINE - 2 * (RETRY + 2 * LATENCY) - SLACK)
        client.failing = False
        await asyncio.sleep(5)
        assert [who for who, _, _ in terms.all(now())] == ["a"]
    renewals = [when for when, holder in store.writes if holder == "a"]
    assert max(b - a for a, b in itertools.pairwise(renewals)) > RENEW_DEADLINE / 2  # some failed


@pytest.mark.looptime
async def test_a_leader_whose_lease_was_taken_stops_at_its_next_look_and_leads_again_later() -> None:
    store, terms = LeaseStore(), Terms()
    async with running(elector(Client(store), "a"), terms.work("a")):
        await asyncio.sleep(5)
        assert store.lease is not None
        store.put({**store.spec, "holderIdentity": "intruder", "leaseTransitions": 1})
        taken_at = now()
        await asyncio.sleep(10)  # the intruder never renews: "a" takes it back once it has expired
        (_, _, first_end), (_, second_start, _) = terms.all(now())
    assert taken_at < first_end <= taken_at + RETRY + 2 * LATENCY + SLACK
    assert second_start >= taken_at + LEASE.total_seconds()
    assert store.spec["leaseTransitions"] == 2


@pytest.mark.looptime
async def test_failing_leader_work_ends_the_election_and_releases_the_lease() -> None:
    store = LeaseStore()

    async def broken() -> None:
        await asyncio.sleep(1)
        raise RuntimeError("the reconciler broke")

    with pytest.raises(RuntimeError, match="the reconciler broke"):
        await elector(Client(store), "a").run(broken)
    assert store.spec["holderIdentity"] == ""


@pytest.mark.looptime
async def test_an_api_outage_while_following_only_delays() -> None:
    store, terms = LeaseStore(), Terms()
    client = Client(store)
    client.failing = True
    async with running(elector(client, "a"), terms.work("a")):
        await asyncio.sleep(5)
        assert store.lease is None
        client.failing = False
        await asyncio.sleep(1)
        assert [who for who, _, _ in terms.all(now())] == ["a"]
