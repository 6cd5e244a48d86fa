"""One writer per Secret: the hand-shake between the first-issue fast path and the passes.

A Secret is issued by a pass or by a first issue (a new pod, outside any pass), never both at
once; first issues are few at a time (a burst goes through the passes, which batch it); what a
first issue created is claimed for the next pass, which re-reads it rather than issuing again; and
a name found taken by someone else is remembered, so no key is generated for a Secret we could
not store. All keyed by the slot: (namespace, Secret name).
"""

from __future__ import annotations

from mtls_operator.controller.cache import BoundedCache

Slot = tuple[str, str]  # (namespace, Secret name)
IdentityKey = tuple[str, str]  # (namespace, name)

# First issues outside a pass only while fewer than this are under way: a burst of new pods goes
# through the passes, which batch it. Their status pass comes a moment later for all of them
# (runtime's STATUS_DELAY), so a steady arrival of pods (100/s, API round trips of tens of
# milliseconds under load) stays on this path.
FIRST_ISSUE_LIMIT = 32


class IssuanceGate:
    def __init__(self, first_issue_limit: int = FIRST_ISSUE_LIMIT) -> None:
        self.first_issue_limit = first_issue_limit
        # Secrets being issued right now, by a pass or a first issue: never both.
        self._issuing: set[Slot] = set()
        self._first_in_flight = 0
        # Secrets created by first issues -> their uid, which a pass that listed before them must not
        # re-issue. Only a claim: the pass re-reads the Secret and checks it is still the one created.
        self._first_done: BoundedCache[Slot, str] = BoundedCache()
        # First issues per identity (count, first message), for the next pass to report.
        self._first_issued: dict[IdentityKey, tuple[int, str]] = {}
        # Secret names found taken by someone else: checked before issuing, until they free up.
        self._clashes: set[Slot] = set()
        # Managed Secrets seen deleted: issuing one again is a repair, not a first issue.
        self._vanished: BoundedCache[Slot, bool] = BoundedCache()
        # New pods (namespace, name) whose first issue is being tried: a pass leaves them to it.
        self._arriving: set[tuple[str, str]] = set()

    # A pass ---------------------------------------------------------------------------------

    def hold(self, slot: Slot) -> bool:
        """Take the slot for a pass; False when a first issue is writing it right now."""
        if slot in self._issuing:
            return False
        self._issuing.add(slot)
        return True

    def busy(self, slot: Slot) -> bool:
        """Whether a pass or a first issue is writing the slot right now."""
        return slot in self._issuing

    def release(self, slot: Slot) -> None:
        self._issuing.discard(slot)

    def take_claim(self, slot: Slot) -> str | None:
        """The uid of the Secret a first issue created here since the pass listed, once."""
        return self._first_done.pop(slot)

    def take_first_issues(self, key: IdentityKey) -> tuple[int, str] | None:
        """First issues of an identity since its last pass: how many, and the first one's message."""
        return self._first_issued.pop(key, None)

    # First issues -----------------------------------------------------------------------------

    def arriving(self, pod: tuple[str, str]) -> None:
        """A pod was just created: its first issue is about to be tried (the pass that follows serves it
        if that does not issue)."""
        self._arriving.add(pod)

    def arrived(self, pod: tuple[str, str]) -> None:
        self._arriving.discard(pod)

    def is_arriving(self, pod: tuple[str, str]) -> bool:
        return pod in self._arriving

    def forget_arrivals(self) -> None:
        """A new term as leader: first issues of the last one were cancelled, maybe before they began."""
        self._arriving.clear()

    def first_issue_room(self) -> bool:
        """Whether a first issue could start now (fewer than the limit under way): a burst's pods that
        arrive while it is full go to the passes at once, without a first issue to try."""
        return self._first_in_flight < self.first_issue_limit

    def may_start_first(self, slot: Slot) -> bool:
        return (slot not in self._clashes and slot not in self._issuing
                and self._first_in_flight < self.first_issue_limit)

    def start_first(self, slot: Slot) -> None:
        self._issuing.add(slot)
        self._first_in_flight += 1

    def end_first(self, slot: Slot) -> None:
        self._issuing.discard(slot)
        self._first_in_flight -= 1

    def first_issued(self, key: IdentityKey, slot: Slot, uid: str, pod_name: str) -> None:
        self._first_done.put(slot, uid)
        count, message = self._first_issued.get(key, (0, f"pod {pod_name}: Issuing: no certificate yet"))
        self._first_issued[key] = (count + 1, message)

    # Names taken, Secrets gone ---------------------------------------------------------------

    def clashed(self, slot: Slot) -> bool:
        return slot in self._clashes

    def clash(self, slot: Slot) -> None:
        self._clashes.add(slot)

    def clear_clash(self, slot: Slot) -> None:
        self._clashes.discard(slot)

    def vanished(self, slot: Slot) -> None:
        """A managed Secret was deleted: if its pod is still served, re-issuing it is a repair."""
        self._vanished.put(slot, True)

    def take_vanished(self, slot: Slot) -> bool:
        return bool(self._vanished.pop(slot))

    def forget(self, key: IdentityKey) -> None:
        self._first_issued.pop(key, None)
