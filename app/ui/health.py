"""The Health view: ingestion lag and rates, API latency, job outcomes, live accuracy vs backtest, open alerts.

Charts are drawn from Prometheus' HTTP API (``SFMLOPS_PROMETHEUS_URL``, default the local stack's Prometheus,
started by ``sfmlops up --with-monitoring``); live accuracy comes from the exporter's reading of the accuracy
table (``sfmlops_accuracy_*``); open alerts from the API (``GET /v1/alerts``, recorded by Alertmanager's
webhook). The frame builders are pure functions of Prometheus responses (tested without a server).
"""

from __future__ import annotations

import time
from typing import Any

import altair as alt
import httpx
import pandas as pd

from app.config import Settings

#: Window choices of the view: label -> seconds.
WINDOWS = {"15 min": 900, "1 h": 3600, "6 h": 6 * 3600, "24 h": 86400}
PROMETHEUS_HINT = "Start it with `sfmlops up --with-monitoring`; check SFMLOPS_PROMETHEUS_URL."

#: (title, PromQL, series label template, y-axis title) of the time-series charts, in page order.
PANELS: dict[str, list[tuple[str, str, str, str]]] = {
    "Ingestion": [
        ("Rows committed per second", 'sum by (kind) (rate(sfmlops_ingest_ledger_rows_total[5m]))', "{kind}", "rows/s"),
        ("Consumer lag (records)", "sum by (topic) (sfmlops:ingest_consumer_lag)", "{topic}", "records"),
    ],
    "API": [
        ("Latency p50 / p99", 'label_replace(sfmlops:api_p50_seconds:5m, "q", "p50", "", "") or '
         'label_replace(sfmlops:api_p99_seconds:5m, "q", "p99", "", "")', "{q}", "seconds"),
        ("Requests per second by status", 'sum by (status) (rate(sfmlops_api_request_duration_seconds_count[5m]))', "{status}", "req/s"),
    ],
    "Accuracy": [
        ("Live RMSPE vs backtest per model version", 'label_replace(sfmlops_accuracy_live_rmspe, "kind", "live", "", "") or '
         'label_replace(sfmlops_accuracy_backtest_rmspe, "kind", "backtest", "", "")', "v{version} {kind}", "RMSPE"),
    ],
}


class PrometheusProblem(Exception):
    """Prometheus could not be asked (the message says what and which setting to check)."""


class PromClient:
    """Minimal client of Prometheus' HTTP API (``/api/v1/query`` and ``/api/v1/query_range``)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            resp = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusProblem(f"Prometheus at {self.base_url} is unreachable ({type(exc).__name__}). {PROMETHEUS_HINT}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise PrometheusProblem(f"Prometheus answered {resp.status_code}: {body.get('error') or resp.text[:200]}")
        return body["data"]["result"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": promql})

    def query_range(self, promql: str, seconds: int, points: int = 120) -> list[dict[str, Any]]:
        end = time.time()
        step = max(1, seconds // points)
        return self._get("/api/v1/query_range", {"query": promql, "start": end - seconds, "end": end, "step": step})


def series_name(metric: dict[str, str], template: str) -> str:
    """``template`` with ``{label}`` filled from ``metric`` (missing labels blank)."""
    out = template
    for key in {part.split("}")[0] for part in template.split("{")[1:]}:
        out = out.replace("{" + key + "}", metric.get(key, ""))
    return out.strip() or "value"


def range_frame(result: list[dict[str, Any]], template: str) -> pd.DataFrame:
    """A ``query_range`` matrix -> frame ``time, value, series`` (NaN and Inf samples dropped)."""
    rows = [
        (pd.Timestamp(float(ts), unit="s", tz="UTC"), float(v), series_name(item["metric"], template))
        for item in result for ts, v in item.get("values", [])
    ]
    frame = pd.DataFrame(rows, columns=["time", "value", "series"])
    return frame[frame["value"].apply(lambda x: x == x and abs(x) != float("inf"))].reset_index(drop=True)


def vector_frame(result: list[dict[str, Any]], labels: list[str]) -> pd.DataFrame:
    """An instant vector -> frame with one column per label and ``value``."""
    rows = [{**{k: item["metric"].get(k, "") for k in labels}, "value": float(item["value"][1])} for item in result]
    return pd.DataFrame(rows, columns=[*labels, "value"])


def line_chart(frame: pd.DataFrame, title: str, y_title: str) -> alt.Chart:
    return (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color("series:N", title=None),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N", alt.Tooltip("value:Q", format=",.4g")],
        )
        .properties(title=title, height=220)
    )


def jobs_chart(frame: pd.DataFrame) -> alt.Chart:
    """Training jobs by state (bar per kind)."""
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("state:N", title=None),
            y=alt.Y("value:Q", title="jobs"),
            color=alt.Color("kind:N", title="kind"),
            tooltip=["kind:N", "state:N", alt.Tooltip("value:Q", format=",.0f")],
        )
        .properties(title="Training jobs by state", height=220)
    )


def health_view(api: Any, settings: Settings) -> None:
    """Render the Health view (``api``: the UI's API client, for the alerts)."""
    import streamlit as st

    st.header("Health")
    window = st.radio("Window", list(WINDOWS), index=1, horizontal=True, key="health_window")
    seconds = WINDOWS[window]
    prom = PromClient(settings.prometheus_base_url, timeout_s=settings.ui_api_timeout_s)
    try:
        _alerts_panel(st, api)
        try:
            for section, panels in PANELS.items():
                st.subheader(section)
                cols = st.columns(len(panels))
                for col, (title, promql, template, y_title) in zip(cols, panels, strict=True):
                    frame = range_frame(prom.query_range(promql, seconds), template)
                    with col:
                        if frame.empty:
                            st.caption(f"{title}: no data in the last {window}")
                        else:
                            st.altair_chart(line_chart(frame, title, y_title), width="stretch")
                if section == "API":
                    _jobs_panel(st, prom)
        except PrometheusProblem as problem:
            st.warning(f"**Metrics unavailable**: {problem}")
        st.caption(f"Prometheus: {prom.base_url} (charts over the last {window}; see monitoring/README.md for every metric).")
    finally:
        prom.close()


def _jobs_panel(st: Any, prom: PromClient) -> None:
    st.subheader("Jobs")
    jobs = vector_frame(prom.query("sfmlops_training_jobs"), ["kind", "state"])
    runs = vector_frame(prom.query("sfmlops_training_last_run_timestamp_seconds"), ["scope", "outcome"])
    left, right = st.columns(2)
    with left:
        if jobs.empty:
            st.caption("No training jobs recorded by the API yet")
        else:
            st.altair_chart(jobs_chart(jobs), width="stretch")
    with right:
        if runs.empty:
            st.caption("No training run has pushed its outcome yet")
        else:
            runs["ended"] = pd.to_datetime(runs.pop("value"), unit="s", utc=True)
            st.caption("Last training run per scope (pushed by the job)")
            st.dataframe(runs, hide_index=True, width="stretch")


def _alerts_panel(st: Any, api: Any) -> None:
    from app.ui.views import guarded

    st.subheader("Open alerts")
    body = guarded("the alerts", lambda: api.get("/v1/alerts", status="firing", limit=50))
    if body is None:
        return
    if not body["alerts"]:
        st.success("No alert is firing.")
        return
    st.error(f"{body['firing']} alert(s) firing")
    for a in body["alerts"]:
        st.markdown(f"- **{a['alertname']}** ({a.get('severity') or 'no severity'}) since {str(a['starts_at'])[:19]} UTC: "
                    f"{a.get('summary') or ''}")
