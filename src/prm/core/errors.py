"""Domain errors. Services raise these; one handler maps them to RFC 9457 problem+json.

Each error has an HTTP status, a stable machine `code` (a slug such as `slot_taken`) and a
human `detail`. `type` in the response is `https://prm.dev/problems/<code>`.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://prm.dev/problems/"


class DomainError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


class NotFound(DomainError):
    status = 404
    default_code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    default_code = "conflict"
    title = "Conflict"


class ValidationFailed(DomainError):
    status = 422
    default_code = "validation_failed"
    title = "Validation failed"

    @classmethod
    def field(cls, field: str, message: str, *, code: str = "validation_failed", **extra: Any) -> ValidationFailed:
        """A validation error about one field (dotted path, e.g. `phones.0.number`)."""
        return cls(
            f"{field}: {message}",
            code=code,
            errors=[{"field": field, "message": message, "type": code}],
            **extra,
        )


class PermissionDenied(DomainError):
    status = 403
    default_code = "permission_denied"
    title = "Forbidden"


class Unauthenticated(DomainError):
    status = 401
    default_code = "unauthenticated"
    title = "Unauthenticated"

    def __init__(self, detail: str = "Missing or invalid credentials", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class PreconditionFailed(DomainError):
    status = 412
    default_code = "precondition_failed"
    title = "Precondition failed"


class RateLimited(DomainError):
    status = 429
    default_code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after_seconds: int, detail: str = "Rate limit exceeded") -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_seconds))})


class BadRequest(DomainError):
    status = 400
    default_code = "bad_request"
    title = "Bad request"


class Unavailable(DomainError):
    status = 503
    default_code = "unavailable"
    title = "Service unavailable"


class PayloadTooLarge(DomainError):
    status = 413
    default_code = "payload_too_large"
    title = "Payload too large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"The request body exceeds the limit of {limit_bytes} bytes", limit_bytes=limit_bytes)


class RequestTimeout(DomainError):
    status = 408
    default_code = "request_timeout"
    title = "Request timeout"

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__(f"The request body did not arrive within {timeout_seconds:g} seconds",
                         timeout_seconds=timeout_seconds)
