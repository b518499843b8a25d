"""AWS Lambda entry point: the sfmlops FastAPI app behind API Gateway (HTTP API, payload v2) via Mangum.

Handler setting: ``handler.handler``. Settings come from the function's SFMLOPS_* environment variables.
The app is built once per container (cold start) and reused by warm invocations.

Each invocation writes one JSON line to stderr (CloudWatch Logs): the API Gateway request id, method,
path (no query string, no headers: never the key), status and ``handler_ms``, the time spent in this
handler. Next to the platform's ``REPORT`` line it tells the handler's own time from the runtime's (and
the emulator's: MiniStack waits up to 50 ms after every invocation for a log line, 5 ms once one came).

With ``SFMLOPS_METRICS_REMOTE_WRITE_URL`` set (Terraform sets it to the AMP workspace), the invocation that ends
``SFMLOPS_METRICS_REMOTE_WRITE_INTERVAL_S`` after the container's last write (or its first invocation) writes the
API's metrics there (:mod:`app.monitoring.remote_write`); its line then has ``metrics_write_ms`` and
``metrics_written`` (a failed write is logged, the response is unchanged).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from mangum import Mangum

from app.api.main import create_app, freeze_startup_objects
from app.config import get_settings
from app.monitoring.remote_write import RemoteWriter

_settings = get_settings()
app = create_app(_settings)
_mangum = Mangum(app, lifespan="off", api_gateway_base_path=_settings.api_root_path or "/")
_metrics = RemoteWriter.from_settings(_settings)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Serve one API Gateway event through the app; logs one line with the handler's own time."""
    started = time.perf_counter()
    status: int | None = None
    try:
        response = _mangum(event, context)
        status = response.get("statusCode") if isinstance(response, dict) else None
        return response
    finally:
        ev = event if isinstance(event, dict) else {}
        ctx = ev.get("requestContext") or {}
        http = ctx.get("http") or {}
        line: dict[str, Any] = {
            "sfmlops": "api-invocation",
            "request_id": ctx.get("requestId"),
            "method": http.get("method") or ev.get("httpMethod"),
            "path": http.get("path") or ev.get("path"),
            "status": status,
            "handler_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        if _metrics is not None and _metrics.due():
            before = time.perf_counter()
            line["metrics_written"] = _metrics.write()
            line["metrics_write_ms"] = round((time.perf_counter() - before) * 1000, 3)
        sys.stderr.write(json.dumps(line) + "\n")
        sys.stderr.flush()


freeze_startup_objects()  # the cold start's objects live as long as the container
