"""API errors of the emulator, rendered as ``meta.k8s.io/v1`` Status objects like the apiserver's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_object(
    code: int,
    message: str,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A failure ``Status`` as the apiserver sends it."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else REASONS.get(code, ""),
        "code": code,
    }
    if details:
        status["details"] = dict(details)
    return status


class ApiError(Exception):
    """A request the emulator refuses; ``status`` is the Status body sent to HTTP clients.

    The in-process helpers of :class:`~kube_emulator.Emulator` raise it too, with the
    same Status that an HTTP client would get.
    """

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        status: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.status: dict[str, Any] = (
            dict(status) if status is not None else status_object(code, message, reason, details)
        )
        self.reason: str = str(self.status.get("reason", ""))
        self.headers: dict[str, str] = dict(headers or {})


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    """``metav1.StatusDetails``: its fields are ``omitempty``, so an empty name or the core group "" is left out."""
    result: dict[str, Any] = {"name": name, "group": group, "kind": kind, **extra}
    return {key: value for key, value in result.items() if value not in ("", None)}


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        f'{_qualified(plural, group)} "{name}" not found',
        "NotFound",
        details(name, group, plural),
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'{_qualified(plural, group)} "{name}" already exists',
        "AlreadyExists",
        details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        "Conflict",
        details(name, group, plural),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def invalid(kind: str, group: str, name: str, causes: Sequence[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; ``causes`` are (field, reason, message) like ``field.ErrorTypeRequired``.

    ``reason`` is the cause type as the apiserver spells it: FieldValueRequired,
    FieldValueInvalid, FieldValueForbidden, FieldValueNotSupported, FieldValueTypeInvalid...
    """
    parts = [f"{field}: {message}" if field else message for field, _, message in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        f'{qualified} "{name}" is invalid: {summary}',
        "Invalid",
        details(name, group, kind, causes=[{"reason": reason, "message": message, "field": field}
                                           for field, reason, message in causes]),
    )
