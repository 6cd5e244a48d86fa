"""The admission webhooks' own CA: its rotation rules (a table), its annotations, and that it stays
apart from the CA of pod certificates in both directions (real handshakes and path validation)."""

from __future__ import annotations

import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.x509.oid import NameOID

from mtls_operator.controller.webhook_tls import load_key_pair
from mtls_operator.errors import ChainError
from mtls_operator.models import KeySpec, Usage
from mtls_operator.pki import LeafRequest, certs_to_pem, create_self_signed_ca, issue_leaf, verify_leaf
from mtls_operator.pki.serving import create_webhook_ca, issue_serving_certificate
from mtls_operator.rules.admission import serving_dns_names
from mtls_operator.rules.webhook_ca import (
    WebhookCADecision,
    WebhookCAPhase,
    WebhookCAState,
    WebhookCAStep,
    WebhookCAView,
    read_webhook_ca_state,
    webhook_ca_annotations,
    webhook_ca_step,
)
from tests.unit.test_admission import _handshake

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SETTLE = timedelta(minutes=1)
NAMES = serving_dns_names("mtls-operator-webhook", "mtls-system", "cluster.local")

# A CA made 100 days before NOW for a year: 2/3 of its life is 243 days in, well after NOW.
FRESH = WebhookCAView(not_before=NOW - timedelta(days=100), not_after=NOW + timedelta(days=265), next_ready=False,
                      published=True, serving_moved=True)
IDLE = WebhookCAState(since=NOW - timedelta(days=100))
DISTRIBUTING = WebhookCAState(phase=WebhookCAPhase.DISTRIBUTING, since=NOW - timedelta(minutes=5))
REISSUING = WebhookCAState(phase=WebhookCAPhase.REISSUING, since=NOW - timedelta(minutes=5))
READY_NEXT = replace(FRESH, next_ready=True)

CASES: list[tuple[str, WebhookCAState, WebhookCAView, WebhookCAStep, str, timedelta]] = [
    ("idle: nothing due", IDLE, FRESH, WebhookCAStep.WAIT, "no rotation under way",
     timedelta(days=143, hours=8)),
    ("idle: asked by mtls.dev/rotate", replace(IDLE, rotate_requested=True), FRESH, WebhookCAStep.BEGIN,
     "rotation requested (mtls.dev/rotate)", timedelta(0)),
    ("idle: 2/3 of the lifetime", IDLE, replace(FRESH, not_before=NOW - timedelta(days=250),
                                                 not_after=NOW + timedelta(days=115)),
     WebhookCAStep.BEGIN, "the webhook CA reached 2/3 of its lifetime", timedelta(0)),
    ("distributing: the next CA lost", DISTRIBUTING, FRESH, WebhookCAStep.BEGIN,
     "the next webhook CA is missing or unusable", timedelta(0)),
    ("distributing: caBundle behind", DISTRIBUTING, replace(READY_NEXT, published=False), WebhookCAStep.WAIT,
     "the webhook configurations' caBundle still to receive the new CA", timedelta(0)),
    ("distributing: caBundle current, settle starts", DISTRIBUTING, READY_NEXT, WebhookCAStep.SETTLED,
     "every webhook configuration trusts the new CA; the API servers get 1m to load it", SETTLE),
    ("distributing: settling", replace(DISTRIBUTING, settled_at=NOW - timedelta(seconds=20)), READY_NEXT,
     WebhookCAStep.WAIT, "waiting for the API servers to load the new caBundle", timedelta(seconds=40)),
    ("distributing: settled", replace(DISTRIBUTING, settled_at=NOW - SETTLE), READY_NEXT, WebhookCAStep.SWITCH,
     "the API servers trust the new CA: it signs the serving certificates now", timedelta(0)),
    ("distributing: a rotate request waits its turn", replace(DISTRIBUTING, rotate_requested=True),
     replace(READY_NEXT, published=False), WebhookCAStep.WAIT, "caBundle still to receive", timedelta(0)),
    ("reissuing: caBundle reset by someone", REISSUING, replace(FRESH, published=False), WebhookCAStep.WAIT,
     "caBundle still to receive both CAs", timedelta(0)),
    ("reissuing: own certificate not moved", REISSUING, replace(FRESH, serving_moved=False), WebhookCAStep.WAIT,
     "this replica's serving certificate still to move", timedelta(0)),
    ("reissuing: other replicas still re-reading", replace(REISSUING, since=NOW - timedelta(seconds=45)), FRESH,
     WebhookCAStep.WAIT, "waiting for every replica", timedelta(seconds=15)),
    ("reissuing: switch time lost", replace(REISSUING, since=None), FRESH, WebhookCAStep.SETTLED,
     "when signing switched is not recorded", SETTLE),
    ("reissuing: every replica moved", REISSUING, FRESH, WebhookCAStep.RETIRE,
     "every replica serves a certificate of the new CA: the old one leaves the caBundle", timedelta(0)),
]


