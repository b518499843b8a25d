"""Helpers for the API tests: API Gateway v2 events, invoking the Lambda handler, the error shape."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.config import PROJECT_ROOT

EVENTS = Path(__file__).parent / "events"


class LambdaContext:
    """The attributes Mangum and typical handlers read from the Lambda context."""

    function_name = "sfmlops-api"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:sfmlops-api"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/sfmlops-api"
    log_stream_name = "2026/11/26/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def make_event(
    name: str,
    *,
    method: str | None = None,
    path: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | str | dict | None = None,
    stage: str = "$default",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event from a fixture file, with overrides."""
    event = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    ctx = event["requestContext"]
    if method:
        ctx["http"]["method"] = method
    if path:
        event["rawPath"] = path
        ctx["http"]["path"] = path
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    ctx["stage"] = stage
    if stage != "$default":
        event["routeKey"] = "ANY /{proxy+}"
        ctx["routeKey"] = "ANY /{proxy+}"
    ctx["requestId"] = uuid.uuid4().hex[:16]
    if headers:
        event["headers"].update({k.lower(): v for k, v in headers.items()})
    if body is not None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body if isinstance(body, bytes) else body.encode()
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
        event["headers"]["content-length"] = str(len(raw))
        event["headers"].setdefault("content-type", "application/json")
    return event


def invoke(handler: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Call a Lambda handler; returns (status, headers, decoded body)."""
    out = handler(event, LambdaContext())
    body = out.get("body") or ""
    if out.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    headers = {k.lower(): v for k, v in (out.get("headers") or {}).items()}
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    return out["statusCode"], headers, parsed


def load_lambda_handler(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    """Import ``lambda/handler.py`` afresh with ``env`` (as the Lambda runtime would on a cold start)."""
    from app.config import get_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location(f"sfmlops_lambda_{uuid.uuid4().hex}", PROJECT_ROOT / "lambda" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    get_settings.cache_clear()
    return module.handler


def assert_error_shape(body: Any, status: int) -> dict[str, Any]:
    """The body is the one error shape with this status; returns the inner error."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert err["status"] == status
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    return err




def h(key: str, idem: str | None = None) -> dict[str, str]:
    """Request headers with an API key (and an Idempotency-Key)."""
    return {"X-API-Key": key, **({"Idempotency-Key": idem} if idem else {})}


def wait_for(api: Any, key: str, job_id: str, states: set[str], timeout_s: float = 180) -> dict[str, Any]:
    """Poll a training job through the API until it is in one of ``states`` (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        resp = api.get(f"/v1/training-jobs/{job_id}", headers=h(key))
        assert resp.status_code == 200, resp.text
        job = resp.json()
        if job["state"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.5)
