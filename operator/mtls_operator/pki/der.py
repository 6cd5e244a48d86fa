"""The little of DER (X.690) a leaf's to-be-signed part is made of: tags, lengths, integers, OIDs, times.

Used by ``leaf.py`` to put a leaf together from parts made once per CA and per request (``CertificateBuilder``
costs about 50 microseconds a leaf above the signature itself, re-encoding the same names and extensions
every time). Every leaf built this way is parsed back by cryptography and checked (``check_own_leaf``);
the first one of each CA and kind of leaf key goes through the full path verification.
"""

from __future__ import annotations

import functools
from datetime import datetime

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
BOOLEAN_TRUE = b"\x01\x01\xff"


def tlv(tag: int, content: bytes) -> bytes:
    """One element: its tag, its definite length (short form under 128 bytes), its content."""
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def integer(value: int) -> bytes:
    """A non-negative INTEGER, in its fewest octets (a leading zero when the top bit would read as a sign)."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded here")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


@functools.lru_cache(maxsize=64)
def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form (``2.5.29.14``)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an object identifier: {dotted!r}")
    content = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        content += bytes(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(content))


def time(moment: datetime) -> bytes:
    """An X.509 Time in whole seconds, UTC (RFC 5280, 4.1.2.5): UTCTime through 2049, GeneralizedTime after."""
    if moment.utcoffset() is None or moment.utcoffset():
        raise ValueError("an X.509 time is in UTC")
    if moment.microsecond:
        raise ValueError("an X.509 time has no fraction of a second")
    rest = f"{moment.month:02d}{moment.day:02d}{moment.hour:02d}{moment.minute:02d}{moment.second:02d}Z"
    if 1950 <= moment.year < 2050:
        return tlv(UTC_TIME, f"{moment.year % 100:02d}{rest}".encode("ascii"))
    return tlv(GENERALIZED_TIME, f"{moment.year:04d}{rest}".encode("ascii"))


def _element(data: bytes, at: int) -> tuple[int, int]:
    """Where the content of the element at ``at`` starts and where the element ends."""
    if at + 2 > len(data):
        raise ValueError("DER cut short")
    length, start = data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or start + size > len(data):
            raise ValueError("a DER length this code does not read")
        length, start = int.from_bytes(data[start:start + size], "big"), start + size
    if start + length > len(data):
        raise ValueError("DER cut short")
    return start, start + length


def public_key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey bits of a SubjectPublicKeyInfo (SEQUENCE {algorithm, BIT STRING}), without the
    BIT STRING's unused-bits octet: what RFC 5280's key identifiers hash (4.2.1.2, method 1)."""
    start, _ = _element(spki, 0)
    _, algorithm_end = _element(spki, start)
    if spki[algorithm_end:algorithm_end + 1] != bytes((BIT_STRING,)):
        raise ValueError("not a SubjectPublicKeyInfo")
    bits, end = _element(spki, algorithm_end)
    return spki[bits + 1:end]


def extension(identifier: str, value_der: bytes, *, critical: bool) -> bytes:
    """An Extension (RFC 5280, 4.1): its OID, critical only when true (DER leaves a default out), the value
    wrapped in an OCTET STRING."""
    return tlv(SEQUENCE, oid(identifier) + (BOOLEAN_TRUE if critical else b"") + tlv(OCTET_STRING, value_der))