@pytest.mark.parametrize(("state", "view", "step", "message", "wait"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_webhook_ca_step(state: WebhookCAState, view: WebhookCAView, step: WebhookCAStep, message: str,
                         wait: timedelta) -> None:
    decision = webhook_ca_step(state, view, NOW, SETTLE)
    assert decision.step is step
    assert message in decision.message
    assert decision.wait == wait


def test_idle_waits_exactly_until_two_thirds_of_the_lifetime() -> None:
    decision = webhook_ca_step(IDLE, FRESH, NOW, SETTLE)
    due = FRESH.not_before + (FRESH.not_after - FRESH.not_before) * (2 / 3)
    assert decision == WebhookCADecision(WebhookCAStep.WAIT, "no rotation under way", due - NOW)
    assert webhook_ca_step(IDLE, FRESH, due, SETTLE).step is WebhookCAStep.BEGIN


def test_a_whole_rotation_never_drops_trust_before_every_replica_moved() -> None:
    """Walk the phases as the leader does, with the caBundle lagging one step behind each write."""
    state, now = replace(IDLE, rotate_requested=True), NOW
    steps = []
    for published, moved in [(True, True), (False, True), (True, True), (True, True), (True, True),
                             (True, False), (True, True), (True, True)]:
        view = replace(FRESH, next_ready=state.phase is WebhookCAPhase.DISTRIBUTING, published=published,
                       serving_moved=moved)
        decision = webhook_ca_step(state, view, now, SETTLE)
        steps.append(decision.step)
        if decision.step is WebhookCAStep.BEGIN:
            state = WebhookCAState(phase=WebhookCAPhase.DISTRIBUTING, since=now)
        elif decision.step is WebhookCAStep.SETTLED:
            state = replace(state, settled_at=now)
        elif decision.step is WebhookCAStep.SWITCH:
            state = WebhookCAState(phase=WebhookCAPhase.REISSUING, since=now)
        elif decision.step is WebhookCAStep.RETIRE:
            state = WebhookCAState(phase=WebhookCAPhase.IDLE, since=now)
        now += decision.wait or timedelta(seconds=1)
    assert steps == [WebhookCAStep.BEGIN, WebhookCAStep.WAIT, WebhookCAStep.SETTLED, WebhookCAStep.SWITCH,
                     WebhookCAStep.WAIT, WebhookCAStep.WAIT, WebhookCAStep.RETIRE, WebhookCAStep.WAIT]
    assert state.phase is WebhookCAPhase.IDLE


@pytest.mark.parametrize("state", [
    WebhookCAState(),
    WebhookCAState(phase=WebhookCAPhase.DISTRIBUTING, since=NOW, settled_at=NOW + SETTLE),
    WebhookCAState(phase=WebhookCAPhase.REISSUING, since=NOW, rotate_requested=True),
], ids=["idle", "distributing", "reissuing"])
def test_annotations_round_trip(state: WebhookCAState) -> None:
    written = {key: value for key, value in webhook_ca_annotations(state).items() if value is not None}
    assert read_webhook_ca_state(written) == state


def test_unreadable_annotations_read_as_idle() -> None:
    state = read_webhook_ca_state({"mtls.dev/rotation-phase": "Retiring", "mtls.dev/rotation-phase-since": "soon",
                                   "mtls.dev/rotate": "please"})
    assert state == WebhookCAState()


# Apart from the CA of pod certificates -----------------------------------------------------------------------


def test_each_webhook_ca_has_a_subject_of_its_own() -> None:
    first, second = create_webhook_ca(NOW, timedelta(days=365)), create_webhook_ca(NOW, timedelta(days=365))
    names = [ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for ca in (first, second)]
    assert names[0] != names[1]
    assert all(str(name).startswith("mtls-operator webhook CA 2026-11-27 ") for name in names)
    assert first.cert.subject != create_self_signed_ca(NOW).cert.subject


def test_a_pod_certificate_never_verifies_against_the_webhook_ca_nor_the_reverse() -> None:
    pod_ca, webhook_ca = create_self_signed_ca(NOW), create_webhook_ca(NOW, timedelta(days=365))
    # A pod certificate even naming the webhook Service (were a policy ever to allow it).
    pod_leaf = issue_leaf(pod_ca, LeafRequest("spiffe://cluster.local/ns/shop/sa/web", (NAMES[0],),
                                              frozenset(Usage), KeySpec(), timedelta(hours=1)), NOW)
    serving = issue_serving_certificate(webhook_ca, NAMES, timedelta(hours=1), NOW)
    verify_leaf(pod_leaf.cert, (), pod_ca.trust, NOW)
    verify_leaf(serving.cert, (), webhook_ca.trust, NOW)
    with pytest.raises(ChainError):
        verify_leaf(pod_leaf.cert, (), webhook_ca.trust, NOW)
    with pytest.raises(ChainError):
        verify_leaf(serving.cert, (), pod_ca.trust, NOW)


def test_the_api_servers_handshake_refuses_a_pod_certificate_for_the_webhook_name() -> None:
    now = datetime.now(UTC)  # the handshake checks validity on the real clock
    pod_ca, webhook_ca = create_self_signed_ca(now), create_webhook_ca(now, timedelta(days=365))
    pod_leaf = issue_leaf(pod_ca, LeafRequest("spiffe://cluster.local/ns/shop/sa/web", (NAMES[0],),
                                              frozenset(Usage), KeySpec(), timedelta(hours=1)), now)
    # The API server's client: the caBundle (the webhook CA's bundle), the Service's name.
    api_server = ssl.create_default_context(cadata=certs_to_pem(webhook_ca.trust).decode())
    impostor = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_key_pair(impostor, pod_leaf)
    assert _handshake(impostor, api_server, NAMES[0]) == "CERTIFICATE_VERIFY_FAILED"
    operator = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_key_pair(operator, issue_serving_certificate(webhook_ca, NAMES, timedelta(hours=1), now))
    assert _handshake(operator, api_server, NAMES[0]) is None
