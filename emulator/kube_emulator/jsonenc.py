"""JSON encoding of responses and watch events: orjson where it writes what the standard library would.

Every response body and every watch event line is encoded here (the emulator's CPU per request was
a tenth JSON encoding with the standard library). orjson writes compact UTF-8, which JSON clients
read as the standard library's output. Where the two would differ in meaning, the standard library
encodes, so answers stay what they were:

- what orjson refuses (integers beyond 64 bits, keys that are not strings, lone surrogates);
- NaN and infinities (Python's JSON reader accepts them in a body): the standard library writes
  ``NaN``/``Infinity``, orjson ``null``; so any output of orjson that contains ``null`` is encoded
  again by the standard library (rare: objects seldom carry a null).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_STDLIB_ASCII = json.JSONEncoder(separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8."""
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _STDLIB(value).encode()
    if encoded.find(b"null") < 0:
        return encoded
    return _STDLIB(value).encode()


def dumps_line(value: Any) -> bytes:
    """``value`` as one line of a watch stream (compact JSON and a newline)."""
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return (_STDLIB_ASCII(value) + "\n").encode()
    if encoded.find(b"null") < 0:
        return encoded
    return (_STDLIB_ASCII(value) + "\n").encode()
