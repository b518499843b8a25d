"""The Health view in a real browser (Debian's chromium via Playwright): charts drawn from a real Prometheus
(the project's monitoring services on free ports, scraping the real API, the exporter over seeded tables and
the Pushgateway) and the open alerts Alertmanager delivered to the API's webhook."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_ui_browser import CHART, PAINTED_PIXELS_JS, SCREENSHOTS, _wait_idle, browser  # noqa: F401 - fixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitoring"))
from montest_support import Monitored, monitoring_stack, running_base

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    with monitoring_stack(running_base(), tmp_path_factory.mktemp("health-state")) as m:
        yield m


def _traffic_and_alert(m: Monitored) -> None:
    """API requests in two bursts (so rates have two samples), the driver's offsets, a failed training run."""
    from app.monitoring.metrics import IngestMetrics, push_training

    s = m.settings
    with httpx.Client(base_url=m.api_url, timeout=10, headers={"X-API-Key": m.key}) as api:
        for _ in range(2):
            for _ in range(30):
                api.get("/healthz")
                api.get("/v1/alerts")
            time.sleep(3)
        IngestMetrics(s, s.kafka_topic).progress(f'{{"{s.kafka_topic}": {{"0": 0, "1": 0}}}}', "{}")
        assert push_training(s, "all", None, error=RuntimeError("boom"))
        deadline = time.monotonic() + 120
        # Other rules fire on the seeded tables too (drift, missing forecasts): wait for this one.
        while not any(a["alertname"] == "TrainingFailed" for a in api.get("/v1/alerts", params={"status": "firing"}).json()["alerts"]):
            if time.monotonic() > deadline:
                pytest.fail("Alertmanager did not deliver the TrainingFailed alert to the webhook")
            time.sleep(1)
    m.prom.wait("sfmlops:api_p99_seconds:5m")
    m.prom.wait("sfmlops_accuracy_live_rmspe")


def test_health_view_renders_prometheus_charts_and_alerts(monitored: Monitored, streamlit_server, browser) -> None:  # noqa: F811
    _traffic_and_alert(monitored)
    server = streamlit_server({
        "SFMLOPS_API_URL": monitored.api_url, "SFMLOPS_API_KEY": monitored.key,
        "SFMLOPS_PROMETHEUS_URL": monitored.settings.prometheus_base_url, "SFMLOPS_UI_API_TIMEOUT_S": "10",
    })
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    try:
        page.goto(server.url)
        page.get_by_test_id("stSidebar").get_by_text("Health", exact=True).click()
        page.get_by_text("alert(s) firing").wait_for(timeout=90_000)
        _wait_idle(page)
        page.get_by_text("TrainingFailed").first.wait_for(timeout=30_000)
        # ingestion rows + lag, API latency + status rates, accuracy, jobs: six charts with drawn data
        page.wait_for_function(f"() => document.querySelectorAll('{CHART}').length >= 6", timeout=90_000)
        painted = page.evaluate(
            f"() => [...document.querySelectorAll('{CHART}')].map((e, i) => {{ e.id = 'hc' + i; return e.id; }})"
        )
        for chart_id in painted:
            assert page.evaluate(PAINTED_PIXELS_JS, f"#{chart_id}") > 200, chart_id
        text = page.inner_text("body")
        assert "Traceback" not in text and "Metrics unavailable" not in text
        for title in ("Ingestion", "API", "Jobs", "Accuracy", "Open alerts"):
            assert title in text
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "ui-health-view.png"), full_page=True)
    finally:
        page.close()


def test_health_view_says_when_prometheus_is_down(monitored: Monitored, streamlit_server, browser) -> None:  # noqa: F811
    from app.stack.base import free_port

    server = streamlit_server({
        "SFMLOPS_API_URL": monitored.api_url, "SFMLOPS_API_KEY": monitored.key,
        "SFMLOPS_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
    })
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(server.url)
        page.get_by_test_id("stSidebar").get_by_text("Health", exact=True).click()
        page.get_by_text("Metrics unavailable").wait_for(timeout=90_000)
        assert "sfmlops up --with-monitoring" in page.inner_text("body")
    finally:
        page.close()
