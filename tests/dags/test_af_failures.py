"""A failing task fails the DAG run with a message that says why.

The API is a real HTTP server on loopback speaking the sfmlops API's routes and error shape; the
dead-letter case uses the real Postgres of the local stack.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeApi(ThreadingHTTPServer):
    """Answers POST /v1/training-jobs and GET /v1/training-jobs/{id}[/logs] from ``self.script``."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.requests.append((method, self.path, dict(self.headers)))
        key = f"{method} {self.path}"
        status, body = self.server.script.get(key, (404, {"error": {"status": 404, "code": "not_found", "message": f"no route {key}"}}))
        if self.headers.get("X-API-Key") != "test-key":
            status, body = 401, {"error": {"status": 401, "code": "unauthorized", "message": "missing or invalid API key"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_SFMLOPS_API", json.dumps({"conn_type": "http", "host": server.url, "password": "test-key"}))
    monkeypatch.setenv("SFMLOPS_DAG_BACKEND", "local")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _weekly(dagbag):
    dag = dagbag.dags["sales_train_weekly"]
    for sensor_id in ("wait_for_training", "wait_for_forecast"):
        dag.get_task(sensor_id).poke_interval = 1
    return dag


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_api_rejecting_the_training_job_fails_the_run(
    airflow_db,
    dagbag,
    fake_api: FakeApi,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_api.script["POST /v1/training-jobs"] = (
        422,
        {"error": {"status": 422, "code": "validation_error", "message": "request is invalid",
                   "details": [{"field": "body.kind", "message": "Input should be 'all', 'store' or 'noop'"}]}},
    )
    dag_run = _weekly(dagbag).test()
    out = capfd.readouterr().out + caplog.text
    assert dag_run.state == "failed"
    states = _states(dag_run)
    assert states["submit_training"] == "failed"
    assert states["wait_for_training"] == "upstream_failed"
    assert "API rejected (validation_error): POST /v1/training-jobs answered 422: request is invalid (body.kind:" in out
    # a 4xx is final: the task did not retry (one POST), and the request carried the key and an Idempotency-Key
    posts = [r for r in fake_api.requests if r[0] == "POST"]
    assert len(posts) == 1
    assert posts[0][2]["Idempotency-Key"].startswith("airflow:sales_train_weekly:")


def test_failed_training_job_fails_the_run_with_rays_message(
    airflow_db,
    dagbag,
    fake_api: FakeApi,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    fake_api.script["POST /v1/training-jobs"] = (202, {"id": job_id, "kind": "all", "state": "PENDING"})
    fake_api.script[f"GET /v1/training-jobs/{job_id}"] = (
        200,
        {"id": job_id, "kind": "all", "state": "FAILED", "message": "Job entrypoint command failed with exit code 1",
         "result": {"error": "ValueError: sales table is empty"}},
    )
    fake_api.script[f"GET /v1/training-jobs/{job_id}/logs"] = (
        200,
        {"job_id": job_id, "state": "FAILED", "logs": "loading sales\nValueError: sales table is empty"},
    )
    dag_run = _weekly(dagbag).test()
    out = capfd.readouterr().out + caplog.text
    assert dag_run.state == "failed"
    states = _states(dag_run)
    assert states["submit_training"] == "success"
    assert states["wait_for_training"] == "failed"
    assert f"training job {job_id} ended FAILED: Job entrypoint command failed with exit code 1" in out
    assert "ValueError: sales table is empty" in out


def test_unreachable_api_is_reported_with_its_address(
    airflow_db,
    dagbag,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_SFMLOPS_API", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{port}", "password": "k"}))
    dag = _weekly(dagbag)
    dag.get_task("submit_training").retries = 0
    try:
        dag_run = dag.test()
    finally:
        dag.get_task("submit_training").retries = 1
    out = capfd.readouterr().out + caplog.text
    assert dag_run.state == "failed"
    assert f"API error (unreachable): Cannot reach the API at http://127.0.0.1:{port} (POST /v1/training-jobs: ConnectError" in out
    assert "Check the host of the Airflow connection 'sfmlops_api'." in out


@pytest.mark.integration
def test_too_many_dead_letters_fail_the_daily_run(
    airflow_db,
    dagbag,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Dead letters over the threshold fail data_quality (real Postgres of the stack)."""
    import psycopg2
    from airflow.models import Connection

    uri = os.environ.get("AIRFLOW_CONN_SFMLOPS_POSTGRES")
    if not uri:
        pytest.skip("AIRFLOW_CONN_SFMLOPS_POSTGRES is not set (run through tests/dags/test_airflow_suite.py)")
    conn_info = Connection(uri=uri)
    table = os.environ.get("SFMLOPS_DAG_TABLE_DEAD_LETTER", "sales_dead_letter")
    topic = f"test-airflow-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SFMLOPS_DAG_MAX_DEAD_LETTERS", "2")
    dag = dagbag.dags["sales_ingest_daily"].partial_subset("data_quality", include_upstream=False)
    pg = psycopg2.connect(host=conn_info.host, port=conn_info.port, dbname=conn_info.schema, user=conn_info.login, password=conn_info.password)
    try:
        from airflow.utils import timezone

        started = timezone.utcnow()
        with pg, pg.cursor() as cur:
            for offset, reason in enumerate(["negative sales", "negative sales", "unknown store"]):
                cur.execute(
                    f"INSERT INTO {table} (topic, kafka_partition, kafka_offset, payload, reason, query_id, batch_id)"
                    " VALUES (%s, 0, %s, %s, %s, 'airflow-test', 0)",
                    (topic, offset, b"{}", reason),
                )
        dag_run = dag.test(logical_date=started)
        out = capfd.readouterr().out + caplog.text
    finally:
        with pg, pg.cursor() as cur:
            cur.execute(f"DELETE FROM {table} WHERE topic = %s", (topic,))
        pg.close()
    assert dag_run.state == "failed"
    assert "data quality check failed:" in out
    assert "over the threshold of 2 (SFMLOPS_DAG_MAX_DEAD_LETTERS" in out
    assert "negative sales (2)" in out and "unknown store (1)" in out


@pytest.mark.integration
def test_missing_forecasts_of_an_expected_store_fail_the_weekly_check(
    airflow_db,
    dagbag,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """check_forecasts checks exactly the configured stores, for the model version, on the real Postgres."""
    import psycopg2
    from airflow.models import Connection

    uri = os.environ.get("AIRFLOW_CONN_SFMLOPS_POSTGRES")
    if not uri:
        pytest.skip("AIRFLOW_CONN_SFMLOPS_POSTGRES is not set (run through tests/dags/test_airflow_suite.py)")
    info = Connection(uri=uri)
    tag = uuid.uuid4().hex[:8]
    sales, fc = f"tafchk{tag}_sales", f"tafchk{tag}_forecasts"
    monkeypatch.setenv("SFMLOPS_DAG_TABLE_SALES", sales)
    monkeypatch.setenv("SFMLOPS_DAG_TABLE_FORECASTS", fc)
    monkeypatch.setenv("SFMLOPS_DAG_FORECAST_DAYS", "3")
    pg = psycopg2.connect(host=info.host, port=info.port, dbname=info.schema, user=info.login, password=info.password)
    dag = dagbag.dags["sales_train_weekly"].partial_subset("check_forecasts", include_upstream=False)
    try:
        with pg, pg.cursor() as cur:
            cur.execute(f"CREATE TABLE {sales} (store int, date date)")
            cur.execute(f"CREATE TABLE {fc} (model_name text, model_version text, store int, date date, created_at timestamptz DEFAULT now())")
            cur.execute(f"INSERT INTO {sales} SELECT s, DATE '2015-06-13' FROM generate_series(1, 3) s")
            # model m v2 has 3 days for stores 1 and 3, only 2 days for store 2; store 3 is not expected
            cur.execute(
                f"INSERT INTO {fc} (model_name, model_version, store, date) SELECT 'm', '2', s, DATE '2015-06-13' + d "
                "FROM generate_series(1, 3) s, generate_series(1, 3) d WHERE NOT (s = 2 AND d = 3)"
            )
        monkeypatch.setenv("SFMLOPS_DAG_STORES", "1,3")
        ok = dag.test()
        monkeypatch.setenv("SFMLOPS_DAG_STORES", "1,2")
        short = dag.test()
        out = capfd.readouterr().out + caplog.text
    finally:
        with pg, pg.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {sales}, {fc}")
        pg.close()
    assert ok.state == "success"
    report = ok.get_task_instance("check_forecasts").xcom_pull(task_ids="check_forecasts")
    assert (report["stores"], report["stores_short"], report["model_version"]) == (2, 0, "2")
    assert short.state == "failed"
    assert "forecast check failed: 1 of 2 stores (stores [1, 2]) have fewer than 3 forecast days after 2015-06-13" in out
    assert "for model m v2 (store: days found) {2: 2}" in out
