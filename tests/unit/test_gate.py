"""gate.py: one writer per Secret, the first-issue budget, claims, clashes, deleted Secrets."""

from __future__ import annotations

from mtls_operator.controller.gate import IssuanceGate

SLOT = ("shop", "web-web-0")
KEY = ("shop", "web")


def test_a_pass_and_a_first_issue_never_write_one_secret_together() -> None:
    gate = IssuanceGate()
    gate.start_first(SLOT)
    assert not gate.hold(SLOT)
    gate.end_first(SLOT)
    assert gate.hold(SLOT)
    assert not gate.may_start_first(SLOT)
    gate.release(SLOT)
    assert gate.may_start_first(SLOT)


def test_first_issues_are_few_at_a_time() -> None:
    gate = IssuanceGate(first_issue_limit=2)
    gate.start_first(("shop", "a"))
    assert gate.first_issue_room()
    gate.start_first(("shop", "b"))
    assert not gate.may_start_first(("shop", "c"))
    assert not gate.first_issue_room()  # a new pod goes to the pass without a first issue to try
    gate.end_first(("shop", "a"))
    assert gate.may_start_first(("shop", "c"))
    assert gate.first_issue_room()


def test_a_first_issue_is_claimed_once_and_reported_once() -> None:
    gate = IssuanceGate()
    gate.first_issued(KEY, SLOT, "uid-1", "web-0")
    gate.first_issued(KEY, ("shop", "web-web-1"), "uid-2", "web-1")
    assert gate.take_claim(SLOT) == "uid-1"
    assert gate.take_claim(SLOT) is None
    assert gate.take_first_issues(KEY) == (2, "pod web-0: Issuing: no certificate yet")
    assert gate.take_first_issues(KEY) is None


def test_a_taken_name_stops_first_issues_until_it_is_free() -> None:
    gate = IssuanceGate()
    gate.clash(SLOT)
    assert gate.clashed(SLOT)
    assert not gate.may_start_first(SLOT)
    gate.clear_clash(SLOT)
    assert gate.may_start_first(SLOT)


def test_a_deleted_secret_is_remembered_once() -> None:
    gate = IssuanceGate()
    gate.vanished(SLOT)
    assert gate.take_vanished(SLOT)
    assert not gate.take_vanished(SLOT)


def test_forget_drops_what_an_identity_had_to_report() -> None:
    gate = IssuanceGate()
    gate.first_issued(KEY, SLOT, "uid-1", "web-0")
    gate.forget(KEY)
    assert gate.take_first_issues(KEY) is None
