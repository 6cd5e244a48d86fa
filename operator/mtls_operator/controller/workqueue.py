"""A coalescing work queue and a token bucket: how the operator stays calm under event storms.

Many events about one identity (a Deployment scaling to 300 pods) become one reconcile, never
300; a key is never processed by two workers at once; failures back off per key; and all
issuance shares one rate limit, so renewals never stampede the API server. Time is the event
loop's clock, so tests can fast-forward it (looptime).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from mtls_operator.controller.retry import FAILURE_BASE, BackOff, Backoff, Retry, verdict

Key = TypeVar("Key", bound=Hashable)

# Process result: seconds until this key wants to run again, None for "only on events", or BackOff
# for a standing problem (the key's backoff, shared with its failures).
Processor = Callable[[Key], Awaitable[float | BackOff | None]]


class WorkQueue(Generic[Key]):
    def __init__(self, process: Processor[Key], *, workers: int = 4, logger: logging.Logger | None = None,
                 backoff: Backoff[Key] | None = None) -> None:
        self._process = process
        self._workers = workers
        self._logger = logger or logging.getLogger(__name__)
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        # The one backoff: failures (exceptions) and standing problems (BackOff answers) of a key.
        self.backoff: Backoff[Key] = backoff if backoff is not None else Backoff()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: Key, delay: float = 0.0) -> None:
        """Ask for ``key`` to be processed after ``delay`` seconds; repeated asks coalesce."""
        if delay > 0:
            self._schedule(key, delay)
            return
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._idle.clear()
            self._queue.put_nowait(key)

    def _schedule(self, key: Key, delay: float) -> None:
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= when:
                return  # an earlier wake-up is already planned
            existing[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or running (timers may still be planned)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Run the workers until cancelled.

        A replica that loses leadership cancels this and may run it again when it leads again, so
        nothing is dropped on cancellation: queued keys stay queued, planned runs stay planned (and
        queue their key when due), and a key interrupted half-way is queued to be done again.
        """
        async with asyncio.TaskGroup() as group:
            for _ in range(self._workers):
                group.create_task(self._work())

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                delay = await self._run_one(key)
            except asyncio.CancelledError:
                self._active.discard(key)
                self._again.discard(key)
                self.add(key)
                raise
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            elif delay is not None:
                self.add(key, delay)
            if not self._queued and not self._active:
                self._idle.set()

    async def _run_one(self, key: Key) -> float | None:
        try:
            delay = await self._process(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if verdict(exc).retry is Retry.ON_CHANGE:
                self._logger.warning("reconcile of %s failed, waiting for a change: %s", key, exc)
                return None
            backoff = self.backoff.next_delay(key, FAILURE_BASE)
            self._logger.warning(
                "reconcile of %s failed (attempt %d), retrying in %.0fs: %s", key, self.backoff.streak(key), backoff,
                exc,
            )
            return backoff
        if isinstance(delay, BackOff):
            return self.backoff.next_delay(key, delay.base)
        self.backoff.reset(key)
        return delay


class IssuePriority(enum.IntEnum):
    """Who gets the next token when issuance is rate-limited: lower goes first."""

    STARTING = 0  # a pod without a (working) certificate: first issue, or a repair
    OVERDUE = 1  # a renewal at or past its renewal time
    BACKGROUND = 2  # the rest: spec changes, CA rotation, renewals batched ahead of time


class RateLimiter:
    """A token bucket on the loop's clock: at most ``rate`` acquisitions per second, bursts of ``burst``.

    Waiters are served by priority, then in arrival order, so a pod that is starting never waits
    behind a CA rotation's thousand renewals.
    """

    def __init__(self, rate: float, *, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._stamp: float | None = None
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None

    async def acquire(self, priority: IssuePriority = IssuePriority.BACKGROUND) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (int(priority), next(self._arrivals), waiter))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch(), name="mtls-operator rate limiter")
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._tokens += 1  # granted, but the caller went away: the token is not spent
            raise

    def try_acquire(self) -> bool:
        """Take a token only if one is free now and nobody is waiting (it never jumps the queue)."""
        if self._waiters:
            return False
        self._refill(asyncio.get_running_loop().time())
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _refill(self, now: float) -> None:
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            self._refill(loop.time())
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                # Exactly one token after the exact wait (recomputing it could leave 0.999... and spin).
                self._stamp = loop.time()
                self._tokens = 1.0
                continue
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                self._tokens -= 1
                waiter.set_result(None)
