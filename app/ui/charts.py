"""Frames and Altair charts for the UI (pure functions of API responses; no I/O).

Each batch forecast point says which known-future inputs it used (``inputs``): ``plan``, the store's planning
data (``GET /v1/stores/{id}/plan`` gives their values), or ``projected``. The values of projected days are not
stored with the forecast, so the chart projects them the same way the batch forecast does
(``app/forecasting/batch.py``): a store is open on a weekday when it was open on at least half of that weekday
in the last 8 weeks, promotions repeat on a two-week cycle, no holidays.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import altair as alt
import pandas as pd

ACTUAL, FORECAST = "Actual sales", "Forecast"
#: A forecast point's ``inputs``: the store's planning data, or projected from the recent past.
PLAN, PROJECTED = "plan", "projected"
FORECAST_COLUMNS = ["date", "inputs", "forecast", "lower", "upper", "open", "promo", "state_holiday", "school_holiday",
                    "plan_version"]
PLAN_COLUMNS = ["date", "open", "promo", "state_holiday", "school_holiday", "version"]
METRIC_RE = re.compile(r"^h(?P<h>\d+)\.(?P<model>.+)\.(?P<metric>rmspe|mae)$")


def sales_frame(sales: dict[str, Any]) -> pd.DataFrame:
    """``GET /v1/stores/{id}/sales`` -> frame ``date, sales, customers, open, promo, ...`` (date as datetime)."""
    frame = pd.DataFrame(sales.get("points") or [])
    if frame.empty:
        return pd.DataFrame(columns=["date", "sales", "open", "promo"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.sort_values("date", ignore_index=True)


def plan_frame(plan: dict[str, Any] | None) -> pd.DataFrame:
    """``GET /v1/stores/{id}/plan`` -> frame ``date, open, promo, state_holiday, school_holiday, version``."""
    frame = pd.DataFrame((plan or {}).get("days") or [], columns=PLAN_COLUMNS)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.sort_values("date", ignore_index=True)


def forecast_frame(forecast: dict[str, Any], actuals: pd.DataFrame | None = None, plan: pd.DataFrame | None = None) -> pd.DataFrame:
    """``GET /v1/stores/{id}/forecast`` -> frame ``date, inputs, forecast, lower, upper, open, promo, state_holiday,
    school_holiday, plan_version``.

    ``inputs`` is each point's (``projected`` when the API does not say). Days with ``plan`` inputs take their
    open, promo and holidays from ``plan`` (:func:`plan_frame`; ``plan_version``: its version). The others are
    projected from ``actuals`` (see the module docstring); without actuals every day counts as open without
    promo, except days forecast at exactly 0 (closed).
    """
    frame = pd.DataFrame(forecast.get("points") or [])
    if frame.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    frame = frame.rename(columns={"value": "forecast"})
    frame["date"] = pd.to_datetime(frame["date"])
    frame = frame.sort_values("date", ignore_index=True)
    frame["inputs"] = frame["inputs"].fillna(PROJECTED) if "inputs" in frame else PROJECTED
    opened, promo = project_inputs(actuals, frame["date"]) if actuals is not None and not actuals.empty else (None, None)
    frame["open"] = opened if opened is not None else 1
    frame.loc[frame["forecast"] <= 0, "open"] = 0
    frame["promo"] = promo if promo is not None else 0
    frame.loc[frame["open"] == 0, "promo"] = 0
    frame["state_holiday"], frame["school_holiday"] = "0", 0
    frame["plan_version"] = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    if plan is not None and not plan.empty:
        planned = frame[["date"]].merge(plan, on="date", how="left")  # in the order of ``frame``
        use = (frame["inputs"] == PLAN) & planned["version"].notna()
        for col in ("open", "promo", "school_holiday"):
            frame.loc[use, col] = planned.loc[use, col].astype("int64").to_numpy()
        frame.loc[use, "state_holiday"] = planned.loc[use, "state_holiday"].astype(str).to_numpy()
        frame.loc[use, "plan_version"] = planned.loc[use, "version"].astype("int64").to_numpy()
    return frame[FORECAST_COLUMNS]


def project_inputs(actuals: pd.DataFrame, dates: pd.Series) -> tuple[list[int], list[int]]:
    """Projected ``open`` and ``promo`` for ``dates`` from a store's actuals (the batch forecast's rule)."""
    last = actuals["date"].max()
    recent = actuals[actuals["date"] > last - pd.Timedelta(days=56)]
    open_rate = recent.groupby(recent["date"].dt.dayofweek)["open"].mean()
    promo_by_day = recent[recent["date"] > last - pd.Timedelta(days=14)].set_index("date")["promo"]
    opened, promo = [], []
    for day in pd.to_datetime(dates):
        rate = open_rate.get(day.dayofweek)
        opened.append(int(rate is None or pd.isna(rate) or rate >= 0.5))
        source = day - pd.Timedelta(days=((day - last).days + 13) // 14 * 14)
        promo.append(int(promo_by_day.get(source, 0) or 0))
    return opened, promo


def _promo_spans(days: pd.DataFrame) -> pd.DataFrame:
    spans = days.loc[days["promo"] == 1, ["date"]].copy()
    spans["start"] = spans["date"] - pd.Timedelta(hours=12)
    spans["end"] = spans["date"] + pd.Timedelta(hours=12)
    spans["what"] = "Promo day"
    return spans


def forecast_chart(actuals: pd.DataFrame, forecast: pd.DataFrame, title: str = "") -> alt.LayerChart:
    """Recent actuals and the forecast with its interval band; promo days shaded, closed days marked, forecast days
    that used the store's planning data marked with a square (their plan values in its tooltip).

    Args:
        actuals: :func:`sales_frame` output.
        forecast: :func:`forecast_frame` output.
        title: Chart title.
    """
    lines = pd.concat(
        [
            pd.DataFrame({"date": actuals["date"], "sales": actuals["sales"], "series": ACTUAL}),
            pd.DataFrame({"date": forecast["date"], "sales": forecast["forecast"], "series": FORECAST}),
        ],
        ignore_index=True,
    )
    days = pd.concat([actuals[["date", "open", "promo"]], forecast[["date", "open", "promo"]]], ignore_index=True)
    closed = days[days["open"] == 0].assign(sales=0.0, what="Closed")
    x = alt.X("date:T", title="Date")
    promo = (
        alt.Chart(_promo_spans(days))
        .mark_rect(opacity=0.18, color="#f4a261")
        .encode(x="start:T", x2="end:T", tooltip=[alt.Tooltip("date:T", title="Promo day")])
    )
    band = (
        alt.Chart(forecast)
        .mark_area(opacity=0.25, color="#e76f51")
        .encode(
            x=x,
            y=alt.Y("lower:Q", title="Sales"),
            y2="upper:Q",
            tooltip=[alt.Tooltip("date:T"), alt.Tooltip("lower:Q", format=",.0f"), alt.Tooltip("upper:Q", format=",.0f")],
        )
    )
    color = alt.Color("series:N", title=None, scale=alt.Scale(domain=[ACTUAL, FORECAST], range=["#264653", "#e76f51"]))
    line = (
        alt.Chart(lines)
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=x,
            y=alt.Y("sales:Q", title="Sales"),
            color=color,
            strokeDash=alt.StrokeDash("series:N", legend=None, scale=alt.Scale(domain=[ACTUAL, FORECAST], range=[[1, 0], [5, 3]])),
            tooltip=[alt.Tooltip("date:T"), "series:N", alt.Tooltip("sales:Q", format=",.0f")],
        )
    )
    planned = forecast.loc[forecast["inputs"] == PLAN, ["date", "forecast", "open", "promo", "state_holiday",
                                                       "school_holiday", "plan_version"]].astype({"plan_version": "float"})
    plan_marks = (
        alt.Chart(planned)
        .mark_point(shape="square", size=110, color="#2a9d8f", filled=False, strokeWidth=2)
        .encode(
            x=x,
            y="forecast:Q",
            tooltip=[
                alt.Tooltip("date:T", title="Plan day"), alt.Tooltip("forecast:Q", format=",.0f"), "open:Q", "promo:Q",
                alt.Tooltip("state_holiday:N", title="state holiday"), alt.Tooltip("school_holiday:Q", title="school holiday"),
                alt.Tooltip("plan_version:Q", title="plan version"),
            ],
        )
    )
    marks = (
        alt.Chart(closed)
        .mark_point(shape="cross", size=70, color="#d62828", filled=True)
        .encode(x=x, y="sales:Q", tooltip=[alt.Tooltip("date:T", title="Closed")])
    )
    layers = alt.LayerChart(layer=[promo, band, line, plan_marks, marks])
    return layers.properties(title=title, height=380).interactive(bind_y=False)


def inputs_summary(forecast: pd.DataFrame, plan: pd.DataFrame | None) -> str:
    """What the forecast days' inputs were: ``Inputs: 3 plan days (plan v7), 11 projected days.``, or that every day
    was projected; adds planned days the forecast did not use yet (planning data uploaded since)."""
    planned = forecast[forecast["inputs"] == PLAN]
    if planned.empty:
        text = "Inputs: projected for every forecast day (no planning data used)."
    else:
        versions = sorted({int(v) for v in planned["plan_version"].dropna()})
        which = f" (plan {', '.join(f'v{v}' for v in versions)})" if versions else ""
        text = f"Inputs: {len(planned)} plan day(s){which}, {len(forecast) - len(planned)} projected day(s)."
    if plan is not None and not plan.empty:
        unused = forecast.loc[(forecast["inputs"] != PLAN) & forecast["date"].isin(plan["date"]), "date"]
        if not unused.empty:
            text += (f" {len(unused)} projected day(s) have planning data uploaded since this forecast"
                     " (the next batch forecast uses it).")
    return text


def chain_frame(chain: dict[str, Any]) -> pd.DataFrame:
    """``GET /v1/chain/forecast`` -> frame ``date, total, lower, upper, stores``."""
    frame = pd.DataFrame(chain.get("days") or [])
    if frame.empty:
        return pd.DataFrame(columns=["date", "total", "lower", "upper", "stores"])
    frame = frame.rename(columns={"value": "total"})
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def chain_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """Total chain forecast per day with the summed store bounds."""
    x = alt.X("date:T", title="Date")
    band = alt.Chart(frame).mark_area(opacity=0.25, color="#e76f51").encode(x=x, y=alt.Y("lower:Q", title="Sales, all stores"), y2="upper:Q")
    line = (
        alt.Chart(frame)
        .mark_line(point=True, color="#e76f51")
        .encode(
            x=x,
            y="total:Q",
            tooltip=[alt.Tooltip("date:T"), alt.Tooltip("total:Q", format=",.0f"), alt.Tooltip("stores:Q")],
        )
    )
    return alt.LayerChart(layer=[band, line]).properties(height=320).interactive(bind_y=False)


def errors_chart(items: list[dict[str, Any]]) -> alt.Chart:
    """Horizontal bars of backtest RMSPE per store, worst on top."""
    frame = pd.DataFrame(items)
    frame["label"] = "Store " + frame["store"].astype(str)
    return (
        alt.Chart(frame)
        .mark_bar(color="#2a9d8f")
        .encode(
            x=alt.X("rmspe:Q", title="Backtest RMSPE", axis=alt.Axis(format="%")),
            y=alt.Y("label:N", sort="-x", title=None),
            tooltip=["store:Q", "store_type:N", "assortment:N", alt.Tooltip("rmspe:Q", format=".2%")],
        )
        .properties(height=max(120, 22 * len(frame)))
    )


def metrics_table(versions: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-model backtest RMSPE/MAE (``h<H>.<model>.<metric>`` keys) as rows, one column per version."""
    rows = []
    for v in versions:
        for key, value in (v.get("metrics") or {}).items():
            m = METRIC_RE.match(key)
            if m:
                rows.append(
                    {
                        "model": m["model"],
                        "horizon": int(m["h"]),
                        "metric": m["metric"],
                        "version": f"v{v['version']}",
                        "value": value,
                    }
                )
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index=["horizon", "metric", "model"], columns="version", values="value", aggfunc="last")
    ordered = sorted(table.columns, key=lambda c: int(c[1:]), reverse=True)
    return table[ordered].reset_index()


