"""The Accuracy view: the readable evaluation of a model version and its live accuracy as actuals arrive.

* **Backtest evaluation** (issue 17.6): the training run's RMSPE by horizon bucket (1-7, 8-14, 15-28, 29-48
  days after the cutoff), by store type and of the worst stores, from the run metrics that
  ``GET /v1/models`` returns (``h<H>.<model>.bucket.<b>``, ``.store_type.<t>``, ``.worst_store.<id>``, logged
  by :func:`app.forecasting.run_log.log_training_run`, the same figures ``sfmlops evaluate`` prints).
* **Live accuracy** (issue 18.4): ``GET /v1/accuracy``: each version's daily live RMSPE against its backtest
  threshold, per horizon bucket, and the drift flag of the version being served.
"""

from __future__ import annotations

import re
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app.common.api_client import ApiClient
from app.config import Settings

BREAKDOWN_RE = re.compile(r"^h(?P<h>\d+)\.(?P<model>[^.]+)\.(?P<kind>bucket|store_type|worst_store)\.(?P<name>.+)$")
_KIND_TITLE = {"bucket": "Horizon bucket (days after the cutoff)", "store_type": "Store type", "worst_store": "Worst stores"}


def breakdown_frame(metrics: dict[str, float]) -> pd.DataFrame:
    """The breakdown metrics of one version as rows ``kind, name, model, horizon, rmspe`` (buckets in horizon
    order, worst stores worst first)."""
    rows = []
    for key, value in metrics.items():
        m = BREAKDOWN_RE.match(key)
        if m:
            name = m["name"] if m["kind"] != "worst_store" else f"Store {m['name']}"
            rows.append({"kind": m["kind"], "name": name, "model": m["model"], "horizon": int(m["h"]), "rmspe": float(value)})
    frame = pd.DataFrame(rows, columns=["kind", "name", "model", "horizon", "rmspe"])
    if frame.empty:
        return frame
    order = {"bucket": 0, "store_type": 1, "worst_store": 2}

    def bucket_start(name: str) -> int:
        head = name.split("-", 1)[0]
        return int(head) if head.isdigit() else 0

    frame["k"] = frame["kind"].map(order)
    frame["o"] = [
        bucket_start(n) if k == "bucket" else (-r if k == "worst_store" else 0)
        for k, n, r in zip(frame["kind"], frame["name"], frame["rmspe"], strict=True)
    ]
    return frame.sort_values(["k", "o", "name"], ignore_index=True).drop(columns=["k", "o"])


def breakdown_chart(frame: pd.DataFrame, kind: str) -> alt.Chart:
    """Horizontal bars of the RMSPE of one kind of breakdown (in the frame's order)."""
    part = frame[frame["kind"] == kind]
    return (
        alt.Chart(part, title=_KIND_TITLE[kind])
        .mark_bar(color="#264653" if kind == "bucket" else "#2a9d8f" if kind == "store_type" else "#e76f51")
        .encode(
            x=alt.X("rmspe:Q", title="Backtest RMSPE", axis=alt.Axis(format="%")),
            y=alt.Y("name:N", sort=part["name"].tolist(), title=None),
            tooltip=["name:N", "model:N", alt.Tooltip("rmspe:Q", format=".2%")],
        )
        .properties(height=max(90, 24 * len(part)))
    )


