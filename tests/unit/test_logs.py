"""Log formats: JSON lines with the identity/namespace/pod/reason keys, text for people; PEM never passes."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys

import pytest

from mtls_operator.observability.logs import JSONFormatter, TextFormatter, configure_logging, fields, redact

KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


def record(message: str, *args: object, level: int = logging.INFO, name: str = "mtls_operator.x",
           **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, level, __file__, 1, message, args, None)
    made.created = 1_795_766_400.25  # 2026-11-27T08:00:00.250Z
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_line_has_the_keys_of_our_fields() -> None:
    line = JSONFormatter().format(record("issued for pod %s", "payments-0",
                                         **fields(identity="payments", namespace="shop", pod="payments-0",
                                                  reason="renewal")))
    assert json.loads(line) == {
        "time": "2026-11-27T08:00:00.250000Z", "level": "INFO", "logger": "mtls_operator.x",
        "message": "issued for pod payments-0", "identity": "payments", "namespace": "shop", "pod": "payments-0",
        "reason": "renewal"}
    assert "\n" not in line


def test_json_line_without_fields_has_only_the_basics() -> None:
    assert set(json.loads(JSONFormatter().format(record("started")))) == {"time", "level", "logger", "message"}


@pytest.mark.parametrize(
    ("kind", "key"),
    [("MTLSIdentity", "identity"), ("Pod", "pod")],
)
def test_json_line_names_the_object_kopf_logs_about(kind: str, key: str) -> None:
    ref = {"kind": kind, "name": "payments-0", "namespace": "shop", "apiVersion": "v1", "uid": "u"}
    line = json.loads(JSONFormatter().format(record("Handler 'x' succeeded.", name="kopf.objects", k8s_ref=ref)))
    assert (line[key], line["namespace"]) == ("payments-0", "shop")


def test_json_line_carries_an_exception_without_pem() -> None:
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        made = record("failed", level=logging.ERROR)
        made.exc_info = sys.exc_info()
    line = json.loads(JSONFormatter().format(made))
    assert "ValueError: bad key [PEM redacted]" in line["error"]
    assert "BEGIN" not in line["error"]


@pytest.mark.parametrize(
    ("text", "rest_kept"),
    [
        (KEY, True),
        (KEY.replace("PRIVATE KEY", "EC PRIVATE KEY"), True),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", True),
        (KEY[:60], False),  # cut short: everything after it goes too
        (base64.b64encode(KEY.encode()).decode(), True),  # as a Secret's data holds it
    ],
    ids=["pkcs8", "sec1", "certificate", "truncated", "base64"],
)
@pytest.mark.parametrize("formatter", [JSONFormatter(), TextFormatter()], ids=["json", "text"])
def test_no_pem_passes_either_format(formatter: logging.Formatter, text: str, rest_kept: bool) -> None:
    out = formatter.format(record("Secret data: %s (end)", text))
    assert "BEGIN" not in out
    assert "LS0tLS1CRUdJTi" not in out
    assert "MIGHAgEAMBMGByqGSM49" not in out
    assert "[PEM redacted]" in out
    assert ("(end)" in out) is rest_kept


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "issued for pod shop/payments-0: serial 0a1b, sha256:ab12"
    assert redact(text) == text


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_configure_logging_installs_one_root_handler(log_format: str) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        configure_logging(log_format, stream=buffer)
        logging.getLogger("mtls_operator.test").info("hello %s", "world", extra=fields(namespace="shop"))
        logging.getLogger("mtls_operator.test").debug("not at INFO")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    if log_format == "json":
        assert json.loads(lines[0])["namespace"] == "shop"
    else:
        assert lines[0].endswith(" INFO mtls_operator.test: hello world")


def test_configure_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="text, json"):
        configure_logging("logfmt")
