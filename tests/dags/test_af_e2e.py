"""Both DAGs end to end with ``dag.test()`` against the real local stack, on a small slice of data.

Started by ``test_airflow_suite.py::test_dags_end_to_end_on_the_stack``, which gives the slice its own
topic, tables, model name and job code, produces the full history of a few stores to the topic, starts
the real API, and passes what it sent in ``SFMLOPS_DAGTEST_EXPECT`` (JSON). The daily test must run
first (file order): the weekly DAG trains on what it ingested.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import closing
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    raw = os.environ.get("SFMLOPS_DAGTEST_EXPECT")
    if not raw:
        pytest.skip("SFMLOPS_DAGTEST_EXPECT not set (run through tests/dags/test_airflow_suite.py)")
    return json.loads(raw)


def _query(sql: str, args: tuple = ()) -> list[tuple]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    with closing(PostgresHook(postgres_conn_id="sfmlops_postgres").get_conn()) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def test_daily_dag_moves_new_kafka_records_into_sales(airflow_db, dagbag, expected: dict[str, Any]) -> None:
    t0 = time.monotonic()
    dag_run = dagbag.dags["sales_ingest_daily"].test()
    print(f"sales_ingest_daily dag.test(): {time.monotonic() - t0:.1f}s ({expected['rows']} rows, {len(expected['stores'])} stores)")
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert states["ingest_local"] == "success" and states["ingest_aws"] == "skipped" and states["emr_job_spec"] == "skipped"
    summary = dag_run.get_task_instance("ingest_local").xcom_pull(task_ids="ingest_local")
    report = dag_run.get_task_instance("data_quality").xcom_pull(task_ids="data_quality")
    assert summary["error"] is None, summary
    # A fresh table and topic: every record sent was upserted during this run, none dead-lettered.
    assert report["rows"] == expected["rows"] and report["days"] == expected["days"], report
    assert report["dead_letters"] == 0, report
    # the data-quality task's outlet: one asset event of sfmlops_sales for this run (what the weekly DAG consumes)
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.execute(
            select(AssetModel.uri, AssetEvent.source_task_id).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == "sales_ingest_daily", AssetEvent.source_run_id == dag_run.run_id)
        ).all()
    assert [tuple(e) for e in events] == [("sfmlops://postgres/sales", "data_quality")], events
    table = os.environ["SFMLOPS_DAG_TABLE_SALES"]
    [(rows, stores, last)] = _query(f"SELECT count(*), array_agg(DISTINCT store ORDER BY store), max(date) FROM {table}")
    assert (rows, stores, str(last)) == (expected["rows"], expected["stores"], expected["last_day"])


def test_weekly_dag_trains_forecasts_and_reports(airflow_db, dagbag, expected: dict[str, Any]) -> None:
    dag = dagbag.dags["sales_train_weekly"]
    dag.get_task("wait_for_training").poke_interval = 1  # the job takes tens of seconds: poke often, wait less
    days = int(os.environ["SFMLOPS_DAG_FORECAST_DAYS"])
    t0 = time.monotonic()
    dag_run = dag.test()
    print(f"sales_train_weekly dag.test(): {time.monotonic() - t0:.1f}s ({len(expected['train_stores'])} stores, {days} forecast days)")
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert states["batch_forecast"] == "success" and states["submit_forecast"] == "skipped"
    job = dag_run.get_task_instance("wait_for_training").xcom_pull(task_ids="wait_for_training", key="job")
    assert job["state"] == "SUCCEEDED"
    result = job["result"]
    assert result["stores"] == len(expected["train_stores"]), result  # the `stores` setting reached train_all.py
    assert "--no-neural" in job["entrypoint"] and "--lgbm-rounds 100" in job["entrypoint"], job["entrypoint"]
    model_name = os.environ["SFMLOPS_MODEL_NAME"]
    coverage = dag_run.get_task_instance("check_forecasts").xcom_pull(task_ids="check_forecasts")
    assert coverage["stores_short"] == 0 and coverage["stores"] == len(expected["train_stores"]), coverage
    assert coverage["days"] == days and coverage["last_sales_day"] == expected["last_day"], coverage
    assert (coverage["model_name"], coverage["model_version"]) == (model_name, result["model_version"]), coverage
    rows = _query(
        f"SELECT store, count(*) FROM {os.environ['SFMLOPS_DAG_TABLE_FORECASTS']} "
        "WHERE model_name = %s AND model_version = %s GROUP BY store ORDER BY store",
        (model_name, result["model_version"]),
    )
    assert rows == [(s, days) for s in expected["train_stores"]]  # the store left out of training has none
    decision = dag_run.get_task_instance("report_champion").xcom_pull(task_ids="report_champion")
    # first version of the slice's model: champion of its scope (stores 1-5: alias champion-stores-<hash>)
    alias = result["gate"].get("alias") or "champion"
    assert decision["decision"] in ("champion", "scope_champion") and decision["version"] == result["model_version"], decision
    assert decision["aliases"].get(alias) == result["model_version"], decision
