"""Errors under `/fhir/R4` are FHIR `OperationOutcome`s (`application/fhir+json`), not problem+json:
`install_handlers(app)` wraps the app's error handlers so that a request to the FHIR base gets the
same status with an OperationOutcome body (the problem's `type` and detail kept in it)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from prm.core.errors import DomainError
from prm.fhir import mapping

FHIR_JSON = "application/fhir+json"
BASE_PATH = "/fhir/R4"

# HTTP status -> OperationOutcome issue type
ISSUE_FOR_STATUS = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                    406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-long",
                    415: "not-supported", 422: "invalid", 429: "throttled", 503: "transient"}


def outcome_response(status: int, diagnostics: str, *, code: str | None = None,
                     expression: list[str] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = mapping.operation_outcome(code or ISSUE_FOR_STATUS.get(status, "exception"), diagnostics,
                                     expression=expression or ())
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def is_fhir(request: Request) -> bool:
    return request.url.path == BASE_PATH or request.url.path.startswith(BASE_PATH + "/")


def install_handlers(app: FastAPI) -> None:
    """Answer errors of FHIR requests as OperationOutcome; everything else as before."""
    handlers: dict[Any, Any] = app.exception_handlers
    for exc_type in (DomainError, RequestValidationError, StarletteHTTPException):
        original = handlers.get(exc_type)
        if original is None:
            continue

        async def handler(request: Request, exc: Exception, _original: Any = original) -> Response:
            response: Response = await _original(request, exc)
            if not is_fhir(request):
                return response
            if isinstance(exc, DomainError):
                detail = exc.detail
                fields = [e["field"] for e in exc.errors or [] if "field" in e]
            elif isinstance(exc, RequestValidationError):
                errors = exc.errors()
                fields = [".".join(str(p) for p in e.get("loc", ())[1:]) for e in errors]
                detail = "; ".join(f"{f}: {e.get('msg', '')}" for f, e in zip(fields, errors, strict=True))
            else:
                raw_detail = getattr(exc, "detail", None)
                detail = raw_detail if isinstance(raw_detail, str) else "HTTP error"
                fields = []
                if getattr(exc, "status_code", None) == 404 and detail == "Not Found":
                    detail = f"No route for {request.method} {request.url.path}"
            status = response.status_code
            if isinstance(exc, RequestValidationError) and status == 422:
                status = 400  # FHIR: a malformed search or request is 400
            headers = {k: v for k, v in response.headers.items() if k.lower() in ("retry-after", "www-authenticate")}
            return outcome_response(status, detail, expression=[f for f in fields if f] or None,
                                    headers=headers or None)

        app.add_exception_handler(exc_type, handler)
