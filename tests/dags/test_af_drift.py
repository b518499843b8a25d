"""The daily DAG's live-accuracy tasks on a real API: a drifting model version gets an early retraining.

Started by ``tests/dags/test_live_accuracy_dag.py`` (main suite), which prepares a deliberately stale model
version on real data (tests/forecasting/live_accuracy_support.py), serves the real API on loopback with noop
jobs allowed, and passes the expectations in ``SFMLOPS_DRIFTTEST_EXPECT``; skipped otherwise.
"""

from __future__ import annotations

import json
import os

import pytest

EXPECT = os.environ.get("SFMLOPS_DRIFTTEST_EXPECT")


@pytest.mark.integration
@pytest.mark.skipif(not EXPECT, reason="run through tests/dags/test_live_accuracy_dag.py (its API and data)")
def test_score_accuracy_then_retrain_on_drift_submits_a_training(
    airflow_db, dagbag, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    expected = json.loads(EXPECT or "{}")
    dag = dagbag.dags["sales_ingest_daily"].partial_subset(["score_accuracy", "retrain_on_drift"], include_upstream=False)
    dag_run = dag.test()
    out = capfd.readouterr().out + caplog.text
    assert dag_run.state == "success", out[-3000:]
    status = dag_run.get_task_instance("score_accuracy").xcom_pull(task_ids="score_accuracy")
    assert status["drift"] is True and status["current_version"] == expected["stale_version"], status
    decision = dag_run.get_task_instance("retrain_on_drift").xcom_pull(task_ids="retrain_on_drift")
    assert decision["retrain"] is True and decision["version"] == expected["stale_version"]
    assert decision["request"] == {"kind": "noop"}
    assert decision["job"]["id"] and decision["job"]["kind"] == "noop"
    assert f"early retraining: job {decision['job']['id']}" in out
    print(f"SFMLOPS_DRIFTTEST_JOB={decision['job']['id']}")

    # the next daily run: still drift, but that training (same scope) started within the cool-down
    again = dag.test()
    assert again.state == "success"
    held = again.get_task_instance("retrain_on_drift").xcom_pull(task_ids="retrain_on_drift")
    assert held["retrain"] is False and "job" not in held, held
    assert held["recent_job"]["id"] == decision["job"]["id"] and "7-day cool-down" in held["reason"], held


def test_decision_without_drift_or_when_switched_off() -> None:
    from sfmlops_dag_utils.drift import retrain_on_drift

    class NoCalls:
        def submit_training(self, body, key):
            raise AssertionError("no training may be submitted")

    calm = {"drift": False, "current_version": "3", "reason": "version 3: 1 of the last 3 scored day(s) above 0.1200"}
    assert retrain_on_drift(NoCalls(), calm, {"kind": "all"}, "k") == {
        "retrain": False, "version": "3", "reason": "no drift: version 3: 1 of the last 3 scored day(s) above 0.1200"}
    off = retrain_on_drift(NoCalls(), {**calm, "drift": True}, {"kind": "all"}, "k", enabled=False)
    assert off["retrain"] is False and off["reason"].startswith("drift, but retrain_on_drift is off")


def test_the_daily_dag_scores_accuracy_after_the_quality_check_then_decides(dagbag) -> None:
    daily = dagbag.dags["sales_ingest_daily"]
    assert daily.get_task("score_accuracy").upstream_task_ids == {"data_quality"}
    assert daily.get_task("retrain_on_drift").upstream_task_ids == {"score_accuracy"}
