"""The interop matrix as data: scenarios, what each pair of stacks should do with them, how a
handshake's two sides are judged, and the printed tables. Pure: no processes, no files.

A scenario names a server side and a client side (which certificate, which bundle, which SPIFFE
ID it demands of its peer) and what must happen. What a pair of stacks *should* do follows from
what each stack can check (``Stack``): a stack without a SPIFFE ID authoriser cannot refuse a
wrong ID ("n/a"); go-spiffe does not check extended key usage by design ("accepted, known");
a key type a stack lacks is "unsupported", with why. Anything else that differs from the
expectation is a failure of the suite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# Outcomes of one handshake.
OK: Final = "ok"
REFUSED: Final = "refused"
UNSUPPORTED: Final = "unsupported"
NOT_APPLICABLE: Final = "n/a"
ACCEPTED_KNOWN: Final = "accepted*"
FAILED: Final = "FAIL"

SERVER: Final = "server"
CLIENT: Final = "client"

# Which property of the refused certificate a refusal scenario tests.
CHECK_CHAIN: Final = "chain"
CHECK_EXPIRY: Final = "expiry"
CHECK_USAGE: Final = "usage"
CHECK_ID: Final = "id"


@dataclass(frozen=True)
class Stack:
    """A TLS stack as the matrix judges it: what it checks, and what it cannot do (with why)."""

    name: str
    authorizes_ids: bool = False
    checks_usage: bool = True
    # (key type, role) -> why the stack cannot use that key type in that role; role SERVER or CLIENT.
    unsupported: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def lacks(self, key_type: str | None, role: str) -> str | None:
        if key_type is None:
            return None
        return self.unsupported.get((key_type, role))


@dataclass(frozen=True)
class Side:
    endpoint: str
    """Name of the certificate and key (a pod, or a certificate the PKI code built)."""
    authorize: str
    """The SPIFFE ID this side demands of its peer (stacks with an authoriser enforce it)."""
    bundle: str | None = None
    """A bundle other than the endpoint's own ``ca.crt`` (rotation: "same-subject:A+B", ...)."""


@dataclass(frozen=True)
class Scenario:
    id: str
    group: str
    column: str
    server: Side
    client: Side
    server_name: str
    refused_by: str | None = None
    check: str | None = None
    key_type: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Expectation:
    outcome: str  # OK, REFUSED, UNSUPPORTED, NOT_APPLICABLE or ACCEPTED_KNOWN
    why: str = ""
    refused_by: str | None = None


def expectation(scenario: Scenario, server: Stack, client: Stack) -> Expectation:
    for stack, role in ((server, SERVER), (client, CLIENT)):
        why = stack.lacks(scenario.key_type, role)
        if why is not None:
            return Expectation(UNSUPPORTED, f"{stack.name} ({role}): {why}")
    if scenario.refused_by is None:
        return Expectation(OK)
    judge = server if scenario.refused_by == SERVER else client
    if scenario.check == CHECK_ID and not judge.authorizes_ids:
        return Expectation(NOT_APPLICABLE, f"{judge.name} has no authoriser by SPIFFE ID (the application's job)")
    if scenario.check == CHECK_USAGE and not judge.checks_usage:
        return Expectation(ACCEPTED_KNOWN, f"{judge.name} does not check extended key usage")
    return Expectation(REFUSED, refused_by=scenario.refused_by)


# Words in an error that mean "the peer ended the handshake", not "my verifier refused". A TLS 1.3
# client that refuses the server's certificate may send its alert unencrypted while the server already
# expects encrypted records: Go's crypto/tls then says "bad record MAC", JSSE "Insufficient buffer
# remaining for AEAD cipher fragment".
_REMOTE_MARKERS: Final = (
    "alert", "remote error", "bad record mac", "insufficient buffer remaining for aead",
    "eof", "reset by peer", "connection reset", "broken pipe", "closed",
    "remote host terminated", "without an answer", "unexpected reply",
)


def is_remote(error: str) -> bool:
    lowered = error.lower()
    return any(marker in lowered for marker in _REMOTE_MARKERS)


@dataclass(frozen=True)
class Judgement:
    outcome: str  # OK or REFUSED (or FAILED when a side did not report)
    refused_by: str | None = None
    detail: str = ""


