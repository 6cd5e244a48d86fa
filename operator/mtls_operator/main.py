"""Wiring: settings and credentials in, a running kopf operator out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import kopf
from kubernetes import client as k8s_client

from mtls_operator import constants as c
from mtls_operator.config import Settings
from mtls_operator.handlers import registry


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Watch only opted-in pods, server-side: the operator's cost must not grow with other pods.
    settings.watching.label_selectors["pods"] = f"{c.INJECT_LABEL}={c.INJECT_VALUE}"
    settings.persistence.finalizer = f"{c.GROUP}/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # We know our resources; no need to watch CRDs and namespaces cluster-wide.
    settings.scanning.disabled = True
    return settings


async def run_operator(
    settings: Settings,
    configuration: k8s_client.Configuration,
    *,
    clock: Callable[[], datetime] | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    memo: kopf.Memo | None = None,
    retry_delay: float = 15.0,
    ca_refresh_interval: float = 30.0,
) -> None:
    """Run the operator until ``stop_flag`` is set (or a signal arrives, when it is None).

    ``memo`` gives tests a handle on the running operator (``memo["runtime"]``); ``retry_delay``
    (a clash or a missing CA) and ``ca_refresh_interval`` let them run in seconds, not minutes.
    """
    memo = memo if memo is not None else kopf.Memo()
    memo.update(
        settings=settings,
        kube_configuration=configuration,
        clock=clock,
        retry_delay=retry_delay,
        ca_refresh_interval=ca_refresh_interval,
    )
    await kopf.operator(
        registry=registry,
        settings=operator_settings(),
        clusterwide=True,
        standalone=True,
        memo=memo,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
