"""The one error tree of Lectern.

Every error a caller may see is a ``LecternError``; ``shared.http`` maps it to
the contract's JSON (``{"error": {"code", "message", "fields"?}}``) in one
place. Anything else that escapes a handler becomes a 500 with no internals.

    LecternError
    ├── BadRequest            400  malformed body or query
    ├── Unauthorized          401  missing or invalid token
    ├── Forbidden             403  wrong role
    ├── NotFound              404  unknown, or another user's private row
    ├── MethodNotAllowed      405
    ├── Conflict              409  conflicting state or duplicate
    ├── PayloadTooLarge       413
    ├── UnsupportedMediaType  415
    ├── ValidationFailed      422  invalid field values, ``fields`` names them
    ├── RateLimited           429
    └── ServiceUnavailable    503  a dependency is down; safe to retry

``ConfigurationError`` is separate: it is raised at start, never per request.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequest",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "LecternError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class ConfigurationError(Exception):
    """A missing or malformed setting; its message is one line naming it."""


class LecternError(Exception):
    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.fields = fields
        self.headers = headers or {}
        # For the log only, never the response: what went wrong upstream.
        self.detail = detail

    def to_body(self, request_id: str | None = None) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields is not None:
            error["fields"] = self.fields
        if request_id is not None:
            error["request_id"] = request_id
        return {"error": error}


class BadRequest(LecternError):
    status = 400
    default_code = "bad_request"


class Unauthorized(LecternError):
    status = 401
    default_code = "unauthorized"


class Forbidden(LecternError):
    status = 403
    default_code = "forbidden"


class NotFound(LecternError):
    status = 404
    default_code = "not_found"


class MethodNotAllowed(LecternError):
    status = 405
    default_code = "method_not_allowed"


class Conflict(LecternError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(LecternError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(LecternError):
    status = 415
    default_code = "unsupported_media_type"


class ValidationFailed(LecternError):
    status = 422
    default_code = "validation_failed"

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        names = ", ".join(sorted(fields))
        super().__init__(message or f"invalid value for: {names}", fields=fields)


class RateLimited(LecternError):
    status = 429
    default_code = "rate_limited"


class ServiceUnavailable(LecternError):
    """A dependency (the JWKS endpoint, the database) cannot be reached; retry later.

    Always carries ``Retry-After``: the client is told when, not just that.
    """

    status = 503
    default_code = "service_unavailable"
    retry_after_seconds: ClassVar[int] = 5

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        headers = {"Retry-After": str(self.retry_after_seconds), **(headers or {})}
        super().__init__(message, code=code, headers=headers, detail=detail)
