"""Which identity a pod concerns, and which identity specs can be served.

Routes pod events to identities (those selecting the pod now, and those that served it at their
last pass), keeps whether a spec is servable per (uid, generation) (an invalid one selects nothing,
so it takes no part in conflicts), and the last good spec per identity, which a first issue may use
without reading the identity again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtls_operator.config import Settings
from mtls_operator.controller.cache import BoundedCache
from mtls_operator.errors import PolicyError, SpecError
from mtls_operator.k8s.views import IdentityView
from mtls_operator.rules.delivery import PodCertificateSource, pod_certificate_source
from mtls_operator.rules.plan import IdentityRef, PodInfo, identity_ref
from mtls_operator.rules.spec import IdentitySpec, PolicyRefusal, check_identity_name, parse_identity_spec

IdentityKey = tuple[str, str]  # (namespace, name)


class IdentityIndex:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Which pods each identity served at its last pass.
        self.served: dict[IdentityKey, set[str]] = {}
        # Per (uid, generation): whether the spec can be served, and its pod certificate source, if any.
        self._validity: BoundedCache[tuple[str, str], tuple[bool, PodCertificateSource | None]] = BoundedCache()
        # The last good spec per identity, with the (uid, generation) it was read at.
        self._specs: dict[IdentityKey, tuple[str, object, IdentitySpec]] = {}

    def parse_spec(self, identity: IdentityView) -> IdentitySpec:
        """The identity's spec, checked against the settings' policy; raises SpecError (PolicyRefusal:
        valid, but asking for more than the policy allows; it carries the spec that is served)."""
        check_identity_name(identity.meta.name)
        return parse_identity_spec(
            identity.spec,
            namespace=identity.meta.namespace,
            cluster_domain=self.settings.cluster_domain,
            allowed_dns_patterns=self.settings.allowed_dns_patterns,
            default_duration=self.settings.default_duration,
            max_duration=self.settings.max_duration,
            allow_short_dns_names=self.settings.allow_short_dns_names,
        )

    def identity_ref(self, body: Mapping[str, Any]) -> IdentityRef:
        """``plan.identity_ref``, with an identity whose spec is invalid selecting nothing."""
        valid, source = self._read(IdentityView.of(dict(body)))
        return identity_ref(body, valid=valid, pod_certificate=source)

    def spec_valid(self, identity: IdentityView) -> bool:
        """Whether an identity's spec can be served (a policy violation can: without the refused names)."""
        return self._read(identity)[0]

    def _read(self, identity: IdentityView) -> tuple[bool, PodCertificateSource | None]:
        known = self._validity.get(identity.version)
        if known is None:
            try:
                known = (True, pod_certificate_source(self.parse_spec(identity)))
            except PolicyRefusal as refusal:
                known = (True, pod_certificate_source(refusal.allowed))
            except PolicyError:
                known = (True, None)
            except SpecError:
                known = (False, None)
            self._validity.put(identity.version, known)
        return known

    def remember_spec(self, key: IdentityKey, identity: IdentityView, spec: IdentitySpec | None) -> None:
        """The spec a pass read (None: it was bad), for first issues until the identity changes."""
        if spec is None:
            self._specs.pop(key, None)
        else:
            self._specs[key] = (identity.meta.uid, identity.meta.generation, spec)

    def spec_for(self, key: IdentityKey, version: tuple[str, object]) -> IdentitySpec | None:
        """The last good spec, if it was read at ``version`` (the identity's (uid, generation) as watched)."""
        cached = self._specs.get(key)
        return cached[2] if cached is not None and cached[:2] == version else None

    def identities_for_pod(self, pod: PodInfo, identities: Mapping[IdentityKey, IdentityRef]) -> set[IdentityKey]:
        """Identities a pod event concerns: those selecting it now, and those that served it before."""
        keys = {key for key, ref in identities.items() if key[0] == pod.namespace and _could_select(ref, pod)}
        keys.update(key for key, pods in self.served.items() if key[0] == pod.namespace and pod.name in pods)
        return keys

    def forget(self, key: IdentityKey) -> None:
        self.served.pop(key, None)
        self._specs.pop(key, None)


def _could_select(ref: IdentityRef, pod: PodInfo) -> bool:
    if ref.selector is None or not pod.opted_in:
        return False
    return ref.selector.matches(pod.labels)