def versions_table(models: dict[str, Any]) -> pd.DataFrame:
    """One row per version: aliases, status, created, model RMSPE, median baseline RMSPE, improvement."""
    rows = []
    for v in models.get("versions") or []:
        m = v.get("metrics") or {}
        rows.append(
            {
                "version": v["version"],
                "aliases": ", ".join(v.get("aliases") or []) or "-",
                "status": v.get("status"),
                "trained at": _when(v.get("created_at")),
                "backtest RMSPE": m.get("backtest_rmspe"),
                "median baseline RMSPE": m.get("median_baseline_rmspe", m.get("baseline_median_rmspe")),
                "improvement vs median": m.get("improvement_vs_median"),
                "run": v.get("run_id"),
            }
        )
    return pd.DataFrame(rows)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


def when(value: str | None) -> str:
    """An ISO timestamp from the API as ``YYYY-MM-DD HH:MM UTC`` (``-`` when missing)."""
    return _when(value)


def duration(job: dict[str, Any], now: datetime | None = None) -> str:
    """How long a job ran (or has been running), e.g. ``1 min 05 s``."""
    start = job.get("started_at") or job.get("created_at")
    if not start:
        return "-"
    end = job.get("finished_at")
    t0 = datetime.fromisoformat(start.replace("Z", "+00:00"))
    t1 = datetime.fromisoformat(end.replace("Z", "+00:00")) if end else (now or datetime.now(t0.tzinfo))
    seconds = max(0, int((t1 - t0).total_seconds()))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def champion_decision(result: dict[str, Any] | None) -> str | None:
    """A sentence about the champion gate from a finished job's result, or None when it has none."""
    if not result:
        return None
    gate: dict[str, Any] = result["gate"] if isinstance(result.get("gate"), dict) else result
    decision = gate.get("decision") or result.get("gate_decision")
    if not decision:
        return None
    version = gate.get("version") or result.get("model_version")
    new, old = gate.get("new_rmspe"), gate.get("champion_rmspe")
    prev = gate.get("previous_champion")
    who = f"Version {version}" if version else "The new model"
    if decision == "champion":
        text = f"{who} is the new champion"
    else:
        text = f"{who} did not beat the champion" + (f" v{prev}" if prev else "") + " and is a challenger"
    if isinstance(new, (int, float)):
        text += f" (backtest RMSPE {new:.4f}"
        text += f" vs champion {old:.4f})" if isinstance(old, (int, float)) else ")"
    reason = gate.get("reason")
    return f"{text}. {reason}" if reason and not isinstance(new, (int, float)) else f"{text}."
