"""Where leaf keys are made and signed: on the event loop when that is quick, in a pool otherwise.

An ECDSA P-256/P-384 or Ed25519 key and its signature by an ECDSA or Ed25519 CA take well under a
millisecond, less than handing the work to a thread and back (the hand-over of the GIL costs about
as much, and a burst of them queue behind one another). RSA keys (up to 4096 bits: up to seconds)
and RSA CAs go to a thread pool sized to the machine's cores: more threads than cores would only
take turns at the GIL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import rsa

from mtls_operator.models import KeyAlgorithm
from mtls_operator.pki import CertificateAuthority, IssuedLeaf, LeafRequest

Issue = Callable[[CertificateAuthority, LeafRequest, datetime], IssuedLeaf]

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool  # one pool per process, made on first use
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="mtls-signing")
    return _pool


def quick(ca: CertificateAuthority, request: LeafRequest) -> bool:
    """Whether issuing takes well under a millisecond: no RSA key to make, no RSA signature."""
    return request.key.algorithm is not KeyAlgorithm.RSA and not isinstance(ca.key, rsa.RSAPrivateKey)


async def run_issuance(issue: Issue, ca: CertificateAuthority, request: LeafRequest, now: datetime) -> IssuedLeaf:
    """``issue(ca, request, now)`` (``pki.issue_leaf``): on the loop when ``quick``, else in the pool.

    Shaped as ``asyncio.to_thread(issue_leaf, ...)``, which it replaces at the one call site."""
    if quick(ca, request):
        return issue(ca, request, now)
    return await asyncio.get_running_loop().run_in_executor(_executor(), issue, ca, request, now)
