"""Leader election: one replica issues, the others stand by to take over.

The replicas compete for a ``coordination.k8s.io/v1`` Lease by election.py's rules (client-go's).
The winner runs the leader work (issuing, renewing, rotating) while it renews the Lease every retry
period; the work is cancelled at once when the Lease turns out to be someone else's, or when no
renewal has succeeded for the renew deadline, which passes before any follower may take over, so
two replicas never issue at the same time. On shutdown the leader releases the Lease (clears its
holder, like client-go's ReleaseOnCancel), so a follower takes over at its next look instead of
waiting for the Lease to expire.

Time is the event loop's monotonic clock (a wall-clock step cannot shorten a lease; tests can
fast-forward it), read as a UTC datetime anchored at the wall clock for the times written to the
Lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mtls_operator.errors import ConflictError, KubernetesAPIError
from mtls_operator.k8s import JSON
from mtls_operator.observability.metrics import Metrics
from mtls_operator.rules.election import (
    Action,
    Decision,
    LeaseRecord,
    Observation,
    Timing,
    decide,
    leadership_left,
    observe,
    release_record,
)
from mtls_operator.times import Clock

logger = logging.getLogger(__name__)

LeaderWork = Callable[[], Coroutine[Any, Any, None]]


class LeaseAPI(Protocol):
    """The Lease operations of :class:`mtls_operator.k8s.Cluster`."""

    async def get_lease(self, namespace: str, name: str) -> JSON | None: ...

    async def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> JSON: ...

    async def replace_lease(self, lease: Mapping[str, Any], spec: Mapping[str, Any]) -> JSON: ...


def monotonic_wall_clock() -> Clock:
    """UTC now, advanced by the running loop's monotonic clock from the wall clock at this call."""
    loop = asyncio.get_running_loop()
    wall, start = datetime.now(UTC), loop.time()
    return lambda: wall + timedelta(seconds=loop.time() - start)


