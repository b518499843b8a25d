"""The daily DAG's early-retraining cool-down (``sfmlops_dag_utils/drift.py``) against a real jobs table.

The table is the test's own copy of the API's ``training_jobs`` (``CREATE TABLE ... (LIKE ...)``, dropped
afterwards); rows are written the way the API writes them (``params`` = the request body). The decision code
is the DAG bundle's (standard library only), so it runs here in the main virtualenv on a psycopg2 connection,
as the task runs it on the ``postgres_conn_id`` connection.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sfmlops_dag_utils.drift import recent_training, retrain_on_drift

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is not None, reason="main suite only (its stack fixture)"),
]

DRIFT = {"drift": True, "current_version": "4", "reason": "version 4: 5 of the last 5 scored day(s) above 0.1200"}
NOW = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)


class Api:
    """Records what would be submitted (the decision, not the API, is under test here)."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []

    def submit_training(self, body: dict, key: str) -> dict:
        self.submitted.append(body)
        return {"id": f"job-{len(self.submitted)}", "kind": body["kind"], "state": "PENDING"}


@pytest.fixture
def jobs_table(stack) -> Iterator[tuple[object, str]]:  # app.config.Settings
    from app.db import connect

    table = f"tcool{uuid.uuid4().hex[:8]}_training_jobs"
    conn = connect(stack)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (LIKE {stack.table_training_jobs} INCLUDING DEFAULTS)")
    try:
        yield conn, table
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def _job(conn, table: str, job_id: str, body: dict, state: str, days_ago: float, started: bool = True) -> None:
    created = NOW - timedelta(days=days_ago)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (id, client_id, kind, params, entrypoint, ray_submission_id, state, request_hash,"
            " created_at, started_at) VALUES (%s, 1, %s, %s::jsonb, 'python x.py', %s, %s, %s, %s, %s)",
            (job_id, body["kind"], json.dumps(body), job_id, state, "0" * 64, created,
             created + timedelta(minutes=1) if started else None),
        )


def _decide(conn, table: str, body: dict, cooldown: int = 7) -> tuple[dict, Api]:
    api = Api()
    decision = retrain_on_drift(api, DRIFT, body, "key", True,
                                recent=lambda: recent_training(conn, table, body, cooldown, now=NOW), cooldown_days=cooldown)
    return decision, api


def test_a_training_of_the_same_scope_in_the_cool_down_holds_the_retraining_back(jobs_table) -> None:
    conn, table = jobs_table
    body = {"kind": "all", "stores": [3, 1, 2], "neural": False}
    first, api = _decide(conn, table, body)
    assert first["retrain"] is True and api.submitted == [body]  # nothing in the table yet

    # the day after: the weekly run's training of the same stores (another order, other options) started 2 days ago
    _job(conn, table, "weekly", {"kind": "all", "stores": [1, 2, 3], "lgbm_rounds": 100}, "SUCCEEDED", days_ago=2)
    held, api = _decide(conn, table, body)
    assert held["retrain"] is False and api.submitted == [] and "job" not in held
    assert held["recent_job"]["id"] == "weekly" and held["recent_job"]["state"] == "SUCCEEDED"
    assert "training job weekly of the same scope" in held["reason"] and "7-day cool-down" in held["reason"]

    # a job still running (SUBMITTING, no started_at yet: its submission time counts) holds it back too
    _job(conn, table, "running", body, "SUBMITTING", days_ago=0.5, started=False)
    assert _decide(conn, table, body)[0]["recent_job"]["id"] == "running"


def test_other_scopes_failed_jobs_and_old_jobs_do_not_count(jobs_table) -> None:
    conn, table = jobs_table
    body = {"kind": "all", "stores": [1, 2, 3]}
    _job(conn, table, "other-stores", {"kind": "all", "stores": [1, 2]}, "SUCCEEDED", days_ago=1)
    _job(conn, table, "every-store", {"kind": "all"}, "RUNNING", days_ago=1)
    _job(conn, table, "one-store", {"kind": "store", "store": 1}, "SUCCEEDED", days_ago=1)
    for state in ("FAILED", "STOPPED", "LOST"):
        _job(conn, table, f"ended-{state}", body, state, days_ago=1)
    _job(conn, table, "old", body, "SUCCEEDED", days_ago=8)
    decision, api = _decide(conn, table, body)
    assert decision["retrain"] is True and api.submitted == [body], decision

    # the old one falls inside a longer cool-down; a cool-down of 0 reads nothing and retrains
    assert _decide(conn, table, body, cooldown=9)[0]["recent_job"]["id"] == "old"
    assert _decide(conn, table, body, cooldown=0)[0]["retrain"] is True

    # the scope of every store: the running every-store job holds it back
    assert _decide(conn, table, {"kind": "all"})[0]["recent_job"]["id"] == "every-store"


def test_no_drift_reads_nothing_and_a_bad_table_name_is_refused(jobs_table) -> None:
    conn, table = jobs_table

    def must_not_read() -> None:
        raise AssertionError("no drift: the jobs table is not read")

    calm = retrain_on_drift(Api(), {**DRIFT, "drift": False}, {"kind": "all"}, "k", True, recent=must_not_read, cooldown_days=7)
    assert calm["retrain"] is False and calm["reason"].startswith("no drift")
    with pytest.raises(ValueError, match=r"table_training_jobs='jobs; drop table x' is not a plain lower-case SQL identifier"):
        recent_training(conn, "jobs; drop table x", {"kind": "all"}, 7)
