"""The interop matrix's rules (tests/interop/matrix.py): expectations, judging, printing.

The handshakes themselves run with ``make interop``; these cases fix how their reports are read.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.interop import matrix as mx
from tests.interop.run import scenarios

SPIFFE = mx.Stack("go-spiffe", authorizes_ids=True, checks_usage=False)
PLAIN = mx.Stack("plain")
NO_ED = mx.Stack("no-ed", unsupported={("Ed25519", mx.CLIENT): "no Ed25519 client certificates"})


def scenario(refused_by: str | None = None, check: str | None = None, key_type: str | None = None) -> mx.Scenario:
    side = mx.Side("pod-0", "spiffe://cluster.local/ns/x/sa/y")
    return mx.Scenario("s", "group", "column", side, side, "y.x.svc", refused_by, check, key_type)


@pytest.mark.parametrize(
    ("case", "server", "client", "outcome", "refused_by"),
    [
        (scenario(key_type="ECDSA-256"), PLAIN, PLAIN, mx.OK, None),
        (scenario(key_type="Ed25519"), PLAIN, NO_ED, mx.UNSUPPORTED, None),
        # Only the client role lacks Ed25519: as a server the stack is judged normally.
        (scenario(key_type="Ed25519"), NO_ED, PLAIN, mx.OK, None),
        (scenario(mx.SERVER, mx.CHECK_CHAIN), PLAIN, PLAIN, mx.REFUSED, mx.SERVER),
        (scenario(mx.CLIENT, mx.CHECK_EXPIRY), PLAIN, SPIFFE, mx.REFUSED, mx.CLIENT),
        (scenario(mx.SERVER, mx.CHECK_ID), PLAIN, SPIFFE, mx.NOT_APPLICABLE, None),
        (scenario(mx.SERVER, mx.CHECK_ID), SPIFFE, PLAIN, mx.REFUSED, mx.SERVER),
        (scenario(mx.CLIENT, mx.CHECK_USAGE), PLAIN, SPIFFE, mx.ACCEPTED_KNOWN, None),
        (scenario(mx.CLIENT, mx.CHECK_USAGE), SPIFFE, PLAIN, mx.REFUSED, mx.CLIENT),
    ],
)
def test_expectation(case: mx.Scenario, server: mx.Stack, client: mx.Stack, outcome: str,
                     refused_by: str | None) -> None:
    expected = mx.expectation(case, server, client)
    assert (expected.outcome, expected.refused_by) == (outcome, refused_by)
    assert bool(expected.why) == (outcome in (mx.UNSUPPORTED, mx.NOT_APPLICABLE, mx.ACCEPTED_KNOWN))


OK_LINE = {"id": "s", "ok": True}


def failed(error: str) -> dict[str, Any]:
    return {"id": "s", "ok": False, "error": error}


@pytest.mark.parametrize(
    ("server_result", "client_result", "outcome", "refused_by"),
    [
        (OK_LINE, OK_LINE, mx.OK, None),
        # The server's verifier refused; the client only saw its alert.
        (failed("x509: certificate signed by unknown authority"), failed("remote error: tls: bad certificate"),
         mx.REFUSED, mx.SERVER),
        (failed("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
         failed("received fatal alert: UnknownCA"), mx.REFUSED, mx.SERVER),
        # TLS 1.3: the client's handshake finished; the server's refusal shows on the client's read.
        (failed("invalid peer certificate: UnknownIssuer"), failed("peer closed connection"), mx.REFUSED, mx.SERVER),
        (failed("local error: tls: bad record MAC"), failed("PKIX path building failed"), mx.REFUSED, mx.CLIENT),
        (OK_LINE, failed("verify error:num=10:certificate has expired"), mx.REFUSED, mx.CLIENT),
        # Both sides blame themselves: nobody can be named.
        (failed("certificate verify failed"), failed("certificate verify failed"), mx.REFUSED, None),
        (None, OK_LINE, mx.FAILED, None),
    ],
)
def test_judge(server_result: dict[str, Any] | None, client_result: dict[str, Any] | None, outcome: str,
               refused_by: str | None) -> None:
    judged = mx.judge(server_result, client_result)
    assert (judged.outcome, judged.refused_by) == (outcome, refused_by)


@pytest.mark.parametrize(
    ("case", "server", "client", "server_result", "client_result", "label"),
    [
        (scenario(key_type="RSA-4096"), PLAIN, PLAIN, OK_LINE, OK_LINE, mx.OK),
        (scenario(mx.SERVER, mx.CHECK_CHAIN), PLAIN, PLAIN, failed("unknown ca"), failed("alert unknown ca"),
         mx.REFUSED),
        # Refused, but by the wrong side: a failure of the suite, not a pass.
        (scenario(mx.SERVER, mx.CHECK_CHAIN), PLAIN, PLAIN, failed("remote error"), failed("verify failed"),
         mx.FAILED),
        # A refusal that should have happened and did not.
        (scenario(mx.SERVER, mx.CHECK_CHAIN), PLAIN, PLAIN, OK_LINE, OK_LINE, mx.FAILED),
        (scenario(key_type="Ed25519"), PLAIN, NO_ED, failed("remote error"), failed("no signature scheme"),
         mx.UNSUPPORTED),
        # A key type marked unsupported that works: the table is stale, the suite says so.
        (scenario(key_type="Ed25519"), PLAIN, NO_ED, OK_LINE, OK_LINE, mx.FAILED),
        (scenario(mx.SERVER, mx.CHECK_ID), PLAIN, PLAIN, OK_LINE, OK_LINE, mx.NOT_APPLICABLE),
        (scenario(mx.SERVER, mx.CHECK_USAGE), SPIFFE, PLAIN, OK_LINE, OK_LINE, mx.ACCEPTED_KNOWN),
    ],
)
def test_cell_label(case: mx.Scenario, server: mx.Stack, client: mx.Stack, server_result: dict[str, Any],
                    client_result: dict[str, Any], label: str) -> None:
    assert mx.cell(case, server, client, server_result, client_result).label == label


def test_render_lists_every_pair_and_failures() -> None:
    side = mx.Side("pod-0", "spiffe://cluster.local/ns/x/sa/y")
    chosen = [scenario(key_type="ECDSA-256"),
              mx.Scenario("t", "group", "other", side, side, "n", mx.SERVER, mx.CHECK_CHAIN, note="a note")]
    cells = [mx.cell(chosen[0], a, b, OK_LINE, OK_LINE) for a in (PLAIN, SPIFFE) for b in (PLAIN, SPIFFE)]
    cells.append(mx.cell(chosen[1], PLAIN, PLAIN, OK_LINE, OK_LINE))
    text = mx.render(chosen, ["plain", "go-spiffe"], cells)
    assert "| server → client | column | other |" in text
    assert "| plain → plain | ok | FAIL |" in text
    assert "| go-spiffe → plain | ok |  |" in text
    assert "- other: a note" in text
    assert "Failures:" in text
    assert "group / other, plain → plain: expected refused by the server, got ok" in text


def test_scenarios_are_unique_and_cover_the_issue() -> None:
    chosen = scenarios()
    assert len({s.id for s in chosen}) == len(chosen)
    assert {s.key_type for s in chosen if s.key_type} == {"ECDSA-256", "ECDSA-384", "Ed25519", "RSA-2048",
                                                          "RSA-3072", "RSA-4096"}
    refusals = {(s.check, s.refused_by) for s in chosen if s.group == "Refusals"}
    assert refusals == {(check, side) for check in (mx.CHECK_CHAIN, mx.CHECK_EXPIRY, mx.CHECK_USAGE, mx.CHECK_ID)
                        for side in (mx.SERVER, mx.CLIENT)}
    rotation = [s for s in chosen if s.group.startswith("CA rotation")]
    assert len(rotation) == 20
    assert sum(s.refused_by is None for s in rotation) == 12