def live_frame(status: dict[str, Any]) -> pd.DataFrame:
    """Daily live RMSPE of every version (``version, date, rmspe, rows_scored, threshold``)."""
    rows = [
        {"version": f"v{v['model_version']}", "date": d["date"], "rmspe": d["rmspe"], "rows_scored": d["rows_scored"],
         "threshold": v.get("threshold")}
        for v in status.get("versions") or []
        for d in v.get("days") or []
    ]
    frame = pd.DataFrame(rows, columns=["version", "date", "rmspe", "rows_scored", "threshold"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def live_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Lines of the daily live RMSPE per version, with each version's drift threshold dashed."""
    x = alt.X("date:T", title=None)
    colour = alt.Color("version:N", title="Version")
    lines = alt.Chart(frame).mark_line(point=True).encode(
        x=x, y=alt.Y("rmspe:Q", title="Live RMSPE", axis=alt.Axis(format="%")), color=colour,
        tooltip=["version:N", alt.Tooltip("date:T"), alt.Tooltip("rmspe:Q", format=".2%"), "rows_scored:Q"],
    )
    rules = alt.Chart(frame.dropna(subset=["threshold"])).mark_line(strokeDash=[6, 4]).encode(
        x=x, y="threshold:Q", color=colour, tooltip=["version:N", alt.Tooltip("threshold:Q", format=".2%", title="drift threshold")],
    )
    return alt.LayerChart(layer=[lines, rules]).properties(height=300, title="Live RMSPE per day (dashed: backtest x (1 + margin))")


def versions_frame(status: dict[str, Any]) -> pd.DataFrame:
    """One row per version: backtest, threshold, bad days, drift, live RMSPE per horizon bucket, reason."""
    rows = []
    for v in status.get("versions") or []:
        row = {"version": f"v{v['model_version']}", "backtest RMSPE": v.get("backtest_rmspe"), "drift threshold": v.get("threshold"),
               "bad days in a row": v.get("bad_days"), "drift": "yes" if v.get("drift") else "no"}
        row.update({f"live {b}": value for b, value in (v.get("buckets") or {}).items()})
        row["verdict"] = v.get("reason")
        rows.append(row)
    return pd.DataFrame(rows)


def _evaluation(api: ApiClient) -> None:
    from app.ui.views import guarded

    models = guarded("the model registry", api.models)
    if models is None:
        return
    versions = models.get("versions") or []
    if not versions:
        st.info(f"No version of {models.get('name')} is registered yet: start a training job.")
        return
    aliases = models.get("aliases") or {}
    labels = {str(v["version"]): f"v{v['version']}" + (f" ({', '.join(v['aliases'])})" if v.get("aliases") else "") for v in versions}
    default = aliases.get("champion", str(versions[0]["version"]))
    chosen = st.selectbox("Version", list(labels), index=list(labels).index(default) if default in labels else 0,
                          format_func=lambda v: labels[v], key="accuracy_version")
    metrics = next(v for v in versions if str(v["version"]) == chosen).get("metrics") or {}
    frame = breakdown_frame(metrics)
    if frame.empty:
        st.caption(f"v{chosen} has no breakdown metrics (h<H>.<model>.bucket.*): trained before they were logged.")
        return
    st.caption(f"{frame['model'].iloc[0]} on its {frame['horizon'].iloc[0]}-day rolling-origin backtest")
    cols = st.columns(3)
    for col, kind in zip(cols, ("bucket", "store_type", "worst_store"), strict=True):
        if (frame["kind"] == kind).any():
            col.altair_chart(breakdown_chart(frame, kind), width="stretch")


def _live(api: ApiClient) -> None:
    from app.ui.views import guarded

    status = guarded("the live accuracy", lambda: api.get("/v1/accuracy", days=60))
    if status is None:
        return
    if not status.get("versions"):
        st.info(f"No forecast of {status.get('model_name')} has been scored yet: scores appear once actuals arrive for forecast days.")
        return
    if status.get("drift"):
        st.error(f"**Drift** of the served version v{status.get('current_version')}: {status.get('reason')}")
    else:
        st.success(f"No drift: {status.get('reason')}")
    st.altair_chart(live_chart(live_frame(status)), width="stretch")
    st.dataframe(versions_frame(status), hide_index=True, width="stretch")
    st.caption(f"A day is bad when its live RMSPE is above backtest x {1 + float(status.get('margin') or 0):.2f};"
               f" {status.get('window')} bad days in a row flag drift (the daily DAG then retrains).")


def accuracy_view(api: ApiClient, settings: Settings) -> None:  # the views' signature
    """Backtest evaluation of a version (by horizon bucket, store type, worst stores) and live accuracy."""
    st.header("Accuracy")
    st.subheader("Backtest evaluation")
    _evaluation(api)
    st.subheader("Live accuracy as actuals arrive")
    _live(api)
