"""The admission webhooks' own CA as plain data: what its Secret's annotations say, and its rotation.

Pure: no kopf, no kubernetes; ``now`` is an argument.

The webhook CA signs nothing but the serving certificates of the operator's replicas, and the API
server trusts it through the webhook configurations' ``caBundle``, which holds this CA's bundle and
nothing else. It is kept apart from the CA that signs pod certificates both ways: no pod certificate
can ever serve the webhooks, and no pod trusts a webhook serving certificate.

Its Secret (``MTLS_WEBHOOK_CA_SECRET`` in the operator's namespace) holds ``tls.crt``/``tls.key`` (the
CA that signs now), ``ca.crt`` (what the caBundle must hold) and, while a new CA is rolled in,
``next.crt``/``next.key``. A rotation never leaves a replica's serving certificate untrusted:

``Idle``          one CA signs; ``ca.crt`` holds it alone.
``Distributing``  the new CA joins ``ca.crt`` (the old one still signs) and the leader publishes it
                  as caBundle. Once every webhook configuration carries it, and the API servers had
                  the settle time to load it, signing switches.
``Reissuing``     the new CA signs; every replica re-reads the Secret within one refresh interval and
                  issues its serving certificate again. After the settle time, and once the leader's
                  own certificate moved, the old CA leaves ``ca.crt`` and the caBundle: ``Idle``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from mtls_operator.rules.rotation import (
    PHASE_ANNOTATION,
    PHASE_SINCE_ANNOTATION,
    ROTATE_ANNOTATION,
    SETTLED_AT_ANNOTATION,
    auto_rotation_due,
)
from mtls_operator.rules.spec import format_duration
from mtls_operator.times import format_time, parse_time

__all__ = [
    "NEXT_TLS_CRT",
    "NEXT_TLS_KEY",
    "WebhookCADecision",
    "WebhookCAPhase",
    "WebhookCAState",
    "WebhookCAStep",
    "WebhookCAView",
    "read_webhook_ca_state",
    "webhook_ca_annotations",
    "webhook_ca_step",
]

# The CA being rolled in, beside the one that signs (the same keys as the pod CA's rotation).
NEXT_TLS_CRT: Final = "next.crt"
NEXT_TLS_KEY: Final = "next.key"


class WebhookCAPhase(enum.StrEnum):
    IDLE = "Idle"
    DISTRIBUTING = "Distributing"
    REISSUING = "Reissuing"


@dataclass(frozen=True)
class WebhookCAState:
    """What the webhook CA Secret's annotations say about its rotation."""

    phase: WebhookCAPhase = WebhookCAPhase.IDLE
    since: datetime | None = None
    # Distributing: when every webhook configuration was first seen carrying the new CA.
    settled_at: datetime | None = None
    rotate_requested: bool = False


@dataclass(frozen=True)
class WebhookCAView:
    """What the leader sees now, beside the annotations."""

    not_before: datetime  # of the CA that signs
    not_after: datetime
    next_ready: bool  # next.crt/next.key hold a usable CA
    published: bool  # every webhook configuration's caBundle is the Secret's ca.crt
    serving_moved: bool  # the leader's own serving certificate comes from the CA that signs


class WebhookCAStep(enum.StrEnum):
    WAIT = "wait"
    BEGIN = "begin"  # a new CA joins ca.crt (generated now): Distributing
    # Record when the settle time starts: Distributing, every configuration carries the new CA;
    # Reissuing, when signing switched (only if the Secret lost that record).
    SETTLED = "settled"
    SWITCH = "switch"  # the new CA signs: Reissuing
    RETIRE = "retire"  # the old CA leaves ca.crt: Idle


# Shaped like rules/rotation.py's Decision, _text and read_rotation on purpose and not shared with
# them: the webhook CA's state machine has its own phases and annotations, and the two CAs are kept
# apart so that no code path can mix one's state with the other's.
@dataclass(frozen=True)
class WebhookCADecision:
    step: WebhookCAStep
    message: str
    wait: timedelta = timedelta(0)


