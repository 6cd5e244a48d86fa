"""renewal.py: when to renew and why to re-issue, on a fixed clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from mtls_operator.rules import renewal, spec
from mtls_operator.rules.renewal import (
    JITTER_FRACTION,
    Decision,
    DesiredState,
    IssuedState,
    ReissueReason,
    jittered_renewal_time,
    reissue_decision,
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


# --- re-issue decisions ------------------------------------------------------------------------

SPIFFE = "spiffe://cluster.local/ns/shop/sa/payments"
CURRENT = IssuedState(
    spiffe_id=SPIFFE,
    serial="0a1b",
    not_before=T0,
    not_after=NOT_AFTER,
    renew_at=RENEW_AT,
    ca_fingerprint="sha256:old",
    spec_hash="hash1",
    dns_names=("payments",),
)
DESIRED = DesiredState(
    spiffe_id=SPIFFE,
    spec_hash="hash1",
    ca_fingerprint="sha256:old",
    trusted_ca_fingerprints=frozenset({"sha256:old"}),
)
FINE_NOW = T0 + H


def _current(**changes: object) -> IssuedState:
    return dataclasses.replace(CURRENT, **changes)  # type: ignore[arg-type]


def _desired(**changes: object) -> DesiredState:
    return dataclasses.replace(DESIRED, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("current", "desired", "now", "problems", "expected"),
    [
        pytest.param(CURRENT, DESIRED, FINE_NOW, (), None, id="fine"),
        pytest.param(CURRENT, _desired(bundle_current=False), FINE_NOW, (), None, id="stale-bundle-is-not-a-reissue"),
        pytest.param(
            CURRENT,
            _desired(trusted_ca_fingerprints=frozenset({"sha256:old", "sha256:new"})),
            FINE_NOW,
            (),
            None,
            id="new-ca-added-to-bundle-but-not-signing-yet",
        ),
        pytest.param(
            None,
            DESIRED,
            FINE_NOW,
            (),
            Decision(ReissueReason.NEW, "Issuing: no certificate yet"),
            id="new",
        ),
        pytest.param(
            CURRENT,
            DESIRED,
            FINE_NOW,
            ("Secret is missing tls.key", "ca.crt is stale"),
            Decision(ReissueReason.REPAIR, "Repairing: Secret is missing tls.key"),
            id="repair-first-problem",
        ),
        pytest.param(
            None,
            DESIRED,
            FINE_NOW,
            ("tls.crt is not a PEM certificate",),
            Decision(ReissueReason.REPAIR, "Repairing: tls.crt is not a PEM certificate"),
            id="repair-unreadable-secret",
        ),
        pytest.param(
            _current(spiffe_id="spiffe://cluster.local/ns/shop/sa/default"),
            DESIRED,
            FINE_NOW,
            (),
            Decision(
                ReissueReason.SPEC_CHANGE,
                f"Re-issuing: SPIFFE ID changed from spiffe://cluster.local/ns/shop/sa/default to {SPIFFE}",
            ),
            id="spiffe-id-changed",
        ),
        pytest.param(
            _current(spec_hash="hash0"),
            DESIRED,
            FINE_NOW,
            (),
            Decision(ReissueReason.SPEC_CHANGE, "Re-issuing: spec changed"),
            id="spec-changed",
        ),
        pytest.param(
            _current(ca_fingerprint="sha256:gone"),
            DESIRED,
            FINE_NOW,
            (),
            Decision(ReissueReason.CA_ROTATION, "Re-issuing: issuer no longer trusted (CA sha256:gone)"),
            id="issuer-untrusted",
        ),
        pytest.param(
            CURRENT,
            _desired(ca_fingerprint="sha256:new", trusted_ca_fingerprints=frozenset({"sha256:old", "sha256:new"})),
            FINE_NOW,
            (),
            Decision(ReissueReason.CA_ROTATION, "Re-issuing: CA rotated"),
            id="ca-rotated",
        ),
        pytest.param(
            CURRENT,
            DESIRED,
            NOT_AFTER,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expired at 2026-11-27T08:00:00Z"),
            id="expired-exactly",
        ),
        pytest.param(
            CURRENT,
            DESIRED,
            NOT_AFTER + H,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expired at 2026-11-27T08:00:00Z"),
            id="expired",
        ),
        pytest.param(
            CURRENT,
            DESIRED,
            RENEW_AT,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expires in 8h"),
            id="renewal-due-exactly",
        ),
        pytest.param(
            CURRENT,
            DESIRED,
            RENEW_AT + M,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expires in 7h59m"),
            id="renewal-due",
        ),
        pytest.param(CURRENT, DESIRED, RENEW_AT - S, (), None, id="one-second-before-renewal"),
        pytest.param(
            _current(renew_reason="manual"),
            DESIRED,
            RENEW_AT,
            (),
            Decision(ReissueReason.MANUAL, "Re-issuing: renewal requested (manual)"),
            id="manual-renewal-due",
        ),
        pytest.param(_current(renew_reason="manual"), DESIRED, RENEW_AT - S, (), None, id="manual-not-due-yet"),
        pytest.param(
            _current(renew_reason="someone"),
            DESIRED,
            RENEW_AT,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expires in 8h"),
            id="unknown-renew-reason-is-a-renewal",
        ),
        pytest.param(
            _current(renew_reason="manual", spec_hash="hash0"),
            DESIRED,
            RENEW_AT,
            (),
            Decision(ReissueReason.SPEC_CHANGE, "Re-issuing: spec changed"),
            id="spec-change-before-manual",
        ),
        pytest.param(
            _current(renew_reason="manual"),
            DESIRED,
            NOT_AFTER,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expired at 2026-11-27T08:00:00Z"),
            id="expired-before-manual",
        ),
        # Precedence: the first check that fires wins.
        pytest.param(
            _current(spiffe_id="spiffe://x/ns/a/sa/b", spec_hash="hash0"),
            DESIRED,
            NOT_AFTER,
            ("broken",),
            Decision(ReissueReason.REPAIR, "Repairing: broken"),
            id="problems-beat-everything",
        ),
        pytest.param(
            _current(spiffe_id="spiffe://x/ns/a/sa/b", spec_hash="hash0"),
            DESIRED,
            FINE_NOW,
            (),
            Decision(ReissueReason.SPEC_CHANGE, f"Re-issuing: SPIFFE ID changed from spiffe://x/ns/a/sa/b to {SPIFFE}"),
            id="spiffe-before-spec-hash",
        ),
        pytest.param(
            _current(spec_hash="hash0", ca_fingerprint="sha256:gone"),
            DESIRED,
            NOT_AFTER,
            (),
            Decision(ReissueReason.SPEC_CHANGE, "Re-issuing: spec changed"),
            id="spec-before-ca-and-expiry",
        ),
        pytest.param(
            _current(ca_fingerprint="sha256:gone"),
            _desired(ca_fingerprint="sha256:new", trusted_ca_fingerprints=frozenset({"sha256:new"})),
            FINE_NOW,
            (),
            Decision(ReissueReason.CA_ROTATION, "Re-issuing: issuer no longer trusted (CA sha256:gone)"),
            id="untrusted-before-rotated",
        ),
        pytest.param(
            CURRENT,
            _desired(ca_fingerprint="sha256:new", trusted_ca_fingerprints=frozenset({"sha256:old", "sha256:new"})),
            NOT_AFTER,
            (),
            Decision(ReissueReason.CA_ROTATION, "Re-issuing: CA rotated"),
            id="rotation-before-expiry",
        ),
    ],
)
def test_reissue_decision(
    current: IssuedState | None,
    desired: DesiredState,
    now: datetime,
    problems: tuple[str, ...],
    expected: Decision | None,
) -> None:
    assert reissue_decision(current, desired, now, problems=problems) == expected


def test_reasons_are_the_metric_label_values() -> None:
    assert [reason.value for reason in ReissueReason] == ["new", "renewal", "spec-change", "ca-rotation", "repair",
                                                           "manual"]
