"""What the PKI tests share: a fixed clock, every key type, and a typical SVID request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mtls_operator.models import KEY_SIZES, KeySpec, Usage
from mtls_operator.pki import LeafRequest

NOW = datetime(2026, 11, 27, tzinfo=UTC)
ALL_SPECS = [KeySpec(algorithm, size) for algorithm, sizes in KEY_SIZES.items() for size in sizes or (None,)]
REQUEST = LeafRequest(
    spiffe_id="spiffe://cluster.local/ns/shop/sa/payments",
    dns_names=("payments.shop.svc",),
    usages=frozenset(Usage),
    key=KeySpec(),
    duration=timedelta(hours=24),
)