def judge(server_result: Mapping[str, Any] | None, client_result: Mapping[str, Any] | None) -> Judgement:
    """What happened, from both sides' own reports: who refused is the side whose own check failed."""
    if server_result is None or client_result is None:
        missing = " and ".join(role for role, got in ((SERVER, server_result), (CLIENT, client_result)) if got is None)
        return Judgement(FAILED, detail=f"no result from the {missing}")
    if server_result.get("ok") and client_result.get("ok"):
        return Judgement(OK)
    server_error = "" if server_result.get("ok") else str(server_result.get("error") or "")
    client_error = "" if client_result.get("ok") else str(client_result.get("error") or "")
    detail = f"server: {server_error or 'ok'} | client: {client_error or 'ok'}"
    local = [role for role, error in ((SERVER, server_error), (CLIENT, client_error)) if error and not is_remote(error)]
    if len(local) == 1:
        return Judgement(REFUSED, refused_by=local[0], detail=detail)
    return Judgement(REFUSED, refused_by=None, detail=detail)


@dataclass(frozen=True)
class Cell:
    scenario: Scenario
    server: str
    client: str
    expected: Expectation
    judged: Judgement

    @property
    def matches(self) -> bool:
        outcome, want = self.judged.outcome, self.expected.outcome
        if want in (OK, NOT_APPLICABLE, ACCEPTED_KNOWN):
            return outcome == OK
        if want == REFUSED:
            return outcome == REFUSED and self.judged.refused_by == self.expected.refused_by
        if want == UNSUPPORTED:
            return outcome == REFUSED
        return False

    @property
    def label(self) -> str:
        return self.expected.outcome if self.matches else FAILED


def cell(scenario: Scenario, server: Stack, client: Stack,
         server_result: Mapping[str, Any] | None, client_result: Mapping[str, Any] | None) -> Cell:
    return Cell(scenario, server.name, client.name, expectation(scenario, server, client),
                judge(server_result, client_result))


# Printing -------------------------------------------------------------------------------------

LEGEND: Final = (
    f"`{OK}`: mutual handshake and one exchange succeeded; `{REFUSED}`: the side that should refuse "
    f"did (its own verifier, not the peer's alert); `{UNSUPPORTED}`: the stack cannot use this key "
    f"type (tried; why below); `{NOT_APPLICABLE}`: the judging stack cannot authorise by SPIFFE ID, "
    f"so the handshake succeeds; `{ACCEPTED_KNOWN}`: accepted by design (why below); `{FAILED}`: "
    "anything else, which fails the suite."
)


def _table(title: str, columns: Sequence[Scenario], rows: Sequence[tuple[str, str]],
           cells: Mapping[tuple[str, str, str], Cell]) -> list[str]:
    lines = [f"### {title}", "", "| server → client | " + " | ".join(s.column for s in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for server, client in rows:
        labels = []
        for scenario in columns:
            found = cells.get((scenario.id, server, client))
            labels.append(found.label if found else "")
        lines.append(f"| {server} → {client} | " + " | ".join(labels) + " |")
    return [*lines, ""]


def render(scenarios: Sequence[Scenario], stacks: Sequence[str], cells: Iterable[Cell]) -> str:
    """The matrix in Markdown: one table per scenario group, rows server → client, then the notes."""
    by_key = {(c.scenario.id, c.server, c.client): c for c in cells}
    rows = [(server, client) for server in stacks for client in stacks]
    groups: dict[str, list[Scenario]] = {}
    for scenario in scenarios:
        groups.setdefault(scenario.group, []).append(scenario)
    lines: list[str] = [LEGEND, ""]
    for group, columns in groups.items():
        lines += _table(group, columns, rows, by_key)
        notes = [f"- {s.column}: {s.note}" for s in columns if s.note]
        if notes:
            lines += [*notes, ""]
    whys = sorted({(c.expected.outcome, c.expected.why) for c in by_key.values()
                   if c.expected.why and c.matches})
    if whys:
        lines += ["Why:", ""] + [f"- `{outcome}`: {why}" for outcome, why in whys] + [""]
    failures = [c for c in by_key.values() if not c.matches]
    if failures:
        lines += ["Failures:", ""]
        lines += [f"- {c.scenario.group} / {c.scenario.column}, {c.server} → {c.client}: expected "
                  f"{c.expected.outcome}{' by the ' + c.expected.refused_by if c.expected.refused_by else ''}, "
                  f"got {c.judged.outcome}"
                  f"{' by the ' + c.judged.refused_by if c.judged.refused_by else ''} ({c.judged.detail})"
                  for c in failures]
        lines.append("")
    return "\n".join(lines)
