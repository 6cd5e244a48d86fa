"""kopf settings: what the operator watches, and where it keeps its own bookkeeping."""

from __future__ import annotations

from mtls_operator.main import operator_settings


def test_pod_watch_carries_a_server_side_label_selector() -> None:
    selectors = operator_settings().watching.label_selectors
    assert selectors["pods"] == "mtls.dev/inject=true"


def test_kopf_bookkeeping_uses_our_group() -> None:
    settings = operator_settings()
    assert settings.persistence.finalizer == "mtls.dev/cleanup"
    assert settings.scanning.disabled
