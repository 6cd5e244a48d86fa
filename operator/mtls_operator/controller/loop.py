"""The loop of a controller that steps on a schedule and can be woken: the CA rotation and the
webhook CA's rotation both run on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from mtls_operator.errors import KubernetesAPIError


async def run_woken(step: Callable[[], Awaitable[float]], wake: asyncio.Event, *, retry_delay: float,
                    logger: logging.Logger, what: str) -> None:
    """Run ``step`` until cancelled; sleep the seconds it returns, or less when ``wake`` is set. An API
    failure is logged and tried again after ``retry_delay``; anything else is a bug and ends the loop."""
    while True:
        try:
            delay = await step()
        except KubernetesAPIError as exc:
            logger.warning("%s: the API failed, retrying: %s", what, exc)
            delay = retry_delay
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        wake.clear()
