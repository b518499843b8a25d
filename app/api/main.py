"""The FastAPI application factory, its one ASGI middleware (metrics, request id, size limit), and ``run_api``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from app.api import db
from app.api.errors import error_response, error_responses, install_error_handlers, scope_request_id
from app.api.limits import RateLimiter
from app.api.routes import accuracy, alerts, forecasts, health, models, planning, stores_ui, training_jobs
from app.config import Settings, get_settings
from app.monitoring.metrics import RequestMetrics, metrics_endpoint

API_VERSION = "1.0.0"


class ApiMiddleware:
    """The API's one pure ASGI middleware (outermost): metrics, request id and the request-size limit.

    * times every HTTP request and records it under its route template and status (413s and 404s
      included: :class:`app.monitoring.metrics.RequestMetrics`);
    * gives it its id (:func:`app.api.errors.scope_request_id`) and sets ``X-Request-ID`` on its response;
    * answers 413 for a body over ``max_bytes``: by Content-Length, or for a body not framed by one
      (chunked, or any body under Lambda) by reading it here, before the app sees it (at most
      ``max_bytes``, so buffering is cheap), so that a chunked body is refused as soon as it passes the
      limit rather than failing inside the app's body parsing. A body an HTTP/1.x server frames by a
      Content-Length within the limit cannot exceed it and is passed on as it comes.

    One layer instead of three: each layer costs a coroutine frame, a ``send`` wrapper and its awaits on
    every request.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = RequestMetrics()

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = error_response(
            413,
            f"Request body larger than {self.max_bytes} bytes (SFMLOPS_API_MAX_BODY_BYTES)",
            rid=scope_request_id(scope),
        )
        await response(scope, receive, send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        rid = (b"x-request-id", scope_request_id(scope).encode("latin-1"))

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"x-request-id"]
                headers.append(rid)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._limited(scope, receive, send_with_id)
        finally:
            self.metrics.observe(scope, status, time.perf_counter() - started)

    async def _limited(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        framed = scope.get("http_version") in ("1.0", "1.1") and "aws.event" not in scope
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                    framed = False
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
            elif name == b"transfer-encoding":
                framed = False
        if framed:  # no body, or one of at most Content-Length <= max_bytes bytes (the server's framing)
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: :func:`app.config.get_settings`).

    Docs are at ``/docs`` and the schema at ``/openapi.json``; under an API Gateway named stage set
    ``SFMLOPS_API_ROOT_PATH=/<stage>`` (the ``$default`` stage needs nothing).
    """
    settings = settings or get_settings()
    settings.require_api_key_pepper()  # bad config fails at start-up, naming the setting
    app = FastAPI(
        title="sfmlops API",
        version=API_VERSION,
        description=(
            "Job-submission middle man and forecast API for sfmlops. Every route except `/healthz` needs an "
            "`X-API-Key` header (keys are issued with `sfmlops api-key create NAME`) and is rate-limited per "
            "client (429 with `Retry-After`). `/healthz` answers everyone with ok / not ok only; with a valid key "
            "it adds each dependency's detail. Errors share one shape: "
            '`{"error": {"status", "code", "message", "details", "request_id"}}`; every response carries '
            "`X-Request-ID`, and a 5xx message says only what failed (the details are logged under that id)."
        ),
        root_path=settings.api_root_path,
        lifespan=db.lifespan,  # closes the async database pools of its loop at shutdown
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.api_rate_limit_per_minute, settings.api_heavy_rate_limit_per_minute)
    install_error_handlers(app)
    # Every authenticated route is rate-limited per client (in the ClientDep dependency) and may answer 429.
    limited = error_responses(429)
    forecasts.add_store_forecast_route(app, limited)  # the hottest route first, on the app itself
    app.include_router(health.router)
    app.include_router(training_jobs.router, responses=limited)
    app.include_router(forecasts.router, responses=limited)
    app.include_router(models.router, responses=limited)
    app.include_router(stores_ui.router, responses=limited)
    app.include_router(alerts.router, responses=limited)
    if settings.api_serves_metrics:  # Prometheus scrapes it (local stack); on Lambda metrics are remote-written
        app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.include_router(accuracy.router, responses=limited)
    app.include_router(planning.router, responses=limited)
    app.add_middleware(ApiMiddleware, max_bytes=settings.api_max_body_bytes)  # metrics, request id, body limit
    return app


def freeze_startup_objects() -> None:
    """Move every object alive after start-up out of the garbage collector's reach (``gc.freeze``).

    The app, its routes, pydantic models and the imported libraries are ~90k tracked objects that live as
    long as the process; without this each full (generation 2) collection walks them all, a pause of tens of
    milliseconds on a busy request path. Frozen, a full collection only walks what requests allocate.
    """
    import gc

    gc.collect()
    gc.freeze()


def run_api(settings: Settings | None = None) -> None:
    """Serve the API with uvicorn on ``settings.bind_host:settings.api_port`` (``sfmlops api``)."""
    import uvicorn

    settings = settings or get_settings()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.bind_host,
        port=settings.api_port,
        log_level="info",
        access_log=settings.api_access_log,
        proxy_headers=False,
    )
    config.load()  # imports the loop and protocol modules now, so that they are frozen too
    freeze_startup_objects()
    uvicorn.Server(config).run()
