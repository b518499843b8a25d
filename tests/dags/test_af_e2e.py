"""Both DAGs end to end with ``dag.test()`` against the real local stack, on a small slice of data.

Started by ``test_airflow_suite.py::test_dags_end_to_end_on_the_stack``, which produces the slice to a
fresh Kafka topic, starts the real API and passes the expectations in ``SFMLOPS_DAGTEST_*``.
"""

from __future__ import annotations

import os
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_daily_dag_moves_new_kafka_records_into_sales(airflow_db, dagbag) -> None:
    expected = os.environ.get("SFMLOPS_DAGTEST_EXPECT_ROWS")
    if not expected:
        pytest.skip("SFMLOPS_DAGTEST_EXPECT_ROWS not set (run through test_airflow_suite.py)")
    t0 = time.monotonic()
    dag_run = dagbag.dags["sales_ingest_daily"].test()
    print(f"sales_ingest_daily dag.test(): {time.monotonic() - t0:.1f}s")
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert states["ingest_local"] == "success" and states["ingest_aws"] == "skipped"
    summary = dag_run.get_task_instance("ingest_local").xcom_pull(task_ids="ingest_local")
    report = dag_run.get_task_instance("data_quality").xcom_pull(task_ids="data_quality")
    assert summary["error"] is None, summary
    assert report["rows"] >= int(expected), report
    assert report["dead_letters"] == 0, report
    assert report["days"] >= 1


def test_weekly_dag_trains_forecasts_and_reports(airflow_db, dagbag) -> None:
    if not os.environ.get("SFMLOPS_DAGTEST_WEEKLY"):
        pytest.skip("SFMLOPS_DAGTEST_WEEKLY not set (run through test_airflow_suite.py)")
    dag = dagbag.dags["sales_train_weekly"]
    dag.get_task("wait_for_training").poke_interval = 5
    t0 = time.monotonic()
    dag_run = dag.test()
    print(f"sales_train_weekly dag.test(): {time.monotonic() - t0:.1f}s")
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    job = dag_run.get_task_instance("wait_for_training").xcom_pull(task_ids="wait_for_training", key="job")
    assert job["state"] == "SUCCEEDED"
    coverage = dag_run.get_task_instance("check_forecasts").xcom_pull(task_ids="check_forecasts")
    assert coverage["stores_short"] == 0 and coverage["days"] == int(os.environ.get("SFMLOPS_DAG_FORECAST_DAYS", "48"))
    decision = dag_run.get_task_instance("report_champion").xcom_pull(task_ids="report_champion")
    assert decision["decision"] in ("champion", "challenger"), decision
