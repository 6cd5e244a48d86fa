"""What the controller knows about pod Secret versions: each parsed once, chain-checked once.

A pass looks at every Secret of an identity; most are unchanged since the last pass. A reading
(``rules.plan.read_secret``) and a chain check against the trust bundle are remembered per Secret
version (uid, resourceVersion), so an unchanged Secret costs a dict look-up, and what is new is
parsed in one worker thread per pass (``read_all``), never on the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from mtls_operator import constants as c
from mtls_operator.controller.cache import BoundedCache
from mtls_operator.errors import PKIError
from mtls_operator.k8s.views import SecretView
from mtls_operator.pki import BUNDLE_LIMITS, CHAIN_LIMITS, parse_pem_certificates, verify_leaf
from mtls_operator.rules.plan import SecretReading, data_value, read_secret
from mtls_operator.times import Clock

ChainKey = tuple[str, str, bytes]


class SecretCache:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._readings: BoundedCache[tuple[str, str], SecretReading] = BoundedCache()
        # Why a Secret version does not chain to a bundle (None: it does), by (uid, resourceVersion, bundle).
        self._chains: BoundedCache[ChainKey, str | None] = BoundedCache()
        self._anchors: tuple[bytes, list[Any]] | None = None
        # Versions read from their annotations alone (written by the operator, or listed metadata-only):
        # no data to check a chain with; what the operator wrote chains by construction. The value says
        # whether the data is still to be checked (``verify``): True for a listed version, False for one
        # the operator wrote itself (it knows what it wrote: no re-parse, no chain check).
        self._facts_only: BoundedCache[tuple[str, str], bool] = BoundedCache()

    def known(self, secret: SecretView) -> bool:
        """Whether a reading of this Secret version is at hand (no data needed to decide on it)."""
        return secret.version in self._readings

    def remember(self, secret: SecretView, reading: SecretReading, *, listed: bool) -> None:
        """A version's reading from its annotations (``rules.plan.read_secret_metadata``), not its data:
        ``listed`` (seen in a list, its data to be checked by ``verify``) or written by the operator."""
        self._readings.put(secret.version, reading)
        self._facts_only.put(secret.version, listed)

    @property
    def unchecked(self) -> bool:
        """Whether listed versions wait for ``verify`` (else it has nothing to look at)."""
        return any(self._facts_only.values())

    def read(self, secret: SecretView) -> SecretReading:
        """``read_secret``, remembered per Secret version: an unchanged Secret is parsed once, not per pass.

        ``read_all`` has parsed it already, in a worker thread; parsing here, on the loop, happens only
        when the cache was cleared in between."""
        reading = self._readings.get(secret.version)
        if reading is None:
            reading = read_secret(secret)
            self._readings.put(secret.version, reading)
        return reading

    def chain_problem(self, secret: SecretView, reading: SecretReading, bundle_pem: bytes) -> str | None:
        """Why the Secret's certificate does not chain to the current trust bundle (a hand-edited Secret
        may not), or None; remembered per Secret version and bundle."""
        if secret.version in self._facts_only:
            return None
        key = (*secret.version, bundle_pem)
        if key not in self._chains:
            self._chains.put(key, self._check_chain(secret, reading, bundle_pem, self.clock()))
        return self._chains.get(key)

    async def read_all(self, secrets: list[SecretView], bundle_pem: bytes) -> None:
        """Read and chain-check every Secret not seen in this version yet, in one worker thread for all.

        Their data is the tenants' to write (up to 1 MiB a Secret): parsing it on the event loop would
        hold up the webhooks, the Lease and the health endpoint. One thread hop per pass, not one per
        Secret, keeps the CPU per certificate low; each parse step is capped and linear (pki/bundle.py),
        so the worker never holds the GIL for long and the loop keeps its turns.
        """
        pending = [secret for secret in secrets if self.needs_parsing(secret, bundle_pem)]
        if not pending:
            return
        cached = [self._readings.get(secret.version) for secret in pending]
        moment = self.clock()

        def parse() -> list[tuple[SecretReading, str | None]]:
            done = []
            for secret, known in zip(pending, cached, strict=True):
                reading = known if known is not None else read_secret(secret)
                checked = _checkable(reading)
                done.append((reading, self._check_chain(secret, reading, bundle_pem, moment) if checked else None))
            return done

        for secret, (reading, problem) in zip(pending, await asyncio.to_thread(parse), strict=True):
            self._readings.put(secret.version, reading)
            if _checkable(reading):
                self._chains.put((*secret.version, bundle_pem), problem)

    async def verify(self, secrets: list[SecretView], bundle_pem: bytes) -> list[SecretView]:
        """Check the data of Secret versions read from their annotations (``remember``) against those
        annotations, in one worker thread: returns the ones whose data says otherwise (a key or
        certificate edited, a bundle not the one recorded, a broken chain), whose reading is from now on
        the one their data gives."""
        pending = [secret for secret in secrets if self._facts_only.get(secret.version)]
        if not pending:
            return []
        moment = self.clock()

        def check() -> list[tuple[SecretReading, str | None]]:
            done = []
            for secret in pending:
                reading = read_secret(secret)
                done.append((reading, self._check_chain(secret, reading, bundle_pem, moment)
                             if _checkable(reading) else None))
            return done

        wrong = []
        for secret, (reading, problem) in zip(pending, await asyncio.to_thread(check), strict=True):
            facts = self._readings.get(secret.version)
            if facts is None or secret.version not in self._facts_only:
                continue  # forgotten or replaced meanwhile
            if (problem is None and not reading.problems and reading.bundle_hash == facts.bundle_hash
                    and reading.state is not None and facts.state is not None
                    and replace(reading.state, not_before=None) == facts.state):
                self._facts_only.put(secret.version, False)  # checked: not again after the next list
                continue
            self._facts_only.pop(secret.version)
            self._readings.put(secret.version, reading)
            if _checkable(reading):
                self._chains.put((*secret.version, bundle_pem), problem)
            wrong.append(secret)
        return wrong

    def needs_parsing(self, secret: SecretView, bundle_pem: bytes) -> bool:
        reading = self._readings.get(secret.version)
        if reading is None:
            return True
        if secret.version in self._facts_only:
            return False
        return _checkable(reading) and (*secret.version, bundle_pem) not in self._chains

    def _check_chain(self, secret: SecretView, reading: SecretReading, bundle_pem: bytes, now: datetime) -> str | None:
        try:
            anchors = self._trust_anchors(bundle_pem)
        except PKIError as exc:
            return f"tls.crt does not chain to the trust bundle: {exc}"
        return chain_problem(secret, reading, anchors, now)

    def _trust_anchors(self, bundle_pem: bytes) -> list[Any]:
        """The bundle's certificates; the bundle is the operator's own, but parsed off the loop all the same
        (``read_all`` calls this in its worker thread: the tuple is replaced whole, never mutated)."""
        anchors = self._anchors
        if anchors is None or anchors[0] != bundle_pem:
            anchors = self._anchors = (bundle_pem, parse_pem_certificates(bundle_pem, BUNDLE_LIMITS))
        return anchors[1]


def _checkable(reading: SecretReading) -> bool:
    return reading.state is not None and not reading.problems


def chain_problem(secret: SecretView, reading: SecretReading, anchors: list[Any], now: datetime) -> str | None:
    """Why the Secret's certificate does not chain to ``anchors``, or None (pure: runs in worker threads)."""
    chain_pem = data_value(secret.data, c.TLS_CRT, CHAIN_LIMITS.max_bytes)[0]
    if reading.state is None or not chain_pem:
        return None
    try:
        certs = parse_pem_certificates(chain_pem, CHAIN_LIMITS)
        leaf = certs[0]
        # Within the leaf's own validity: expiry is a renewal, not a broken chain.
        latest = leaf.not_valid_after_utc - timedelta(seconds=1)
        moment = max(leaf.not_valid_before_utc, min(now, latest))
        verify_leaf(leaf, certs[1:], anchors, moment)
    except PKIError as exc:  # ChainError included
        return f"tls.crt does not chain to the trust bundle: {exc}"
    return None
