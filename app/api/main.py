"""The FastAPI application factory, the request-size limit, and ``run_api`` for ``sfmlops api``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.api.errors import error_response, install_error_handlers
from app.api.routes import forecasts, health, models, stores_ui, training_jobs
from app.config import Settings, get_settings

API_VERSION = "1.0.0"


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over ``max_bytes`` (by Content-Length, or while streaming)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> Any:
        return error_response(413, f"Request body larger than {self.max_bytes} bytes (SFMLOPS_API_MAX_BODY_BYTES)")

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
                    await self._too_large()(scope, receive, send)
                    return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large()(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


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
            "`X-API-Key` header (keys are issued with `sfmlops api-key create NAME`). Errors share one shape: "
            '`{"error": {"status", "code", "message", "details", "request_id"}}`.'
        ),
        root_path=settings.api_root_path,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(training_jobs.router)
    app.include_router(forecasts.router)
    app.include_router(models.router)
    app.include_router(stores_ui.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    return app


def run_api(settings: Settings | None = None) -> None:
    """Serve the API with uvicorn on ``settings.bind_host:settings.api_port`` (``sfmlops api``)."""
    import uvicorn

    settings = settings or get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.api_port,
        log_level="info",
        proxy_headers=False,
    )
