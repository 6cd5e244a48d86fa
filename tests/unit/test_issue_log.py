"""The audit trail of issued certificates (controller/issue_log.py): one line per pod alone, batches in a burst."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from mtls_operator.controller import issue_log
from mtls_operator.controller.issue_log import IssueLog

EXPIRES = datetime(2026, 12, 2, 21, 34, 12, tzinfo=UTC)
LOGGER = "mtls_operator.controller.reconciler"


def issue(log: IssueLog, pod: str, *, identity: str = "payments", message: str = "Issuing: first certificate",
          reason: str = "new") -> None:
    log.issued(message, namespace="shop", identity=identity, pod=pod, serial=f"5e4c{pod[-1]}",
               spiffe_id="spiffe://cluster.local/ns/shop/sa/payments", not_after=EXPIRES, reason=reason)


async def test_a_pod_alone_gets_its_own_line_with_its_fields_after_the_delay(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = IssueLog(logging.getLogger(LOGGER), delay=0.05)
    issue(log, "payments-0")
    assert caplog.records == []  # gathered for the delay
    await asyncio.sleep(0.1)
    [record] = caplog.records
    assert record.getMessage() == ("Issuing: first certificate for pod shop/payments-0: serial 5e4c0, "
                                   "spiffe://cluster.local/ns/shop/sa/payments, expires 2026-12-02T21:34:12+00:00")
    assert (record.mtls_identity, record.mtls_namespace, record.mtls_pod, record.mtls_reason) == (  # type: ignore[attr-defined]
        "payments", "shop", "payments-0", "new")


async def test_a_burst_is_logged_in_batches_per_identity_and_reason(caplog: pytest.LogCaptureFixture,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(issue_log, "BATCH", 3)
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = IssueLog(logging.getLogger(LOGGER), delay=60)
    for index in range(5):
        issue(log, f"payments-{index}")
    issue(log, "orders-0", identity="orders")
    issue(log, "payments-9", message="Renewing: certificate expires in 7h59m", reason="renewal")
    log.flush()  # what the runtime does when it stops: nothing waits for the delay
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        "Issuing: first certificate for 3 pods of identity shop/payments: "
        "payments-0 (serial 5e4c0, spiffe://cluster.local/ns/shop/sa/payments, expires 2026-12-02T21:34:12+00:00); "
        "payments-1 (serial 5e4c1, spiffe://cluster.local/ns/shop/sa/payments, expires 2026-12-02T21:34:12+00:00); "
        "payments-2 (serial 5e4c2, spiffe://cluster.local/ns/shop/sa/payments, expires 2026-12-02T21:34:12+00:00)")
    assert messages[1].startswith("Issuing: first certificate for 2 pods of identity shop/payments: payments-3 (")
    assert messages[2].startswith("Issuing: first certificate for pod shop/orders-0: serial 5e4c0")
    assert messages[3].startswith("Renewing: certificate expires in 7h59m for pod shop/payments-9: serial 5e4c9")
    assert not hasattr(caplog.records[0], "mtls_pod")  # a batch is about an identity, its pods are in the message
    assert caplog.records[0].mtls_reason == "new"  # type: ignore[attr-defined]
    log.flush()
    assert len(caplog.records) == 4  # nothing twice


def test_outside_an_event_loop_a_certificate_is_logged_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    issue(IssueLog(logging.getLogger(LOGGER)), "payments-0")
    assert len(caplog.records) == 1


async def test_a_batch_of_long_names_stays_under_the_line_size_runtimes_keep_whole(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = IssueLog(logging.getLogger(LOGGER), delay=60)
    # Names as long as Kubernetes allows: a bare pod's 253 characters, a service account's 253.
    spiffe_id = f"spiffe://{'t' * 200}.example/ns/{'n' * 63}/sa/{'s' * 253}"
    for index in range(issue_log.BATCH):
        log.issued("Issuing: first certificate", namespace="shop", identity="payments", pod=f"{'p' * 250}-{index:02d}",
                   serial="f" * 32, spiffe_id=spiffe_id, not_after=EXPIRES, reason="new")
    log.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert all(len(line.encode()) <= 13 * 1024 for line in lines), [len(line) for line in lines]  # JSON adds ~300
    assert sum(line.count(spiffe_id) for line in lines) == issue_log.BATCH  # every pod, once
