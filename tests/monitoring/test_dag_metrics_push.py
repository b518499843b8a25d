"""The DAG tasks' metrics (``sfmlops_dag_utils/metrics.py`` -> ``app/common/pushgateway.py``) through a real
Pushgateway: the project's own service (``app.stack.prometheus.Pushgateway``) under a tmp state dir on a free
loopback port, stopped afterwards. What it serves back is parsed with prometheus-client's parser."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.stack.base import free_port
from sfmlops_dag_utils import metrics as dag_metrics


@pytest.fixture
def pushgateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # its base URL
    from app.config import Settings
    from app.stack.prometheus import Pushgateway

    settings = Settings(_env_file=None, state_dir=tmp_path, pushgateway_port=free_port(), pushgateway_url=None)
    svc = Pushgateway(settings)
    svc.start()
    try:
        monkeypatch.setenv("SFMLOPS_DAG_PUSHGATEWAY_URL", settings.pushgateway_base_url)
        yield settings.pushgateway_base_url
    finally:
        svc.stop()


def _samples(url: str) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) if family.name.startswith("sfmlops_dag_")
        for s in family.samples
    }


def test_dag_tasks_push_outcome_seconds_and_rows(pushgateway: str) -> None:
    with dag_metrics.task_metrics("sales_ingest_daily", "data_quality", "ingest", started=0) as rows:
        rows.update({"upserted": 5364, "dead_letters": 2})
    with pytest.raises(RuntimeError, match="spark-submit died"), \
            dag_metrics.task_metrics("sales_train_weekly", "batch_forecast", "forecast") as rows:
        rows["rows"] = 7
        raise RuntimeError("spark-submit died")
    job = {"state": "SUCCEEDED", "started_at": "2026-06-14T04:00:00+00:00", "finished_at": "2026-06-14T04:03:30+00:00",
           "result": {"rows": 240, "written": 240, "stores": 5, "model_version": "3"}}
    assert dag_metrics.push("sales_train_weekly", "wait_for_forecast", "forecast", "succeeded",
                            dag_metrics.job_seconds(job), dag_metrics.job_rows(job["result"]))

    got = _samples(pushgateway)
    quality = {"job": "sfmlops_dag", "instance": "", "dag": "sales_ingest_daily", "task": "data_quality", "kind": "ingest"}

    def at(name: str, labels: dict[str, str], **more: str) -> float:
        return got[(name, frozenset({**labels, **more}.items()))]

    assert at("sfmlops_dag_task_last_run_timestamp_seconds", quality, outcome="succeeded") > 1.7e9
    assert at("sfmlops_dag_task_seconds", quality) > 1.7e9  # since started=0 (the Unix epoch)
    assert at("sfmlops_dag_task_rows", quality, what="upserted") == 5364
    assert at("sfmlops_dag_task_rows", quality, what="dead_letters") == 2
    failed = {**quality, "dag": "sales_train_weekly", "task": "batch_forecast", "kind": "forecast"}
    assert at("sfmlops_dag_task_last_run_timestamp_seconds", failed, outcome="failed") > 1.7e9
    assert ("sfmlops_dag_task_last_run_timestamp_seconds", frozenset({**failed, "outcome": "succeeded"}.items())) not in got
    assert at("sfmlops_dag_task_rows", failed, what="rows") == 7
    waited = {**failed, "task": "wait_for_forecast"}
    assert at("sfmlops_dag_task_seconds", waited) == 210
    assert {w: at("sfmlops_dag_task_rows", waited, what=w) for w in ("rows", "written", "stores")} == {"rows": 240, "written": 240, "stores": 5}

    # a later push of a task replaces its group: only the newest outcome is left
    with dag_metrics.task_metrics("sales_train_weekly", "batch_forecast", "forecast"):
        pass
    again = _samples(pushgateway)
    assert ("sfmlops_dag_task_last_run_timestamp_seconds", frozenset({**failed, "outcome": "failed"}.items())) not in again
    assert ("sfmlops_dag_task_last_run_timestamp_seconds", frozenset({**failed, "outcome": "succeeded"}.items())) in again


def test_push_off_or_unreachable_never_fails_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.common.pushgateway import dag_task_text, push_dag_task

    monkeypatch.setenv("SFMLOPS_DAG_PUSHGATEWAY_URL", "off")
    assert dag_metrics.push("d", "t", "ingest", "succeeded", 1.0) is False
    monkeypatch.setenv("SFMLOPS_DAG_PUSHGATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    with dag_metrics.task_metrics("d", "t", "ingest") as rows:  # refused connection: logged, the body's result stands
        rows["upserted"] = 1
    assert push_dag_task(None, "d", "t", "ingest", "succeeded", 1.0) is False
    with pytest.raises(ValueError, match="kind must be one of"):
        dag_task_text("d", "t", "bogus", "succeeded", 1.0)
    text = dag_task_text('we"ird', "t\\x", "training", "failed", 2.5, {"rows": 3}, now=100.0)
    parsed = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed["sfmlops_dag_task_seconds"].labels == {"dag": 'we"ird', "task": "t\\x", "kind": "training"}
    assert parsed["sfmlops_dag_task_last_run_timestamp_seconds"].value == 100.0


def test_ingest_aws_callbacks_push_the_emr_run_outcome(pushgateway: str) -> None:
    """``outcome_callbacks`` (the daily DAG's ingest_aws, whose EMR job run task_metrics cannot wrap) push ``failed``
    from the failure callback, and a later success replaces it (IngestionFailed then resolves)."""
    from dataclasses import dataclass
    from datetime import UTC, datetime, timedelta

    @dataclass
    class TaskInstance:  # the two attributes of Airflow's task instance the callback reads
        task_id: str
        start_date: datetime

    callbacks = dag_metrics.outcome_callbacks("sales_ingest_daily", "ingest")
    ti = TaskInstance("ingest_aws", datetime.now(UTC) - timedelta(minutes=12))
    callbacks["on_failure_callback"]({"ti": ti, "exception": RuntimeError("EMR Serverless job run FAILED")})
    labels = {"job": "sfmlops_dag", "instance": "", "dag": "sales_ingest_daily", "task": "ingest_aws", "kind": "ingest"}
    got = _samples(pushgateway)
    assert got[("sfmlops_dag_task_last_run_timestamp_seconds", frozenset({**labels, "outcome": "failed"}.items()))] > 1.7e9
    assert 720 <= got[("sfmlops_dag_task_seconds", frozenset(labels.items()))] < 720 + 60

    callbacks["on_success_callback"]({"task_instance": ti})
    again = _samples(pushgateway)
    assert ("sfmlops_dag_task_last_run_timestamp_seconds", frozenset({**labels, "outcome": "failed"}.items())) not in again
    assert ("sfmlops_dag_task_last_run_timestamp_seconds", frozenset({**labels, "outcome": "succeeded"}.items())) in again
