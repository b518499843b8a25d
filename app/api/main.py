"""The FastAPI application factory, the request-size limit, and ``run_api`` for ``sfmlops api``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.api.errors import RequestIdMiddleware, error_response, error_responses, install_error_handlers, scope_request_id
from app.api.limits import RateLimiter
from app.api.routes import accuracy, alerts, forecasts, health, models, stores_ui, training_jobs
from app.config import Settings, get_settings
from app.monitoring.metrics import MetricsMiddleware, metrics_endpoint

API_VERSION = "1.0.0"


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes``, by Content-Length or by counting.

    The body is read here, before the app sees it (at most ``max_bytes``, so buffering is cheap): a chunked
    body without Content-Length is refused with 413 as soon as it passes the limit, rather than failing
    inside the app's body parsing.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._too_large(scope, receive, send)
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
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.api_rate_limit_per_minute, settings.api_heavy_rate_limit_per_minute)
    install_error_handlers(app)
    app.include_router(health.router)
    # Every authenticated route is rate-limited per client (in the ClientDep dependency) and may answer 429.
    limited = error_responses(429)
    app.include_router(training_jobs.router, responses=limited)
    app.include_router(forecasts.router, responses=limited)
    app.include_router(models.router, responses=limited)
    app.include_router(stores_ui.router, responses=limited)
    app.include_router(alerts.router, responses=limited)
    if settings.api_serves_metrics:  # Prometheus scrapes it (local stack); on Lambda metrics are remote-written
        app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.include_router(accuracy.router, responses=limited)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestIdMiddleware)  # outermost: the 413 above carries the id too
    app.add_middleware(MetricsMiddleware)  # times every request, 413s and 404s included (monitoring/README.md)
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
