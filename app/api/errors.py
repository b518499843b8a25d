"""One JSON error shape for every error the API returns.

Every non-2xx response body is ``{"error": {"status", "code", "message", "details", "request_id"}}``,
whether it comes from a route, request validation, the body-size limit, routing (404/405) or a bug (500).
Every response carries the request's id in ``X-Request-ID`` (and error bodies in ``request_id``); a 5xx body
says only what kind of failure it was, the details are logged under that id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import MutableMapping
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
    """An error the API reports to the caller with a status, a code and a message.

    ``message`` is what the caller reads. A server-side error (5xx) must not tell callers about the inside
    (addresses, driver or upstream error text), so a 5xx ``message`` is shown only with ``expose=True`` (a
    message written for callers, e.g. "no champion model yet") or when the sensitive part was split off into
    ``internal``; otherwise the caller reads a generic message with the request id. ``message`` and
    ``internal`` always go to the server log, under the request id.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
        internal: str | None = None,
        expose: bool | None = None,
    ) -> None:
        super().__init__(message if internal is None else f"{message} [{internal}]")
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.details = details or []
        self.headers = headers or {}
        self.internal = internal
        self.expose = (status < 500 or internal is not None) if expose is None else expose


#: What a caller reads for a server-side error whose message is not meant for callers.
_GENERIC = {
    500: "Internal error",
    502: "An upstream service of the API answered with an error",
    503: "The API or a service it depends on is unavailable; try again later",
    504: "An upstream service of the API did not answer in time",
}
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _new_request_id(scope: MutableMapping[str, Any]) -> str:
    event = scope.get("aws.event")
    rid = ((event.get("requestContext") or {}).get("requestId") if isinstance(event, dict) else None) or ""
    if not rid:
        for name, value in scope.get("headers") or []:
            if name == b"x-request-id":
                rid = value.decode("latin-1")
                break
    # A caller-chosen id is taken only when it is short and plain: it ends up in the log.
    return str(rid) if rid and _REQUEST_ID_RE.match(str(rid)) else uuid.uuid4().hex


def scope_request_id(scope: MutableMapping[str, Any]) -> str:
    """The id of the request in an ASGI scope, assigned on first use and kept in ``scope["state"]``."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if not rid:
        rid = state["request_id"] = _new_request_id(scope)
    return rid


def request_id(request: Request) -> str:
    """The id of the request: API Gateway's request id under Lambda, a plain ``X-Request-ID``, or a fresh one."""
    return scope_request_id(request.scope)


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None,
    rid: str | None = None,
) -> JSONResponse:
    """Build the JSON response for one error (with ``X-Request-ID`` when ``rid`` is given)."""
    body = ErrorResponse(
        error=ErrorInfo(
            status=status,
            code=code or _CODES.get(status, "error"),
            message=message,
            details=details or [],
            request_id=rid,
        )
    )
    headers = dict(headers or {})
    if rid:
        headers[REQUEST_ID_HEADER] = rid
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def public_message(exc: ApiError, rid: str) -> str:
    """What the caller reads for ``exc``: its message, or for a 5xx not meant for callers a generic one."""
    if exc.expose:
        return exc.message
    return f"{_GENERIC.get(exc.status, 'Server error')} (request id {rid}; the details are in the server log)"


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "header" and len(parts) > 1:
        parts[1] = parts[1].replace("_", "-").lower()
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type through :func:`error_response`."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        rid = request_id(request)
        if exc.status >= 500:
            log.error(
                "request %s %s %s -> %d: %s%s", rid, request.method, request.url.path, exc.status, exc.message,
                f" [{exc.internal}]" if exc.internal else "",
            )
        return error_response(
            exc.status, public_message(exc, rid), code=exc.code, details=exc.details, headers=exc.headers, rid=rid
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
        log.exception("request %s %s %s -> 500: unhandled error", rid, request.method, request.url.path)
        return error_response(500, public_message(ApiError(500, "unhandled"), rid), rid=rid)


#: OpenAPI ``responses`` entries, so that documented error statuses carry the error schema.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI response declarations with :class:`ErrorResponse` for each status."""
    return {s: {"model": ErrorResponse, "description": _CODES.get(s, "error").replace("_", " ")} for s in statuses}