class LeaderElector:
    def __init__(
        self,
        api: LeaseAPI,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: timedelta,
        metrics: Metrics,
        clock: Clock | None = None,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = Timing.for_lease_duration(lease_duration)
        self._metrics = metrics
        self._clock = clock
        self.leading = False
        # The Lease as we last wrote it (its resourceVersion guards the next renewal and the release).
        self._written: JSON | None = None
        # When our last successful write started: leadership ends a renew deadline after it.
        self._renewed_at: datetime | None = None
        self._observation: Observation | None = None
        self._followed: str | None = None
        metrics.leadership(False)

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    async def run(self, lead: LeaderWork) -> None:
        """Compete for the Lease until cancelled, running ``lead()`` whenever this replica holds it.

        ``lead()`` is cancelled as soon as leadership is lost, and started afresh when it is won
        again. If it returns or raises, so does this. The Lease is released on the way out.
        """
        if self._clock is None:
            self._clock = monotonic_wall_clock()
        try:
            while True:
                await self._until_elected()
                work = asyncio.create_task(lead(), name="mtls-operator leader work")
                self._set_leading(True)
                try:
                    if await self._renew_while_running(work):
                        work.result()
                        return
                finally:
                    await _stop(work)
                    self._set_leading(False)
        finally:
            await self._release()

    # Following -----------------------------------------------------------------------------------

    async def _until_elected(self) -> None:
        retry = self.timing.retry_period.total_seconds()
        while True:
            now = self._now()
            try:
                lease = await self._api.get_lease(self.namespace, self.name)
            except KubernetesAPIError as exc:
                logger.warning("cannot read %s: %s", self.where, exc)
                await asyncio.sleep(retry)
                continue
            decision = self._decide(lease, now, leading=False)
            if decision.action is Action.WAIT:
                if decision.holder != self._followed:
                    self._followed = decision.holder
                    logger.info("following %s, the holder of %s", decision.holder, self.where)
                await asyncio.sleep(decision.wait.total_seconds())
                continue
            if await self._write(lease, decision, now):
                self._followed = None
                logger.info("leading: %s is held by %s (%s)", self.where, self.identity,
                            self._took_from(decision.holder))
                return
            await asyncio.sleep(retry)

    # Leading -------------------------------------------------------------------------------------

    async def _renew_while_running(self, work: asyncio.Task[None]) -> bool:
        """Renew until leadership is lost (False) or ``work`` ends by itself (True)."""
        while True:
            wait = min(self.timing.retry_period, self._leadership_left())
            await asyncio.wait({work}, timeout=max(0.0, wait.total_seconds()))
            if work.done():
                return True
            left = self._leadership_left()
            if left > timedelta(0):
                try:
                    # A hanging request must not keep us leading past the deadline.
                    async with asyncio.timeout(left.total_seconds()):
                        ours = await self._renew()
                except TimeoutError:
                    pass
                else:
                    if ours:
                        continue
                    return False
            logger.warning("stopped leading: %s was not renewed within %gs", self.where,
                           self.timing.renew_deadline.total_seconds())
            return False

    async def _renew(self) -> bool:
        """One renewal attempt; False when the Lease has become someone else's."""
        now = self._now()
        try:
            lease = await self._api.get_lease(self.namespace, self.name)
        except KubernetesAPIError as exc:
            # The renew deadline decides whether a failing API ends leadership.
            logger.warning("cannot read %s to renew it: %s", self.where, exc)
            return True
        decision = self._decide(lease, now, leading=True)
        if decision.action is Action.LOST:
            logger.warning("stopped leading: %s is now held by %s", self.where, decision.holder or "nobody")
            return False
        await self._write(lease, decision, now)
        return True

    def _leadership_left(self) -> timedelta:
        assert self._renewed_at is not None, "leading without a renewal"
        return leadership_left(self._renewed_at, self._now(), self.timing)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        self._metrics.leadership(leading)

    async def _release(self) -> None:
        """Clear the holder, if we still are it, so that a follower takes over at once."""
        written, self._written = self._written, None
        record = LeaseRecord.from_lease(written)
        if written is None or record is None or record.holder != self.identity:
            return
        try:
            async with asyncio.timeout(self.timing.renew_deadline.total_seconds()):
                await self._api.replace_lease(written, release_record(record, self._now()).to_spec())
        except ConflictError:
            return  # written since our last renewal: it is someone else's now
        except (KubernetesAPIError, TimeoutError) as exc:
            logger.warning("could not release %s (a follower takes over when it expires in %gs): %s",
                           self.where, self.timing.lease_duration.total_seconds(), exc)
            return
        logger.info("released %s", self.where)

    # Reading, deciding, writing -------------------------------------------------------------------

    def _decide(self, lease: JSON | None, now: datetime, *, leading: bool) -> Decision:
        self._observation = observe(self._observation, LeaseRecord.from_lease(lease), now)
        return decide(self._observation, me=self.identity, now=now, timing=self.timing, leading=leading)

    async def _write(self, lease: JSON | None, decision: Decision, now: datetime) -> bool:
        assert decision.record is not None, f"nothing to write for {decision.action}"
        spec = decision.record.to_spec()
        try:
            if lease is None:
                self._written = await self._api.create_lease(self.namespace, self.name, spec)
            else:
                self._written = await self._api.replace_lease(lease, spec)
        except ConflictError:
            logger.debug("%s changed while we wrote it; looking again", self.where)
            return False
        except KubernetesAPIError as exc:
            logger.warning("cannot %s %s: %s", decision.action.value, self.where, exc)
            return False
        self._renewed_at = now
        return True

    def _now(self) -> datetime:
        assert self._clock is not None, "the clock is set when run() starts"
        return self._clock()

    def _took_from(self, previous: str) -> str:
        if previous == self.identity:
            return "resumed: it was ours before a restart"
        return f"taken over from {previous}" if previous else "it was free"


async def _stop(work: asyncio.Task[None]) -> None:
    """Cancel the leader work and wait until it has ended, so nothing it started outlives leadership."""
    if work.done():
        return
    work.cancel()
    # asyncio.wait, not await: the work's own cancellation must not look like ours.
    await asyncio.wait({work})
    if not work.cancelled() and work.exception() is not None:
        logger.error("the leader work failed while stopping: %r", work.exception())
