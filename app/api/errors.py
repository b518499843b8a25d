"""One JSON error shape for every error the API returns.

Every non-2xx response body is ``{"error": {"status", "code", "message", "details", "request_id"}}``,
whether it comes from a route, request validation, the body-size limit, routing (404/405) or a bug (500).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("app.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ErrorDetail(BaseModel):
    """One problem with the request, naming the field it concerns."""

    field: str | None = Field(None, description="Dotted location of the bad field, e.g. body.store or header.x-api-key")
    message: str = Field(..., description="What is wrong with it")


class ErrorInfo(BaseModel):
    """The error itself."""

    status: int = Field(..., description="HTTP status code, repeated for clients that lose it")
    code: str = Field(..., description="Stable machine-readable error code")
    message: str = Field(..., description="Human-readable explanation")
    details: list[ErrorDetail] = Field(default_factory=list, description="Per-field problems (validation)")
    request_id: str | None = Field(None, description="Id of the request, for the logs")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


class ApiError(Exception):
    """An error the API reports to the caller with a status, a code and a message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.details = details or []
        self.headers = headers or {}


def request_id(request: Request) -> str:
    """The id of the request: API Gateway's request id under Lambda, else a fresh one (cached on state)."""
    rid = getattr(request.state, "request_id", None)
    if rid:
        return rid
    event = request.scope.get("aws.event") or {}
    rid = (event.get("requestContext") or {}).get("requestId") or request.headers.get("x-request-id")
    if not rid:
        rid = uuid.uuid4().hex
    request.state.request_id = rid
    return rid


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
    rid: str | None = None,
) -> JSONResponse:
    """Build the JSON response for one error."""
    body = ErrorResponse(
        error=ErrorInfo(
            status=status,
            code=code or _CODES.get(status, "error"),
            message=message,
            details=details or [],
            request_id=rid,
        )
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "header" and len(parts) > 1:
        parts[1] = parts[1].replace("_", "-").lower()
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type through :func:`error_response`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers, rid=request_id(request)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [ErrorDetail(field=_loc(e.get("loc", ())), message=e.get("msg", "invalid")) for e in exc.errors()]
        fields = ", ".join(d.field or "?" for d in details) or "request"
        return error_response(422, f"Invalid request: {fields}", details=details, rid=request_id(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else _CODES.get(exc.status_code, "error")
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.method} {request.url.path}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None), rid=request_id(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.exception("unhandled error in %s %s (request %s)", request.method, request.url.path, rid)
        return error_response(500, "Internal error; see the server log for this request id", rid=rid)


#: OpenAPI ``responses`` entries, so that documented error statuses carry the error schema.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response declarations with :class:`ErrorResponse` for each status."""
    return {s: {"model": ErrorResponse, "description": _CODES.get(s, "error").replace("_", " ")} for s in statuses}
