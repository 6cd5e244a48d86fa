"""The work queue and the rate limit, on fast-forwarded loop time (looptime): no real waiting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mtls_operator.controller.retry import BackOff
from mtls_operator.controller.workqueue import RateLimiter, WorkQueue
from mtls_operator.errors import SpecError


@contextlib.asynccontextmanager
async def running(queue: WorkQueue[str]) -> AsyncIterator[WorkQueue[str]]:
    task = asyncio.create_task(queue.run())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def recorder(
    runs: list[tuple[str, float]], result: Callable[[str, int], float | BackOff | None] = lambda key, n: None,
    work: float = 0.0,
) -> Callable[[str], Awaitable[float | BackOff | None]]:
    async def process(key: str) -> float | BackOff | None:
        loop = asyncio.get_running_loop()
        runs.append((key, loop.time()))
        if work:
            await asyncio.sleep(work)
        return result(key, sum(1 for k, _ in runs if k == key))

    return process


@pytest.mark.looptime
async def test_rate_limiter_holds_the_rate(looptime: float) -> None:
    limiter = RateLimiter(10.0)
    for _ in range(30):
        await limiter.acquire()
    # A burst of 10 at once, then one every 0.1 s.
    assert asyncio.get_running_loop().time() == pytest.approx(2.0)


@pytest.mark.looptime
async def test_rate_limiter_refills_while_idle() -> None:
    limiter = RateLimiter(5.0)
    for _ in range(5):
        await limiter.acquire()
    await asyncio.sleep(10)
    start = asyncio.get_running_loop().time()
    for _ in range(5):
        await limiter.acquire()
    assert asyncio.get_running_loop().time() == pytest.approx(start)


@pytest.mark.looptime
async def test_events_during_a_run_coalesce_into_one_more_run() -> None:
    runs: list[tuple[str, float]] = []
    async with running(WorkQueue(recorder(runs, work=1.0))) as queue:
        queue.add("a")
        await asyncio.sleep(0.5)
        for _ in range(100):
            queue.add("a")
        await asyncio.sleep(5)
    assert [key for key, _ in runs] == ["a", "a"]


@pytest.mark.looptime
async def test_a_key_never_runs_twice_at_once() -> None:
    active: set[str] = set()
    overlaps: list[str] = []

    async def process(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        await asyncio.sleep(1)
        active.discard(key)

    async with running(WorkQueue(process, workers=4)) as queue:
        for _ in range(10):
            queue.add("a")
            queue.add("b")
            await asyncio.sleep(0.3)
        await asyncio.sleep(5)
    assert overlaps == []


@pytest.mark.looptime
async def test_the_returned_delay_schedules_the_next_run() -> None:
    runs: list[tuple[str, float]] = []
    async with running(WorkQueue(recorder(runs, lambda key, n: 3600.0 if n < 3 else None))) as queue:
        queue.add("renew-me")
        await asyncio.sleep(4 * 3600)
    assert [when for _, when in runs] == [0.0, 3600.0, 7200.0]


@pytest.mark.looptime
async def test_an_earlier_wakeup_wins() -> None:
    runs: list[tuple[str, float]] = []
    async with running(WorkQueue(recorder(runs))) as queue:
        queue.add("k", delay=100)
        queue.add("k", delay=10)
        queue.add("k", delay=50)
        await asyncio.sleep(200)
    assert [when for _, when in runs] == [10.0]


@pytest.mark.looptime
async def test_failures_back_off_exponentially() -> None:
    runs: list[tuple[str, float]] = []

    def fail_three_times(key: str, n: int) -> float | None:
        if n <= 3:
            raise RuntimeError("API down")
        return None

    async with running(WorkQueue(recorder(runs, fail_three_times))) as queue:
        queue.add("k")
        await asyncio.sleep(60)
    assert [when for _, when in runs] == [0.0, 1.0, 3.0, 7.0]


@pytest.mark.looptime
async def test_a_stopped_queue_runs_again_without_losing_keys_or_leaking_tasks() -> None:
    """A replica that loses leadership stops the queue, and runs it again when it leads again."""
    runs: list[tuple[str, float]] = []
    queue: WorkQueue[str] = WorkQueue(recorder(runs, work=1.0), workers=1)
    before = asyncio.all_tasks()
    async with running(queue):
        queue.add("interrupted")
        queue.add("queued")
        queue.add("planned", delay=10)
        await asyncio.sleep(0.5)
        queue.add("interrupted")  # an event while it runs: one more run, not two
    assert asyncio.all_tasks() == before
    queue.add("while-stopped")
    await asyncio.sleep(20)  # "planned" comes due while nothing runs
    assert runs == [("interrupted", 0.0)]
    async with running(queue):
        await asyncio.sleep(10)
    assert runs == [("interrupted", 0.0), ("queued", 20.5), ("interrupted", 21.5), ("while-stopped", 22.5),
                    ("planned", 23.5)]
    assert asyncio.all_tasks() == before


@pytest.mark.looptime
async def test_rate_limiter_serves_waiters_by_priority_then_arrival() -> None:
    from mtls_operator.controller.workqueue import IssuePriority

    limiter = RateLimiter(1.0, burst=1)
    await limiter.acquire()  # the only token: everyone below has to wait
    grants: list[tuple[str, float]] = []

    async def take(name: str, priority: IssuePriority) -> None:
        await limiter.acquire(priority)
        grants.append((name, asyncio.get_running_loop().time()))

    arrivals = [("rotation-1", IssuePriority.BACKGROUND), ("rotation-2", IssuePriority.BACKGROUND),
                ("overdue", IssuePriority.OVERDUE), ("rotation-3", IssuePriority.BACKGROUND),
                ("starting", IssuePriority.STARTING)]
    async with asyncio.TaskGroup() as group:
        for name, priority in arrivals:
            group.create_task(take(name, priority))
    # One token a second, handed out in priority order; arrival order within a priority.
    assert grants == [("starting", 1.0), ("overdue", 2.0), ("rotation-1", 3.0), ("rotation-2", 4.0),
                      ("rotation-3", 5.0)]


@pytest.mark.looptime
async def test_try_acquire_takes_only_a_free_token_and_never_jumps_the_queue() -> None:
    from mtls_operator.controller.workqueue import IssuePriority

    limiter = RateLimiter(1.0, burst=1)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()  # the bucket is empty
    waiter = asyncio.create_task(limiter.acquire(IssuePriority.BACKGROUND))
    await asyncio.sleep(0.5)
    assert not limiter.try_acquire()  # someone waits: they go first
    await waiter
    assert asyncio.get_running_loop().time() == pytest.approx(1.0)
    await asyncio.sleep(1)
    assert limiter.try_acquire()


@pytest.mark.looptime
async def test_standing_problems_back_off_and_a_clean_run_resets_them() -> None:
    runs: list[tuple[str, float]] = []

    def problem_twice_then_fine(key: str, n: int) -> float | BackOff | None:
        return BackOff(10.0) if n <= 2 else None

    async with running(WorkQueue(recorder(runs, problem_twice_then_fine))) as queue:
        queue.add("k")
        await asyncio.sleep(100)
        assert queue.backoff.streak("k") == 0
    assert [when for _, when in runs] == [0.0, 10.0, 30.0]


@pytest.mark.looptime
async def test_an_error_a_person_must_fix_waits_for_a_change() -> None:
    runs: list[tuple[str, float]] = []

    def bad_spec(key: str, n: int) -> float | None:
        raise SpecError("spec.selector", "bad")

    async with running(WorkQueue(recorder(runs, bad_spec))) as queue:
        queue.add("k")
        await asyncio.sleep(100)
    assert [when for _, when in runs] == [0.0]
