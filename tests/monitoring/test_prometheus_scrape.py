"""A real Prometheus (Debian 2.42, started by the project's stack module on free ports) scrapes the real API, the
sfmlops exporter over seeded tables of this test, the Pushgateway the jobs push to, and postgres-exporter, and
answers PromQL with the expected series; a pushed failed training fires TrainingFailed, which Alertmanager
delivers to the API's webhook route, which records it in Postgres, where GET /v1/alerts shows it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from montest_support import Monitored, monitoring_stack, running_base, value

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    with monitoring_stack(running_base(), tmp_path_factory.mktemp("mon-state")) as m:
        yield m


def test_prometheus_scrapes_api_exporter_pushgateway(monitored: Monitored) -> None:
    from prometheus_client import REGISTRY

    from app.monitoring.metrics import IngestMetrics, push_producer, push_training

    s, prom = monitored.settings, monitored.prom
    # The API's metrics are per process (as in a real deployment); this uvicorn thread shares the pytest process
    # with earlier tests' apps, so count this test's requests from the value before them.
    alerts_before = REGISTRY.get_sample_value(
        "sfmlops_api_request_duration_seconds_count", {"route": "/v1/alerts", "method": "GET", "status": "200"}
    ) or 0.0
    with httpx.Client(base_url=monitored.api_url, timeout=10) as api:
        assert api.get("/healthz").status_code in (200, 503)
        assert api.get("/v1/models").status_code == 401  # no key
        assert api.get("/v1/alerts", headers={"X-API-Key": monitored.key}).status_code == 200

    ingest = IngestMetrics(s, s.kafka_topic)
    assert ingest.batch(1000, 50, 950, 0.1, 0.8, 0.2)
    assert ingest.progress(f'{{"{s.kafka_topic}": {{"0": 600, "1": 400}}}}', f'{{"{s.kafka_topic}": {{"0": 1000, "1": 400}}}}')
    assert push_producer(s, {"topic": s.kafka_topic, "mode": "replay", "sent": 1000, "failed": 2, "invalid": 1, "rate": 2500.0, "seconds": 0.4})
    summary = {
        "seconds": {"data": 1.5, "backtest": 20.0},
        "backtest": {"h48": [{"model": "lgbm", "rmspe": 0.11}, {"model": "median_baseline", "rmspe": 0.14}]},
        "gate": {"decision": "champion"},
    }
    assert push_training(s, "all", summary)

    topic = s.kafka_topic
    # the API (scraped at /metrics of the real app): latency histogram by route and status, auth failures
    # >= 1, not == 1: CI saw 2 once (a second keyless request from a probe); the series and labels are the point.
    unauthorised = value(prom.wait('sfmlops_api_request_duration_seconds_count{job="sfmlops_api",route="/v1/models",status="401"}'))
    assert unauthorised >= 1
    assert value(prom.wait('sfmlops_api_auth_failures_total{route="/v1/models"}')) == unauthorised
    alerts = f'sfmlops_api_request_duration_seconds_bucket{{route="/v1/alerts",status="200",le="+Inf"}} >= {alerts_before + 1}'
    assert value(prom.wait(alerts)) == alerts_before + 1
    # the exporter over this test's tables
    assert value(prom.wait(f'sfmlops_forecast_stores_missing{{model="{s.model_name}",days="7"}}')) == 1
    assert value(prom.wait("sfmlops_forecast_stores")) == 3
    ages = prom.wait(f'sfmlops_forecast_newest_age_seconds{{model="{s.model_name}"}}')
    assert sorted(r["metric"]["store"] for r in ages) == ["1", "2", "3"]
    assert all(7200 <= float(r["value"][1]) < 7200 + 600 for r in ages)
    assert value(prom.wait(f'sfmlops_ingest_ledger_rows_total{{topic="{topic}",kind="rejected"}}')) == 50
    assert value(prom.wait(f'sfmlops_ingest_ledger_batches_total{{topic="{topic}"}}')) == 2
    assert value(prom.wait('sfmlops_training_jobs{kind="all",state="SUCCEEDED"}')) == 2
    assert value(prom.wait('sfmlops_training_job_last_duration_seconds{kind="all",state="FAILED"}')) == pytest.approx(300, abs=1)
    end = prom.wait(f'sfmlops_kafka_end_offset{{topic="{topic}"}}')
    assert sorted((r["metric"]["partition"], float(r["value"][1])) for r in end) == [("0", 0.0), ("1", 0.0)]
    assert value(prom.wait('min(sfmlops_exporter_source_up)')) == 1
    assert value(prom.wait(f'sfmlops_accuracy_live_rmspe{{model="{s.model_name}",version="1"}}')) == pytest.approx(0.2)
    assert value(prom.wait(f'sfmlops_accuracy_backtest_rmspe{{model="{s.model_name}",version="1"}}')) == pytest.approx(0.1)
    assert value(prom.wait(f'sfmlops_accuracy_drift{{model="{s.model_name}",version="1"}}')) == 1
    # what the jobs pushed, kept with their own labels (honor_labels)
    assert value(prom.wait(f'sfmlops_ingest_rows_total{{job="sfmlops_ingest",topic="{topic}",kind="rejected"}}')) == 50
    assert value(prom.wait(f'sfmlops_ingest_batch_seconds{{topic="{topic}",stage="stage"}}')) == pytest.approx(0.8)
    lag = prom.wait(f'sfmlops_ingest_consumer_lag{{topic="{topic}"}}')
    assert sorted((r["metric"]["partition"], float(r["value"][1])) for r in lag) == [("0", 400.0), ("1", 0.0)]
    assert value(prom.wait(f'sfmlops_producer_failed{{topic="{topic}",mode="replay"}}')) == 2
    assert value(prom.wait('sfmlops_training_candidate_rmspe{scope="all",model="lgbm",horizon="h48"}')) == pytest.approx(0.11)
    assert value(prom.wait('sfmlops_training_gate_promoted{scope="all"}')) == 1
    assert value(prom.wait('sfmlops_training_stage_seconds{scope="all",stage="backtest"}')) == 20
    # the rules are loaded and evaluated: the recording rule joins the exporter's end offsets with the pushes
    assert prom.wait(f'sfmlops:ingest_consumer_lag{{topic="{topic}"}}')
    # postgres-exporter (Debian) reaches the database
    assert value(prom.wait('pg_up{job="postgres"}')) == 1


def test_alert_reaches_webhook_and_ui_list(monitored: Monitored) -> None:
    """A pushed failed training run -> TrainingFailed (no `for`) -> Alertmanager -> POST /v1/alerts/webhook ->
    the alerts table -> GET /v1/alerts."""
    import time

    from app.monitoring.metrics import push_training

    s, prom = monitored.settings, monitored.prom
    assert push_training(s, "1,2", None, error=RuntimeError("boom"))
    prom.wait('ALERTS{alertname="TrainingFailed",alertstate="firing",scope="1,2"}')
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=monitored.api_url, timeout=10, headers={"X-API-Key": monitored.key}) as api:
        while True:
            body = api.get("/v1/alerts", params={"status": "firing"}).json()
            found = [a for a in body["alerts"] if a["alertname"] == "TrainingFailed" and a["labels"].get("scope") == "1,2"]
            if found or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert found, f"Alertmanager did not deliver TrainingFailed to the webhook: {body}"
    assert found[0]["severity"] == "critical"
    assert found[0]["summary"].startswith("A training job failed in the last hour")
    assert body["firing"] >= 1


def test_monitoring_services_listen_on_loopback_only_and_show_in_status(monitored: Monitored) -> None:
    import psutil

    from app.stack import services
    from app.stack.base import process_tree

    names = [svc.name for svc in monitored.services]
    assert names == ["pushgateway", "exporter", "postgres-exporter", "alertmanager", "prometheus"]
    for svc in monitored.services:
        pid = svc.pid()
        assert pid is not None, svc.name
        listening = [c.laddr for p in process_tree(pid) for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening, f"{svc.name} listens nowhere"
        assert {a.ip for a in listening} == {"127.0.0.1"}, (svc.name, listening)
        status = svc.status()
        assert status.running and status.healthy and status.rss_bytes > 0, status
    # running monitoring services join the stack: `sfmlops status` shows them and `sfmlops down` stops them
    assert set(names) <= {svc.name for svc in services(monitored.settings)}