def _text(moment: datetime | None) -> str | None:
    return format_time(moment) if moment else None


def read_webhook_ca_state(annotations: Mapping[str, str]) -> WebhookCAState:
    """The state from the Secret's annotations; anything unreadable reads as Idle."""
    try:
        phase = WebhookCAPhase(annotations.get(PHASE_ANNOTATION) or WebhookCAPhase.IDLE)
    except ValueError:
        phase = WebhookCAPhase.IDLE
    return WebhookCAState(
        phase=phase,
        since=parse_time(annotations.get(PHASE_SINCE_ANNOTATION)),
        settled_at=parse_time(annotations.get(SETTLED_AT_ANNOTATION)),
        rotate_requested=(annotations.get(ROTATE_ANNOTATION) or "").lower() == "true",
    )


def webhook_ca_annotations(state: WebhookCAState) -> dict[str, str | None]:
    """The annotations for ``state``, as a merge patch: ``None`` removes what the phase does not use."""
    return {
        PHASE_ANNOTATION: str(state.phase),
        PHASE_SINCE_ANNOTATION: _text(state.since),
        SETTLED_AT_ANNOTATION: _text(state.settled_at),
        ROTATE_ANNOTATION: "true" if state.rotate_requested else None,
    }


def webhook_ca_step(
    state: WebhookCAState, view: WebhookCAView, now: datetime, settle: timedelta
) -> WebhookCADecision:
    """The next step of the webhook CA's life. ``settle``: how long the API servers get to load a new
    caBundle, and every replica to re-read the Secret and move its serving certificate."""
    if state.phase is WebhookCAPhase.IDLE:
        if state.rotate_requested:
            return WebhookCADecision(WebhookCAStep.BEGIN, f"rotation requested ({ROTATE_ANNOTATION})")
        if auto_rotation_due(view.not_before, view.not_after, now):
            return WebhookCADecision(
                WebhookCAStep.BEGIN, f"the webhook CA reached 2/3 of its lifetime (it expires {_text(view.not_after)})"
            )
        due = view.not_before + (view.not_after - view.not_before) * (2 / 3)
        return WebhookCADecision(WebhookCAStep.WAIT, "no rotation under way", due - now)
    if state.phase is WebhookCAPhase.DISTRIBUTING:
        if not view.next_ready:
            return WebhookCADecision(WebhookCAStep.BEGIN, "the next webhook CA is missing or unusable: another one "
                                                          "is generated")
        if not view.published:
            return WebhookCADecision(WebhookCAStep.WAIT, "the webhook configurations' caBundle still to receive "
                                                         "the new CA")
        if state.settled_at is None:
            return WebhookCADecision(WebhookCAStep.SETTLED, f"every webhook configuration trusts the new CA; the API "
                                                            f"servers get {format_duration(settle)} to load it", settle)
        ready_at = state.settled_at + settle
        if now < ready_at:
            return WebhookCADecision(WebhookCAStep.WAIT, "waiting for the API servers to load the new caBundle",
                                     ready_at - now)
        return WebhookCADecision(WebhookCAStep.SWITCH, "the API servers trust the new CA: it signs the serving "
                                                       "certificates now")
    if not view.published:
        return WebhookCADecision(WebhookCAStep.WAIT, "the webhook configurations' caBundle still to receive both CAs")
    if not view.serving_moved:
        return WebhookCADecision(WebhookCAStep.WAIT, "this replica's serving certificate still to move to the new CA")
    if state.since is None:
        return WebhookCADecision(WebhookCAStep.SETTLED, "when signing switched is not recorded: the replicas get "
                                                        f"{format_duration(settle)} from now", settle)
    ready_at = state.since + settle
    if now < ready_at:
        return WebhookCADecision(WebhookCAStep.WAIT, "waiting for every replica to re-read the webhook CA and move "
                                                     "its serving certificate", ready_at - now)
    return WebhookCADecision(WebhookCAStep.RETIRE, "every replica serves a certificate of the new CA: the old one "
                                                   "leaves the caBundle")
