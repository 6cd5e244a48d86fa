"""The fast path of ``go_base64_error`` gives the port's answer for every input.

``go_base64_error`` recognises canonical base64 with a regular expression and hands everything else
to ``_go_base64_error_port`` (the character-by-character port of Go's decoder, whose offsets
tests/emulator/test_emulator_parity.py pins to Go's). Here the two are compared on a table of
adversarial inputs and on generated ones, so the fast path can never accept what the port refuses.
"""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kube_emulator.builtin import _go_base64_error_port, go_base64_error

CANONICAL = [base64.b64encode(bytes(range(n))).decode() for n in range(0, 13)]
ADVERSARIAL = [
    # padding in odd places
    "=", "==", "===", "====", "A=", "A==", "A===", "AB=", "AB==", "AB===", "ABC=", "ABC==", "=ABC", "A=BC", "AB=C",
    "ABCD=", "ABCD==", "ABCD===", "ABCDE===", "ABCDEF=", "ABCDEFG==", "AB==AB==", "ABC=ABCD", "AB==\r\n",
    # CR and LF anywhere (Go skips them), and other whitespace (Go refuses it)
    "\n", "\r\n", "AB\nCD", "AB\rCD", "ABCD\n", "\nABCD", "AB=\n=", "AB=\r\n=", "ABC\n=", "AB==\n", "AB==\nX",
    "AB\n==", "ABCD\r\n\r\nEFGH", "AB CD", "ABCD ", " ABCD", "AB\tCD", "ABCD\x00",
    # trailing data after the padding
    "AB==CD", "ABC=D", "AB==\n=", "ABC==", "ABCD====",
    # outside the alphabet: URL-safe base64, non-ASCII, look-alikes
    "AB-_", "AB_-", "ABC\u00e9", "\u00e9\u00e9\u00e9\u00e9", "ABCD\u0660", "ABC\uff21", "AB\u2028D",
    # the last quantum short
    "A", "AB", "ABC", "ABCDE", "ABCDEF", "ABCDEFG",
]


@pytest.mark.parametrize("value", CANONICAL + ADVERSARIAL)
def test_the_table_answers_as_the_port(value: str) -> None:
    assert go_base64_error(value) == _go_base64_error_port(value)


def test_every_short_string_over_a_small_alphabet_answers_as_the_port() -> None:
    # Every string of up to 6 characters over the characters that matter: alphabet, "=", CR, LF, other.
    for length in range(7):
        for chars in itertools.product("Aa+=\n\r-", repeat=length):
            value = "".join(chars)
            assert go_base64_error(value) == _go_base64_error_port(value), repr(value)


_pieces = st.sampled_from(["A", "z", "0", "+", "/", "=", "==", "\n", "\r\n", "\r", " ", "-", "_", "\u00e9", "ABCD"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_pieces, max_size=40).map("".join))
@example("YWJj\nZA==")
def test_generated_strings_answer_as_the_port(value: str) -> None:
    assert go_base64_error(value) == _go_base64_error_port(value)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400), st.sampled_from(["", "=", "\n", "x", "==",
                                                                                       "\r\n", "A"]))
def test_encoded_bytes_with_one_change_answer_as_the_port(data: bytes, at: int, insert: str) -> None:
    value = base64.b64encode(data).decode()
    value = value[:at] + insert + value[at:]
    assert go_base64_error(value) == _go_base64_error_port(value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_answers_as_the_port(value: str) -> None:
    assert go_base64_error(value) == _go_base64_error_port(value)
