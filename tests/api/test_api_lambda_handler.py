"""API Gateway v2 events through ``lambda/handler.py`` (Mangum); no services needed.

Every dependency address points at a closed loopback port, so these tests also show how the API behaves
when its dependencies are down.
"""

from __future__ import annotations

import json
import logging

import pytest
from apitest_support import assert_error_shape, invoke, load_lambda_handler, make_event

from app.stack.base import free_port


@pytest.fixture()
def down_port() -> int:
    return free_port()


@pytest.fixture()
def down_env(down_port: int) -> dict[str, str]:
    port = down_port
    return {
        "SFMLOPS_PG_PORT": str(port),
        "SFMLOPS_RAY_ADDRESS": f"http://127.0.0.1:{port}",
        "SFMLOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        "SFMLOPS_API_MAX_BODY_BYTES": "2048",
    }


@pytest.fixture()
def handler(monkeypatch: pytest.MonkeyPatch, down_env: dict[str, str]):
    return load_lambda_handler(monkeypatch, down_env)


def test_healthz_reports_each_dependency_down_and_nothing_else(handler, down_port: int) -> None:
    status, headers, body = invoke(handler, make_event("healthz"))
    assert status == 503
    assert headers["content-type"] == "application/json"
    # Without a key: ok / not ok per dependency, no address, port, URL or error text.
    assert body == {"status": "down", "checks": {name: {"ok": False} for name in ("database", "ray", "mlflow")}}
    assert str(down_port) not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)


def test_openapi_and_docs_work_on_default_stage(handler) -> None:
    status, _, schema = invoke(handler, make_event("healthz", path="/openapi.json"))
    assert status == 200
    assert {"/healthz", "/v1/training-jobs", "/v1/training-jobs/{job_id}", "/v1/training-jobs/{job_id}/logs",
            "/v1/training-jobs/{job_id}/stop", "/v1/stores/{store_id}/forecast", "/v1/forecasts",
            "/v1/models"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "API key issued by `sfmlops api-key create NAME`",
    }
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert schema["paths"]["/v1/models"]["get"]["security"] == [{"APIKeyHeader": []}]
    status, headers, html = invoke(handler, make_event("healthz", path="/docs"))
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "url: '/openapi.json'" in html


def test_docs_work_under_a_named_stage(monkeypatch: pytest.MonkeyPatch, down_env: dict[str, str]) -> None:
    handler = load_lambda_handler(monkeypatch, {**down_env, "SFMLOPS_API_ROOT_PATH": "/prod"})
    status, _, html = invoke(handler, make_event("healthz", path="/prod/docs", stage="prod"))
    assert status == 200
    assert "url: '/prod/openapi.json'" in html
    status, _, schema = invoke(handler, make_event("healthz", path="/prod/openapi.json", stage="prod"))
    assert status == 200 and "/v1/models" in schema["paths"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/training-jobs"),
        ("GET", "/v1/training-jobs/sfm-0123"),
        ("GET", "/v1/training-jobs/sfm-0123/logs"),
        ("POST", "/v1/training-jobs/sfm-0123/stop"),
        ("GET", "/v1/stores/1/forecast"),
        ("GET", "/v1/models"),
    ],
)
def test_every_route_but_health_needs_a_key(handler, method: str, path: str) -> None:
    status, headers, body = invoke(handler, make_event("healthz", method=method, path=path))
    assert status == 401
    assert headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    assert "X-API-Key" in assert_error_shape(body, 401)["message"]


def test_submit_event_without_key_is_401(handler) -> None:
    event = make_event("submit_job")
    status, _, body = invoke(handler, event)
    assert status == 401
    err = assert_error_shape(body, 401)
    assert err["request_id"] == event["requestContext"]["requestId"]


def test_oversized_body_is_413_before_anything_else(handler) -> None:
    status, _, body = invoke(handler, make_event("submit_job", body=b"x" * 5000))
    assert status == 413
    assert "SFMLOPS_API_MAX_BODY_BYTES" in assert_error_shape(body, 413)["message"]


def test_with_a_key_but_no_database_is_503_with_request_id_and_no_internals(
    handler, down_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    event = make_event("submit_job", headers={"X-API-Key": "sfm_00000000_whatever"})
    with caplog.at_level(logging.ERROR, logger="app.api"):
        status, headers, body = invoke(handler, event)
    assert status == 503
    err = assert_error_shape(body, 503)
    rid = event["requestContext"]["requestId"]
    assert err["request_id"] == headers["x-request-id"] == rid and rid in err["message"]
    # The caller learns neither the database's address nor the driver's error text ...
    text = json.dumps(body)
    assert str(down_port) not in text and "127.0.0.1" not in text and "SFMLOPS_PG" not in text
    assert "refused" not in text.lower() and "connection" not in text.lower()
    # ... the log has them, under the request id.
    logged = [r.getMessage() for r in caplog.records if rid in r.getMessage()]
    assert logged and str(down_port) in logged[0], caplog.text


def test_unknown_route_and_method_use_the_error_shape(handler) -> None:
    status, _, body = invoke(handler, make_event("healthz", path="/v2/nothing"))
    assert status == 404 and "/v2/nothing" in assert_error_shape(body, 404)["message"]
    status, _, body = invoke(handler, make_event("healthz", method="DELETE", path="/healthz"))
    assert status == 405
    assert_error_shape(body, 405)


def test_handler_imports_no_heavy_packages() -> None:
    import subprocess
    import sys

    from app.config import PROJECT_ROOT

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('h', r'{PROJECT_ROOT / 'lambda' / 'handler.py'}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "heavy = sorted({n.split('.')[0] for n in sys.modules} & {'ray', 'torch', 'pandas', 'numpy', 'mlflow', 'boto3', 'pyspark'})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == ""


def test_each_invocation_logs_one_line_with_its_status_and_handler_time_and_never_the_key(
    handler, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    key = "sfm_00000000_secret-never-logged"
    events = [
        make_event("healthz", path="/v2/nothing"),
        make_event("submit_job", headers={"X-API-Key": key}),
        make_event("healthz", path="/v1/stores/7/forecast", query="days=3"),
    ]
    statuses = [invoke(handler, e)[0] for e in events]
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith('{"sfmlops": "api-invocation"')]
    assert [(x["request_id"], x["method"], x["path"], x["status"]) for x in lines] == [
        (e["requestContext"]["requestId"], e["requestContext"]["http"]["method"], e["rawPath"], s)
        for e, s in zip(events, statuses, strict=True)
    ]
    assert statuses == [404, 503, 401]
    assert all(isinstance(x["handler_ms"], float) and x["handler_ms"] > 0 for x in lines)
    assert key not in err and "days=3" not in err
