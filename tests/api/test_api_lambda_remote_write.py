"""The API in Lambda writes its metrics to a real Prometheus' remote-write receiver (what AMP is on AWS).

A private Prometheus (the local stack's service, ``--web.enable-remote-write-receiver``) on a free loopback port
under a tmp state dir; the handler (``lambda/handler.py``) is loaded with every dependency down, as in
test_api_lambda_handler.py, and serves ``/healthz`` (503). Writes are SigV4-signed with test credentials (a
Prometheus ignores the header; AMP requires it): the signed request is the one that is accepted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from apitest_support import invoke, load_lambda_handler, make_event

from app.config import get_settings
from app.stack.base import free_port

PROMQL = 'sfmlops_api_request_duration_seconds_count{job="sfmlops_api",route="/healthz",method="GET",status="503"}'


@pytest.fixture()
def prometheus(tmp_path) -> Iterator[str]:
    from app.stack.prometheus import Prometheus

    base = get_settings()
    settings = base.model_copy(update={"state_dir": tmp_path, "prometheus_port": free_port(), "prometheus_url": None})
    service = Prometheus(settings)
    service.start()
    try:
        yield service.address
    finally:
        service.stop()


def _down_env(url: str, interval_s: float) -> dict[str, str]:
    port = free_port()
    return {
        "SFMLOPS_PG_PORT": str(port),
        "SFMLOPS_RAY_ADDRESS": f"http://127.0.0.1:{port}",
        "SFMLOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        "SFMLOPS_METRICS_REMOTE_WRITE_URL": url,
        "SFMLOPS_METRICS_REMOTE_WRITE_INTERVAL_S": str(interval_s),
        "SFMLOPS_METRICS_REMOTE_WRITE_SIGV4": "true",
        "AWS_ACCESS_KEY_ID": "AKIDLAMBDATEST",
        "AWS_SECRET_ACCESS_KEY": "secret-of-the-test",
        "AWS_LAMBDA_FUNCTION_NAME": "sfmlops-api-test",
    }


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    return [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith('{"sfmlops": "api-invocation"')]


def _series(prom: str, at_least: float, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        result = httpx.get(f"{prom}/api/v1/query", params={"query": PROMQL}, timeout=10).json()["data"]["result"]
        if result and float(result[0]["value"][1]) >= at_least:
            assert len(result) == 1, result
            return result[0]
        if time.monotonic() > deadline:
            pytest.fail(f"{PROMQL} never reached {at_least} in {prom}: {result}")
        time.sleep(0.3)


def test_lambda_writes_its_request_metrics_once_per_interval(prometheus: str, monkeypatch, capsys) -> None:
    handler = load_lambda_handler(monkeypatch, _down_env(f"{prometheus}/api/v1/write", interval_s=1))
    status, _, _ = invoke(handler, make_event("healthz"))
    assert status == 503
    status, _, _ = invoke(handler, make_event("healthz"))  # within the interval: not written
    assert status == 503
    first, second = _lines(capsys)
    assert first["metrics_written"] is True and first["metrics_write_ms"] > 0
    assert "metrics_written" not in second
    written = _series(prometheus, 1)
    assert written["metric"]["instance"].startswith("lambda/sfmlops-api-test/")
    before = float(written["value"][1])  # the count when the first invocation ended (the registry is the process')

    time.sleep(1.1)
    invoke(handler, make_event("healthz"))  # due again: counts both invocations since
    (third,) = _lines(capsys)
    assert third["metrics_written"] is True
    after = _series(prometheus, before + 2)
    assert float(after["value"][1]) == before + 2 and after["metric"]["instance"] == written["metric"]["instance"]


def test_a_receiver_that_is_down_changes_no_response(monkeypatch, capsys, caplog) -> None:
    handler = load_lambda_handler(monkeypatch, _down_env(f"http://127.0.0.1:{free_port()}/api/v1/write", interval_s=3600))
    status, _, body = invoke(handler, make_event("healthz"))
    assert status == 503 and body["status"] == "down"
    (line,) = _lines(capsys)
    assert line["metrics_written"] is False
    assert any("metrics remote write to" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
