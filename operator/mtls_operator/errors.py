"""The project's own exceptions. Handlers translate them into kopf's retry semantics in one place."""


class MTLSError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(MTLSError):
    """A setting (environment variable or flag) is invalid; the operator refuses to start."""


class SpecError(MTLSError):
    """An MTLSIdentity spec can never work as written; the user must change it.

    ``field`` is the path of the offending field (``spec.duration``), so the status names it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PolicyError(SpecError):
    """A spec asks for something the security policy forbids (a foreign DNS name, for example)."""


class PKIError(MTLSError):
    """Key generation, signing or parsing failed."""


class CAError(PKIError):
    """The CA is missing, malformed or unusable (not a CA, key mismatch, expired...)."""


class ChainError(PKIError):
    """An issued certificate does not verify against the CA: it must never be written."""


class KubernetesAPIError(MTLSError):
    """A Kubernetes API call failed. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class NotFoundError(KubernetesAPIError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=404, retryable=False)


class ConflictError(KubernetesAPIError):
    """409: the object exists already, or our resourceVersion was stale."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409, retryable=True)
