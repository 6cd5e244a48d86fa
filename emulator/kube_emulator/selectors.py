"""Label and field selectors, parsed and matched the way the Kubernetes API server does it.

Ports of ``k8s.io/apimachinery/pkg/labels/selector.go`` (the lexer, the parser, the key and value
validation and the error messages) and of ``k8s.io/apimachinery/pkg/fields/selector.go``.

Pure Python: no I/O, no kubernetes client.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelOperator",
    "LabelRequirement",
    "LabelSelector",
    "SelectorError",
    "escape_field_value",
    "field_value",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "parse_field_selector",
    "parse_label_selector",
    "unescape_field_value",
]


class SelectorError(ValueError):
    """A selector the API server would refuse (it answers 400 BadRequest with this message)."""


# --------------------------------------------------------------------------------------------
# Validation of label keys and values (k8s.io/apimachinery/pkg/util/validation)
# --------------------------------------------------------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile(rf"^{_QNAME_FMT}$")
_QNAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_LABEL_VALUE_RE = re.compile(rf"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    text = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            text += " or "
        text += f"'{example}', "
    return text + f"regex used for validation is '{fmt}')"


def _go_len(value: str) -> int:
    """``len(value)`` in Go: the length in UTF-8 bytes."""
    return len(value.encode("utf-8", "surrogatepass"))


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def is_dns1123_subdomain(value: str) -> list[str]:
    """``validation.IsDNS1123Subdomain``: the problems with a DNS subdomain (empty list when valid)."""
    errs: list[str] = []
    if _go_len(value) > 253:
        errs.append(_max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1123_label(value: str) -> list[str]:
    """``validation.IsDNS1123Label``: the problems with a DNS label (empty list when valid)."""
    errs: list[str] = []
    if _go_len(value) > 63:
        errs.append(_max_len_error(63))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            errs.append("must not contain dots")  # a valid subdomain: the length was checked, so the dots
        else:
            errs.append(_regex_error(_DNS1123_LABEL_ERR, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """``validation.IsQualifiedName``: the problems with a label key (empty list when valid)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + msg for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QNAME_ERR, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif _go_len(name) > 63:
        errs.append("name part " + _max_len_error(63))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_QNAME_ERR, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """``validation.IsValidLabelValue``: the problems with a label value (empty list when valid)."""
    errs: list[str] = []
    if _go_len(value) > 63:
        errs.append(_max_len_error(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _go_quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _invalid(path: str, value: str, detail: str) -> str:
    """``field.Invalid(path, value, detail).Error()``."""
    return f"{path}: Invalid value: {_go_quote(value)}: {detail}"


def _invalid_list(path: str, values: tuple[str, ...], detail: str) -> str:
    return f"{path}: Invalid value: {json.dumps(list(values))}: {detail}"


def _aggregate(errors: list[str]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one message, or ``[a, b]`` without duplicates."""
    if len(errors) == 1:
        return errors[0]
    seen: list[str] = []
    for msg in errors:
        if msg not in seen:
            seen.append(msg)
    if len(seen) == 1:
        return seen[0]
    return "[" + ", ".join(seen) + "]"


# --------------------------------------------------------------------------------------------
# Label selectors
# --------------------------------------------------------------------------------------------


class LabelOperator(StrEnum):
    """``selection.Operator`` values that a label selector can hold."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", "gt", "lt")


@dataclass(frozen=True)
class LabelRequirement:
    """One requirement (``key op values``); values are sorted and unique, as the parser makes them."""

    key: str
    operator: LabelOperator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op in (LabelOperator.IN, LabelOperator.EQUALS, LabelOperator.DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (LabelOperator.NOT_IN, LabelOperator.NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op is LabelOperator.EXISTS:
            return present
        if op is LabelOperator.DOES_NOT_EXIST:
            return not present
        # Gt / Lt: both sides must be integers.
        if not present or len(self.values) != 1:
            return False
        have, want = _parse_int(labels[self.key]), _parse_int(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op is LabelOperator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is LabelOperator.EXISTS:
            return self.key
        if op is LabelOperator.DOES_NOT_EXIST:
            return "!" + self.key
        values = ",".join(self.values)
        if op in (LabelOperator.IN, LabelOperator.NOT_IN):
            return f"{self.key} {op.value} ({values})"
        symbol = {LabelOperator.GREATER_THAN: ">", LabelOperator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{values}"


_INT_RE = re.compile(r"^[+-]?[0-9]+$")


def _parse_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``."""
    if not _INT_RE.fullmatch(text):
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


@dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector``: the AND of its requirements, sorted by key."""

    requirements: tuple[LabelRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        have: Mapping[str, str] = labels if labels is not None else {}
        return all(req.matches(have) for req in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value ``key`` must have (``key=v`` or ``key in (v)``), else None."""
        for req in self.requirements:
            if req.key == key:
                exact = (LabelOperator.EQUALS, LabelOperator.DOUBLE_EQUALS, LabelOperator.IN)
                if req.operator in exact and len(req.values) == 1:
                    return req.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)


class _Tok(Enum):
    ERROR = 0
    EOS = 1
    CLOSED_PAR = 2
    COMMA = 3
    DOES_NOT_EXIST = 4
    DOUBLE_EQUALS = 5
    EQUALS = 6
    GREATER_THAN = 7
    IDENTIFIER = 8
    IN = 9
    LESS_THAN = 10
    NOT_EQUALS = 11
    NOT_IN = 12
    OPEN_PAR = 13


_STRING_TO_TOKEN: dict[str, _Tok] = {
    ")": _Tok.CLOSED_PAR,
    ",": _Tok.COMMA,
    "!": _Tok.DOES_NOT_EXIST,
    "==": _Tok.DOUBLE_EQUALS,
    "=": _Tok.EQUALS,
    ">": _Tok.GREATER_THAN,
    "in": _Tok.IN,
    "<": _Tok.LESS_THAN,
    "!=": _Tok.NOT_EQUALS,
    "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN_PAR,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """The label selector lexer (``labels.Lexer``), run to the end of the string."""
    items: list[tuple[_Tok, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_Tok.EOS, ""))
            return items
        if text[pos] in _SPECIAL:
            buffer = ""
            last: tuple[_Tok, str] | None = None
            while pos < n and text[pos] in _SPECIAL:
                buffer += text[pos]
                pos += 1
                if buffer in _STRING_TO_TOKEN:
                    last = (_STRING_TO_TOKEN[buffer], buffer)
                elif last is not None:
                    pos -= 1
                    break
            if last is None:
                items.append((_Tok.ERROR, f"error expected: keyword found '{buffer}'"))
            else:
                items.append(last)
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
                pos += 1
            word = text[start:pos]
            items.append((_STRING_TO_TOKEN.get(word, _Tok.IDENTIFIER), word))


class _LabelParser:
    """``labels.Parser``: a recursive-descent parser with the apiserver's error messages."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.position = 0

    def lookahead(self, values: bool) -> tuple[_Tok, str]:
        tok, lit = self.items[self.position]
        if values and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENTIFIER
        return tok, lit

    def consume(self, values: bool) -> tuple[_Tok, str]:
        result = self.lookahead(values)
        self.position += 1
        return result

    def parse(self) -> list[LabelRequirement]:
        requirements: list[LabelRequirement] = []
        while True:
            tok, lit = self.lookahead(True)
            if tok in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                try:
                    requirements.append(self.parse_requirement())
                except SelectorError as err:
                    raise SelectorError(f"unable to parse requirement: {err}") from None
                tok2, lit2 = self.consume(True)
                if tok2 is _Tok.EOS:
                    return requirements
                if tok2 is _Tok.COMMA:
                    tok3, lit3 = self.lookahead(True)
                    if tok3 not in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                        raise SelectorError(f"found '{lit3}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok is _Tok.EOS:
                return requirements
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> LabelRequirement:
        key, operator = self.parse_key_and_infer_operator()
        if operator is not None:
            return _new_requirement(key, operator, ())
        operator = self.parse_operator()
        if operator in (LabelOperator.IN, LabelOperator.NOT_IN):
            values = self.parse_values()
        else:
            values = self.parse_exact_value()
        return _new_requirement(key, operator, tuple(sorted(values)))

    def parse_key_and_infer_operator(self) -> tuple[str, LabelOperator | None]:
        operator: LabelOperator | None = None
        tok, literal = self.consume(True)
        if tok is _Tok.DOES_NOT_EXIST:
            operator = LabelOperator.DOES_NOT_EXIST
            tok, literal = self.consume(True)
        if tok is not _Tok.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        errs = is_qualified_name(literal)
        if errs:
            raise SelectorError(_invalid("<nil>", literal, "; ".join(errs)))
        nxt, _ = self.lookahead(True)
        if nxt in (_Tok.EOS, _Tok.COMMA) and operator is None:
            operator = LabelOperator.EXISTS
        return literal, operator

    def parse_operator(self) -> LabelOperator:
        tok, lit = self.consume(False)
        mapping = {
            _Tok.IN: LabelOperator.IN,
            _Tok.EQUALS: LabelOperator.EQUALS,
            _Tok.DOUBLE_EQUALS: LabelOperator.DOUBLE_EQUALS,
            _Tok.GREATER_THAN: LabelOperator.GREATER_THAN,
            _Tok.LESS_THAN: LabelOperator.LESS_THAN,
            _Tok.NOT_IN: LabelOperator.NOT_IN,
            _Tok.NOT_EQUALS: LabelOperator.NOT_EQUALS,
        }
        if tok not in mapping:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return mapping[tok]

    def parse_values(self) -> set[str]:
        tok, lit = self.consume(True)
        if tok is not _Tok.OPEN_PAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(True)
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self.parse_identifiers_list()
            tok2, _ = self.consume(True)
            if tok2 is not _Tok.CLOSED_PAR:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok is _Tok.CLOSED_PAR:
            self.consume(True)
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume(True)
            if tok is _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self.lookahead(True)
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSED_PAR:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:
                if not values:
                    values.add("")
                tok2, _ = self.lookahead(True)
                if tok2 is _Tok.CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    self.consume(True)
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead(True)
        if tok in (_Tok.EOS, _Tok.COMMA):
            return {""}
        tok, lit = self.consume(True)
        if tok is _Tok.IDENTIFIER:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def _new_requirement(key: str, op: LabelOperator, values: tuple[str, ...]) -> LabelRequirement:
    """``labels.NewRequirement``: validates the values for the operator (the key is already valid)."""
    errs: list[str] = []
    if op in (LabelOperator.IN, LabelOperator.NOT_IN):
        if not values:
            errs.append(_invalid_list("values", values, "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (LabelOperator.EQUALS, LabelOperator.DOUBLE_EQUALS, LabelOperator.NOT_EQUALS):
        if len(values) != 1:
            errs.append(_invalid_list("values", values, "exact-match compatibility requires one single value"))
    elif op in (LabelOperator.GREATER_THAN, LabelOperator.LESS_THAN):
        if len(values) != 1:
            errs.append(_invalid_list("values", values, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, value in enumerate(values):
            if _parse_int(value) is None:
                errs.append(_invalid(f"values[{i}]", value, "for 'Gt', 'Lt' operators, the value must be an integer"))
    for i, value in enumerate(values):
        problems = is_valid_label_value(value)
        if problems:
            errs.append(_invalid(f"values[{i}][{key}]", value, "; ".join(problems)))
    if errs:
        raise SelectorError(_aggregate(errs))
    return LabelRequirement(key=key, operator=op, values=values)


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query parameter (``labels.Parse``); None or blank selects everything.

    Raises :class:`SelectorError` with the apiserver's message for what it would refuse.
    """
    if text is None:
        return LabelSelector()
    requirements = _LabelParser(text).parse()
    requirements.sort(key=lambda req: req.key)
    return LabelSelector(tuple(requirements))


# --------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------

_FIELD_OPERATORS = ("!=", "==", "=")

# Field labels that are not plain paths into the object, per kind (as the apiserver maps them).
_FIELD_ALIASES: dict[str, dict[str, str]] = {
    "Event": {"source": "source.component"},
}


@dataclass(frozen=True)
class FieldRequirement:
    """``field op value``; ``operator`` is ``=``, ``==`` or ``!=``; ``value`` is unescaped."""

    field: str
    operator: str
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        have = field_value(obj, self.field)
        return have != self.value if self.operator == "!=" else have == self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """A parsed ``fieldSelector``: the AND of its terms, sorted as the apiserver sorts them."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    @property
    def fields(self) -> frozenset[str]:
        """The field labels used, for a server that refuses unsupported ones (the real one does)."""
        return frozenset(req.field for req in self.requirements)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(req.matches(obj) for req in self.requirements)

    def requires_exact_match(self, field: str) -> str | None:
        """The value ``field`` must equal (``field=v``), else None."""
        for req in self.requirements:
            if req.field == field:
                return req.value if req.operator in ("=", "==") else None
        return None

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value a field selector compares for ``path``: a dotted path into the object, as a string.

    Missing fields (and nulls) are ``""``; booleans are ``true``/``false``; numbers print like Go.
    """
    kind = obj.get("kind")
    if isinstance(kind, str):
        path = _FIELD_ALIASES.get(kind, {}).get(path, path)
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    return _stringify(value)


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not escaped with a backslash (``fields.splitTerms``)."""
    if not text:
        return []
    terms: list[str] = []
    start = 0
    slash = False
    for i, char in enumerate(text):
        if slash:
            slash = False
        elif char == "\\":
            slash = True
        elif char == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """The first operator in ``term`` splits it (``fields.splitTerm``): keys cannot be escaped."""
    for i in range(len(term)):
        for op in _FIELD_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def unescape_field_value(value: str) -> str:
    """``fields.UnescapeValue``: ``\\\\``, ``\\,`` and ``\\=`` are the only escapes; bare ``,``/``=`` are errors."""
    out: list[str] = []
    slash = False
    for char in value:
        if slash:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            slash = False
        elif char == "\\":
            slash = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {char}")
        else:
            out.append(char)
    if slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def escape_field_value(value: str) -> str:
    """``fields.EscapeValue``, the inverse of :func:`unescape_field_value`."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a ``fieldSelector`` query parameter (``fields.ParseSelector``); None or "" selects all.

    Any dotted path is accepted as a field label (the real apiserver accepts only the labels each
    resource supports: see :attr:`FieldSelector.fields`). No whitespace is trimmed, as in Go.
    """
    if not text:
        return FieldSelector()
    parts = sorted(_split_terms(text))
    requirements: list[FieldRequirement] = []
    for part in parts:
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        requirements.append(FieldRequirement(field=lhs, operator=op, value=unescape_field_value(rhs)))
    return FieldSelector(tuple(requirements))
