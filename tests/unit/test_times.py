"""times.py: the one way the operator writes and reads a timestamp, always in UTC."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from mtls_operator.k8s.resources import Cluster
from mtls_operator.times import format_micro_time, format_time, parse_time

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "mtls_operator"
T0 = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(datetime(2026, 11, 27, 9, 30, 15, 999_999, tzinfo=UTC), "2026-11-27T09:30:15Z", id="truncated"),
        pytest.param(datetime(2026, 11, 27, 10, 0, tzinfo=PLUS_TWO), "2026-11-27T08:00:00Z", id="to-utc"),
    ],
)
def test_format_time_is_utc_rfc3339_whole_seconds(moment: datetime, expected: str) -> None:
    assert format_time(moment) == expected
    assert parse_time(expected) == moment.replace(microsecond=0)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(T0, "2026-11-27T08:00:00.000000Z", id="whole-second"),
        pytest.param(T0 + timedelta(microseconds=123456), "2026-11-27T08:00:00.123456Z", id="micro"),
        pytest.param(datetime(2026, 11, 27, 9, 0, tzinfo=timezone(timedelta(hours=1))),
                     "2026-11-27T08:00:00.000000Z", id="converted-to-utc"),
    ],
)
def test_format_micro_time(moment: datetime, text: str) -> None:
    assert format_micro_time(moment) == text
    assert parse_time(text) == moment


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-11-27T08:00:00.000000Z", T0, id="micro-time"),
        pytest.param("2026-11-27T08:00:00Z", T0, id="rfc3339-seconds"),
        pytest.param("2026-11-27T09:00:00+01:00", T0, id="offset"),
        pytest.param("2026-11-27T08:00:00", T0, id="naive-is-utc"),
        pytest.param("2026-11-27T08:00:00.123456789Z", T0 + timedelta(microseconds=123456), id="nanoseconds"),
        pytest.param("yesterday", None, id="garbage"),
        pytest.param("2026-13-01T00:00:00Z", None, id="no-such-month"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
        pytest.param(1700000000, None, id="not-a-string"),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is UTC


class _RecordingAPI:
    def __init__(self) -> None:
        self.bodies: list[Any] = []

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        self.bodies.append(body)
        return body


async def test_event_timestamps_are_utc_whatever_the_clocks_offset() -> None:
    # Timestamps are read back after a restart: a clock with an offset must still write UTC.
    api = _RecordingAPI()
    identity = {"metadata": {"name": "payments", "namespace": "shop", "uid": "u"}}
    await Cluster(api).post_event(identity, "mtls.dev/v1alpha1", "MTLSIdentity", type_="Normal", reason="Issued",  # type: ignore[arg-type]
                                  message="m", now=datetime(2026, 11, 27, 10, 0, tzinfo=PLUS_TWO))
    (body,) = api.bodies
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-27T08:00:00Z"


def _formats_a_time(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"strftime", "strptime", "fromisoformat"}]


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "times.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_times_py_formats_or_parses_timestamps(path: Path) -> None:
    assert _formats_a_time(path) == [], "use mtls_operator.times (format_time, parse_time)"
