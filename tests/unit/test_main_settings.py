"""kopf settings: what the operator watches, where it keeps its own bookkeeping, and its admission server."""

from __future__ import annotations

from datetime import UTC, datetime

from mtls_operator.config import Settings
from mtls_operator.handlers import AdmissionServer
from mtls_operator.main import operator_settings, serving_certificate

OFF = Settings(webhook_port=0)


def test_kopf_bookkeeping_uses_our_group() -> None:
    settings = operator_settings(OFF)
    assert settings.persistence.finalizer == "mtls.dev/cleanup"
    assert settings.scanning.disabled


def test_webhooks_on_serve_on_every_interface_with_our_context_and_manage_no_configuration() -> None:
    config = Settings(webhook_port=9443)
    serving = serving_certificate(config, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    assert serving is not None
    server = operator_settings(config, serving).admission.server
    assert isinstance(server, AdmissionServer)
    assert (server.addr, server.port, server.context) == ("0.0.0.0", 9443, serving.context)  # noqa: S104
    assert operator_settings(config, serving).admission.managed is None
    # kopf's start-up load of "its" certificate loads the one being served.
    assert server.build_certificate(["ignored"]) == serving.pem_pair()


def test_webhooks_off_listen_nowhere() -> None:
    assert serving_certificate(OFF, None) is None
    server = operator_settings(OFF).admission.server
    assert server is not None
    assert not isinstance(server, AdmissionServer)
