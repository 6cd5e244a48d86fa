"""Wiring: settings and credentials in, a running kopf operator out."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import kopf
from kubernetes import client as k8s_client

from mtls_operator import constants as c
from mtls_operator.config import ENV_HEALTH_PORT, ENV_WEBHOOK_PORT, Settings
from mtls_operator.controller.prefetch import ListPrefetch
from mtls_operator.controller.webhook_tls import ServingCertificate
from mtls_operator.errors import ConfigError
from mtls_operator.handlers import AdmissionServer, registry
from mtls_operator.handlers.runtime import wall_clock
from mtls_operator.rules.admission import serving_dns_names
from mtls_operator.times import Clock

T = TypeVar("T")

# Seconds the loop keeps running after kopf stops, for the admission server's TLS connections to close.
_TLS_CLOSE_GRACE = 0.2


def operator_settings(config: Settings, serving: ServingCertificate | None = None) -> kopf.OperatorSettings:
    """kopf's settings for our operator; ``serving`` is the admission webhooks' certificate, ``None``
    when they are off (``MTLS_WEBHOOK_PORT=0``)."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{c.GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # We know our resources; no need to watch CRDs and namespaces cluster-wide.
    settings.scanning.disabled = True
    # Every replica serves the admission webhooks; the Helm chart owns their configurations (kopf
    # manages none), and the operator keeps only their caBundle current.
    if config.webhooks_enabled and serving is not None:
        settings.admission.server = AdmissionServer(serving, port=config.webhook_port)
    else:
        settings.admission.server = _no_admission_server
    return settings


async def _no_admission_server(_: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
    """Webhooks off: kopf refuses to run admission handlers without a server, so this one never listens."""
    await asyncio.Event().wait()
    yield kopf.WebhookClientConfig()  # unreachable: the wait ends only by cancellation at shutdown


def serving_certificate(config: Settings, clock: Clock | None) -> ServingCertificate | None:
    """This replica's webhook serving certificate (a placeholder until the CA loads), if webhooks are on."""
    if not config.webhooks_enabled:
        return None
    names = serving_dns_names(config.webhook_service, config.namespace, config.cluster_domain)
    return ServingCertificate(names, clock=clock or wall_clock, duration=config.default_duration)


async def run_operator(
    settings: Settings,
    configuration: k8s_client.Configuration,
    *,
    clock: Clock | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    memo: kopf.Memo | None = None,
    retry_delay: float = 15.0,
    ca_refresh_interval: float = 30.0,
    watch_timeout: int = 60,
    prefetch: ListPrefetch | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or a signal arrives, when it is None).

    ``memo`` gives tests a handle on the running operator (``memo["runtime"]``); ``retry_delay``
    (a clash or a missing CA), ``ca_refresh_interval`` and ``watch_timeout`` (how long the Secret
    deletion watch streams before it reconnects) let them run in seconds, not minutes. ``prefetch``: the
    pods and Secrets being listed since the process started (cli.py), for the first leadership. Raises
    ``ConfigError`` when start-up is refused (the metrics or health port cannot be bound).
    """
    memo = memo if memo is not None else kopf.Memo()
    if settings.webhooks_enabled:
        _refuse_a_taken_port(settings.webhook_port, ENV_WEBHOOK_PORT, "the admission webhooks")
    serving = serving_certificate(settings, clock)
    memo.update(
        settings=settings,
        kube_configuration=configuration,
        clock=clock,
        retry_delay=retry_delay,
        ca_refresh_interval=ca_refresh_interval,
        watch_timeout=watch_timeout,
        serving_certificate=serving,
        list_prefetch=prefetch,
    )
    try:
        await kopf.operator(
            registry=registry,
            settings=operator_settings(settings, serving),
            clusterwide=True,
            standalone=True,
            memo=memo,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=liveness_endpoint(settings),
        )
    except Exception as exc:
        # Our own start-up refusal (a metrics port in use) ends the run with its one line, not with
        # kopf's wrapping of it (an ActivityError, which kopf does not export).
        refusal = _config_error_behind(exc)
        if refusal is not None:
            raise refusal from None
        raise
    if serving is not None:
        # kopf has closed the admission server's keep-alive connections; TLS ends each with a
        # close_notify exchange with the API server, which needs this loop for a moment more.
        await asyncio.sleep(_TLS_CLOSE_GRACE)


def liveness_endpoint(settings: Settings) -> str | None:
    """kopf's health endpoint, answered by every replica, leader or not (the chart probes it).

    A port in use is refused here with one line (``ConfigError``), as for metrics: kopf would only
    find out after start-up, and stop with a traceback.
    """
    port = settings.health_port
    if not port:
        return None
    _refuse_a_taken_port(port, ENV_HEALTH_PORT, "the health endpoint")
    return f"http://0.0.0.0:{port}/healthz"


def _refuse_a_taken_port(port: int, variable: str, what: str) -> None:
    """``ConfigError`` with one line when someone listens on ``port`` (kopf would find out after start-up)."""
    with socket.socket() as probe:
        # As aiohttp binds (address reuse on): only a port someone listens on is refused.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 -- the kubelet and the API server reach the pod IP
        except OSError as exc:
            raise ConfigError(
                f"{variable}={port}: cannot serve {what} on 0.0.0.0:{port}: {exc.strerror or exc} "
                "(choose another port, or 0 to disable it)"
            ) from None


def _config_error_behind(exc: BaseException) -> ConfigError | None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConfigError):
            return cause
        cause = cause.__cause__
    return None


class OperatorThread:
    """The operator on an event loop of its own, in a daemon thread.

    kopf treats every task created on its loop after start-up as its own and cancels them all on
    exit, so it must not share a loop with other work: an in-process API emulator, a test, the demo.
    """

    def __init__(
        self,
        settings: Settings,
        configuration: k8s_client.Configuration,
        *,
        clock: Clock | None = None,
        retry_delay: float = 15.0,
        ca_refresh_interval: float = 30.0,
        watch_timeout: int = 60,
    ) -> None:
        # Only keeps its arguments, as the controller's constructors do: the loop and the thread come in start().
        self.memo = kopf.Memo()
        self._clock = clock
        self._retry_delay = retry_delay
        self._ca_refresh_interval = ca_refresh_interval
        self._watch_timeout = watch_timeout
        self._settings = settings
        self._configuration = configuration
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._main, name="mtls-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the operator did not start within {timeout}s: {self._error!r}")
        if self._error is not None:
            raise RuntimeError("the operator failed to start") from self._error

    def stop(self, timeout: float = 15.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the operator did not stop within {timeout}s")
        self._thread = None
        if self._error is not None:
            raise RuntimeError("the operator failed") from self._error

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the operator's loop (e.g. to inspect or poke its queue)."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the operator is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the caller of start()/stop()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()

        async def signal_ready() -> None:
            await ready.wait()
            self._ready.set()

        watcher = asyncio.create_task(signal_ready())
        try:
            await run_operator(
                self._settings,
                self._configuration,
                clock=self._clock,
                stop_flag=self._stop,
                ready_flag=ready,
                memo=self.memo,
                retry_delay=self._retry_delay,
                ca_refresh_interval=self._ca_refresh_interval,
                watch_timeout=self._watch_timeout,
            )
        finally:
            watcher.cancel()
