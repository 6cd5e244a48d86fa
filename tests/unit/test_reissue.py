"""reissue.py: the re-issue chain, one table of inputs and the first reason each gives."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from mtls_operator.rules.reissue import CHAIN, ReissueInput, reissue_decision, renewal_batched
from mtls_operator.rules.renewal import Decision, DesiredState, IssuedState, ReissueReason

T0 = datetime(2026, 11, 26, 8, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
RENEW_AT = T0 + 16 * H
NOT_AFTER = T0 + 24 * H
POD_UID = "pod-uid-1"

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
        pytest.param(
            CURRENT,
            DESIRED,
            RENEW_AT - S,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expires in 8h1s (due within the batch window)"),
            id="one-second-before-renewal-is-batched",
        ),
        pytest.param(CURRENT, DESIRED, RENEW_AT - 5 * M - S, (), None, id="before-the-batch-window"),
        pytest.param(
            _current(renew_reason="manual"),
            DESIRED,
            RENEW_AT,
            (),
            Decision(ReissueReason.MANUAL, "Re-issuing: renewal requested (manual)"),
            id="manual-renewal-due",
        ),
        pytest.param(_current(renew_reason="manual"), DESIRED, RENEW_AT - 5 * M - S, (), None,
                     id="manual-not-due-yet"),
        pytest.param(
            _current(renew_reason="manual"),
            DESIRED,
            RENEW_AT - S,
            (),
            Decision(ReissueReason.RENEWAL, "Renewing: certificate expires in 8h1s (due within the batch window)"),
            id="manual-not-due-yet-but-batched-is-a-renewal",
        ),
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
    given = ReissueInput(desired, now, pod_uid=POD_UID, secret_exists=current is not None or bool(problems),
                         state=current, problems=problems, owner_pod_uid=POD_UID)
    assert reissue_decision(given) == expected



# --- the repair checks, and their order before everything else ---------------------------------

def _given(**changes: object) -> ReissueInput:
    base = ReissueInput(DESIRED, FINE_NOW, pod_uid=POD_UID, secret_exists=True, state=CURRENT, owner_pod_uid=POD_UID)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(_given(), None, id="fine"),
        pytest.param(
            _given(state=None, problems=("Secret annotations are missing or unreadable",)),
            Decision(ReissueReason.REPAIR, "Repairing: Secret annotations are missing or unreadable"),
            id="unreadable",
        ),
        pytest.param(
            _given(chain_problem="tls.crt does not chain to the trust bundle: unknown issuer",
                   state=_current(spec_hash="hash0")),
            Decision(ReissueReason.REPAIR, "Repairing: tls.crt does not chain to the trust bundle: unknown issuer"),
            id="chain-problem-before-spec-change",
        ),
        pytest.param(
            _given(secret_exists=False, state=None, owner_pod_uid=None, vanished=True),
            Decision(ReissueReason.REPAIR, "Repairing: the Secret was deleted"),
            id="deleted",
        ),
        pytest.param(
            _given(secret_exists=False, state=None, owner_pod_uid=None),
            Decision(ReissueReason.NEW, "Issuing: no certificate yet"),
            id="new-pod",
        ),
        pytest.param(
            _given(secret_exists=True, vanished=True),
            None,
            id="vanished-but-there-again-is-fine",
        ),
        pytest.param(
            _given(owner_pod_uid="an-earlier-pod", state=_current(spec_hash="hash0")),
            Decision(ReissueReason.NEW, "Issuing: the pod was re-created"),
            id="pod-recreated-before-spec-change",
        ),
        pytest.param(
            _given(owner_pod_uid="an-earlier-pod", problems=("tls.key does not match the certificate in tls.crt",)),
            Decision(ReissueReason.NEW, "Issuing: the pod was re-created"),
            id="pod-recreated-before-damage",
        ),
        pytest.param(
            _given(problems=("tls.key does not match the certificate in tls.crt",), state=_current(spec_hash="x")),
            Decision(ReissueReason.REPAIR, "Repairing: tls.key does not match the certificate in tls.crt"),
            id="damage-before-spec-change",
        ),
    ],
)
def test_repair_checks(given: ReissueInput, expected: Decision | None) -> None:
    assert reissue_decision(given) == expected


@pytest.mark.parametrize(
    ("now", "not_before", "expected"),
    [
        pytest.param(RENEW_AT - 4 * M, T0, "Renewing: certificate expires in 8h4m (due within the batch window)",
                     id="within-horizon"),
        pytest.param(RENEW_AT - 6 * M, T0, None, id="outside-horizon"),
        pytest.param(RENEW_AT - 4 * M, RENEW_AT - 9 * M, None, id="younger-than-the-renewal-gap"),
        pytest.param(RENEW_AT - 4 * M, None, "Renewing: certificate expires in 8h4m (due within the batch window)",
                     id="no-not-before-known"),
    ],
)
def test_renewal_batched(now: datetime, not_before: datetime | None, expected: str | None) -> None:
    decision = renewal_batched(_given(now=now, state=_current(not_before=not_before)))
    assert (decision.message if decision else None) == expected


def test_batching_never_undoes_jitter_of_short_certificates() -> None:
    # 1h certificate, renewal window 20 minutes: jitter spreads over 2 minutes, the horizon is 1 minute.
    short = _current(not_before=T0, not_after=T0 + H, renew_at=T0 + 40 * M)
    assert renewal_batched(_given(now=T0 + 38 * M, state=short)) is None
    assert renewal_batched(_given(now=T0 + 39 * M, state=short)) is not None


def test_the_chain_is_repairs_first_then_changes_then_time() -> None:
    names = [check.__name__ for check in CHAIN]
    assert names == [
        "secret_unreadable", "chain_broken", "secret_deleted", "pod_recreated", "secret_damaged", "no_certificate",
        "spiffe_id_changed", "spec_changed", "issuer_untrusted", "ca_rotated", "expired", "renewal_due",
        "renewal_batched",
    ]
