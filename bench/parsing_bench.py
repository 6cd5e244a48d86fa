"""Parsing benchmark (issue 10, item 4): PEM parsing of tenant-written data, before and after.

Before: the PEM split of the first releases, a lazy DOTALL regex (``BEGIN.+?END``), quadratic when
the input holds many BEGIN lines without END lines: each BEGIN starts a search to the end. After:
``scan_pem_blocks``, one forward scan (each byte looked at at most twice), behind size caps.

For inputs of 4 KB, 40 KB and 400 KB (BENCH_PARSE_SIZES, in KB) it prints the time to parse:
- ``begin-lines``: nothing but ``-----BEGIN CERTIFICATE-----`` lines (the attack of issue 10);
- ``begin-no-end``: a valid certificate, then BEGIN lines;
- ``bundle``: valid certificates back to back (the legitimate case, found and decoded);
- ``garbage``: random printable bytes.
"After" is measured without the caps (limits raised to the input's size) so that its linearity
shows; the last column is the production path with the caps of a ``tls.crt`` (64 KiB,
10 certificates), which refuses what is over them before scanning. Also printed: the bytes the
scan examined per input byte (at most 2). Figures only, no thresholds; best of BENCH_PARSE_REPEAT runs (default
5), the quadratic "before" at most 3 times.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import re
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509

from mtls_operator.errors import PKIError
from mtls_operator.pki import (
    CHAIN_LIMITS,
    PemLimits,
    certs_to_pem,
    create_self_signed_ca,
    parse_pem_certificates,
    scan_pem_blocks,
)

SIZES_KB = [int(n) for n in os.environ.get("BENCH_PARSE_SIZES", "4,40,400").split(",")]
REPEAT = int(os.environ.get("BENCH_PARSE_REPEAT", "5"))
# A run of "before" that takes longer than this is not repeated.
SLOW = 1.0

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_OLD_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def parse_before(data: bytes) -> list[x509.Certificate]:
    """The parser as it was before issue 10 (bundle.py at e4e8d8f), for comparison only."""
    begins = data.count(_BEGIN)
    if not begins:
        raise PKIError("no PEM certificate found")
    blocks = _OLD_PEM_BLOCK.findall(data)
    if len(blocks) != begins:
        raise PKIError("malformed PEM: a BEGIN line has no matching END line")
    certs = []
    for block in blocks:
        try:
            cert = x509.load_pem_x509_certificate(block)
            _ = cert.extensions
        except ValueError:
            raise PKIError("malformed certificate") from None
        certs.append(cert)
    return certs


def inputs(size: int, cert_pem: bytes) -> dict[str, bytes]:
    rng = random.Random(size)  # noqa: S311 -- reproducible filler, not a secret
    begin_lines = (_BEGIN + b"\n") * (size // (len(_BEGIN) + 1))
    printable = string.ascii_letters + string.digits + "+/=-\n "
    return {
        "begin-lines": begin_lines,
        "begin-no-end": cert_pem + begin_lines[: max(0, size - len(cert_pem))],
        "bundle": cert_pem * max(1, size // len(cert_pem)),
        "garbage": "".join(rng.choice(printable) for _ in range(size)).encode(),
    }


def best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        with contextlib.suppress(PKIError):
            work()
        elapsed = time.perf_counter() - started
        best = min(best, elapsed)
        if elapsed > SLOW:
            break
    return best


def millis(seconds: float) -> str:
    return f"{seconds * 1000:10.3f} ms"


def main() -> None:
    now = datetime.now(UTC)
    cert_pem = certs_to_pem([create_self_signed_ca(now, common_name="bench").cert])
    print(f"PEM parse time, best of {REPEAT} (before: regex split; after: linear scan, uncapped; "
          f"capped: tls.crt limits {CHAIN_LIMITS.max_bytes} B / {CHAIN_LIMITS.max_certificates} certificates)")
    print(f"{'input':<14}{'size':>9}{'before':>14}{'after':>14}{'capped':>14}{'after/KB':>12}{'examined/B':>12}")
    for kb in SIZES_KB:
        for name, data in inputs(kb * 1000, cert_pem).items():
            uncapped = PemLimits("benchmark input", len(data), len(data))
            before = best_of(min(REPEAT, 3), functools.partial(parse_before, data))
            after = best_of(REPEAT, functools.partial(parse_pem_certificates, data, uncapped))
            capped = best_of(REPEAT, functools.partial(parse_pem_certificates, data, CHAIN_LIMITS))
            examined = f"{scan_pem_blocks(data, uncapped).examined / len(data):12.2f}"
            print(f"{name:<14}{len(data):>9}{millis(before):>14}{millis(after):>14}{millis(capped):>14}"
                  f"{after * 1e6 / len(data) * 1000:>9.2f} us{examined}")


if __name__ == "__main__":
    main()
