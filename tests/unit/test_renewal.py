"""renewal.py: when to renew, on a fixed clock (why to re-issue: test_reissue.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mtls_operator.rules import renewal, spec
from mtls_operator.rules.renewal import (
    JITTER_FRACTION,
    ReissueReason,
    jittered_renewal_time,
    renewal_time,
)

T0 = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)

# --- renewal time (cert-manager's RenewalTime table) -------------------------------------------


@pytest.mark.parametrize(
    ("not_before", "not_after", "renew_before", "expected"),
    [
        pytest.param(T0, T0 + 24 * H, None, T0 + 16 * H, id="default-a-third"),
        pytest.param(T0, T0 + 24 * H, 8 * H, T0 + 16 * H, id="explicit-8h"),
        pytest.param(T0, T0 + 24 * H, H, T0 + 23 * H, id="explicit-1h"),
        pytest.param(T0, T0 + 24 * H, timedelta(0), T0 + 16 * H, id="zero-falls-back"),
        pytest.param(T0, T0 + 24 * H, -H, T0 + 16 * H, id="negative-falls-back"),
        pytest.param(T0, T0 + 24 * H, 24 * H, T0 + 16 * H, id="equal-to-lifetime-falls-back"),
        pytest.param(T0, T0 + 24 * H, 25 * H, T0 + 16 * H, id="longer-than-lifetime-falls-back"),
        pytest.param(T0, T0 + 24 * H, 24 * H - S, T0 + S, id="just-below-lifetime"),
        pytest.param(T0, T0 + H + S, None, T0 + 2400 * S, id="third-truncated-to-seconds"),
        pytest.param(
            T0, T0 + 24 * H + timedelta(microseconds=999_999), H, T0 + 23 * H, id="fractional-not-after-truncated"
        ),
        pytest.param(
            T0 - 5 * M, T0 + 24 * H, None, T0 + 24 * H - timedelta(seconds=(24 * 3600 + 300) // 3), id="backdated"
        ),
    ],
)
def test_renewal_time(
    not_before: datetime, not_after: datetime, renew_before: timedelta | None, expected: datetime
) -> None:
    got = renewal_time(not_before, not_after, renew_before)
    assert got == expected
    assert got.microsecond == 0


def test_default_renew_before_is_shared_with_spec() -> None:
    assert renewal.default_renew_before is spec.default_renew_before
    assert renewal.default_renew_before(24 * H) == 8 * H


# --- jitter ------------------------------------------------------------------------------------

RENEW_AT = T0 + 16 * H
NOT_AFTER = T0 + 24 * H  # an 8h renewal window: jitter moves up to 48 minutes earlier


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        pytest.param(0.0, RENEW_AT, id="none"),
        pytest.param(0.5, RENEW_AT - 24 * M, id="half"),
        pytest.param(0.25, RENEW_AT - 12 * M, id="quarter"),
        pytest.param(0.999999, RENEW_AT - 48 * M, id="almost-full-truncated-to-seconds"),
        pytest.param(1 / 3, RENEW_AT - 16 * M, id="third"),
    ],
)
def test_jittered_renewal_time(jitter: float, expected: datetime) -> None:
    got = jittered_renewal_time(RENEW_AT, NOT_AFTER, jitter)
    assert got == expected
    assert got.microsecond == 0


@pytest.mark.parametrize("jitter", [i / 97 for i in range(97)])
def test_jitter_stays_within_its_bound(jitter: float) -> None:
    got = jittered_renewal_time(RENEW_AT, NOT_AFTER, jitter)
    window = NOT_AFTER - RENEW_AT
    assert RENEW_AT - window * JITTER_FRACTION - S <= got <= RENEW_AT


@pytest.mark.parametrize(
    "renew_at",
    [
        pytest.param(NOT_AFTER, id="at-expiry"),
        pytest.param(NOT_AFTER + H, id="after-expiry"),
        pytest.param(NOT_AFTER + timedelta(microseconds=5), id="after-expiry-fractional"),
    ],
)
def test_jitter_without_a_window_keeps_renew_at(renew_at: datetime) -> None:
    assert jittered_renewal_time(renew_at, NOT_AFTER, 0.9) == renew_at.replace(microsecond=0)


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 1.5, float("nan")])
def test_jitter_outside_unit_interval_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match=r"jitter must be in \[0, 1\)"):
        jittered_renewal_time(RENEW_AT, NOT_AFTER, jitter)


def test_reasons_are_the_metric_label_values() -> None:
    assert [reason.value for reason in ReissueReason] == ["new", "renewal", "spec-change", "ca-rotation", "repair",
                                                           "manual"]
