"""Streamlit AppTest runs of every view against the real API over the real local stack (seeded data)."""

from __future__ import annotations

import json
import time

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from uitest_support import FORECAST_STORES, HORIZON, LAST_DAY, LATE_PLAN_DAY, PLAN_DAYS, PLAN_STORE, STORE_RMSPE, UI_APP, UiEnv

from app.stack.base import free_port

pytestmark = pytest.mark.integration


def _app(view: str | None = None) -> AppTest:
    at = AppTest.from_file(str(UI_APP), default_timeout=60)
    at.run()
    if view:
        at.sidebar.radio(key="view").set_value(view).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("error", "warning", "info", "success", "caption", "markdown") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def _layer_rows(at: AppTest, layer: dict) -> int:
    """Data rows of one layer of the page's first chart (its named dataset)."""
    name = layer["data"]["name"]
    chart = at.get("vega_lite_chart")[0]
    return next(pa.ipc.open_stream(ds.data.data).read_all().num_rows for ds in chart.proto.datasets if ds.name == name)


def _charts(at: AppTest) -> list[tuple[dict, int]]:
    """Every Altair chart on the page: its Vega-Lite spec and the number of data rows it carries."""
    out = []
    for chart in at.get("vega_lite_chart"):
        rows = sum(pa.ipc.open_stream(ds.data.data).read_all().num_rows for ds in chart.proto.datasets)
        out.append((json.loads(chart.proto.spec), rows))
    return out


def test_forecast_view_shows_chart_model_facts_and_table(ui_settings_env: UiEnv) -> None:
    at = _app()
    select = at.selectbox(key="forecast_store")
    assert "type c · assortment c" in select.format_func(3)
    select.set_value(3).run()
    assert not at.exception and not at.error
    charts = _charts(at)
    assert len(charts) == 1
    spec, rows = charts[0]
    assert rows > 56 + 2 * HORIZON  # actuals + forecast lines, band, promo spans, closed markers
    assert "Store 3" in json.dumps(spec.get("title"))
    assert len(spec["layer"]) == 5
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model version"] == "v2"
    assert metrics["Backtest RMSPE"] == "10.00%"
    assert any(m.value.startswith("**Trained at**") and m.value.endswith("UTC") for m in at.markdown)
    assert any(c.value.startswith("Store 3 · type c · assortment c: 56 days of actual sales, 14 forecast days") for c in at.caption)
    table = at.dataframe[0].value
    assert len(table) == HORIZON and set(table.columns) >= {"date", "forecast", "lower", "upper", "open", "promo"}
    # Sundays are forecast at 0 and marked closed; the band brackets the forecast.
    assert (table.loc[table["forecast"] == 0, "open"] == 0).all() and (table["lower"] <= table["upper"]).all()
    assert at.get("download_button")
    # Store 3 has no planning data: every day's inputs were projected, and the page says so.
    assert set(table["inputs"]) == {"projected"} and table["plan_version"].isna().all()
    assert "Inputs: projected for every forecast day" in _texts(at)


def test_forecast_view_marks_plan_days_with_the_plan_values(ui_settings_env: UiEnv) -> None:
    """Store 2's forecast used its planning data on days 1-4: the table says plan vs projected per day and shows the
    plan's values (from GET /v1/stores/2/plan), the chart marks those days, the text counts them and names the
    planned day the forecast did not use yet."""
    from datetime import timedelta

    at = _app()
    at.selectbox(key="forecast_store").set_value(PLAN_STORE).run()
    assert not at.exception and not at.error and not at.warning, [e.value for e in (*at.error, *at.warning)]
    table = at.dataframe[0].value.set_index("date")
    planned = {LAST_DAY + timedelta(days=k) for k in PLAN_DAYS}
    assert len(table) == HORIZON and {d for d in table.index if table.loc[d, "inputs"] == "plan"} == planned
    assert set(table.loc[[d not in planned for d in table.index], "inputs"]) == {"projected"}
    plan = httpx.get(f"{ui_settings_env.api_url}/v1/stores/{PLAN_STORE}/plan", headers={"X-API-Key": ui_settings_env.key},
                     params={"start": str(LAST_DAY + timedelta(days=1)), "days": HORIZON}).json()
    version = plan["days"][0]["version"]
    for k, values in PLAN_DAYS.items():
        row = table.loc[LAST_DAY + timedelta(days=k)]
        assert {c: row[c] for c in values} == values and row["plan_version"] == version, (k, row.to_dict())
    late = table.loc[LAST_DAY + timedelta(days=LATE_PLAN_DAY)]
    assert late["inputs"] == "projected" and pd.isna(late["plan_version"])  # the forecast's own inputs, not the newer plan
    spec, _ = _charts(at)[0]
    marks = [layer for layer in spec["layer"] if (layer.get("mark") or {}).get("shape") == "square"]
    assert len(marks) == 1 and _layer_rows(at, marks[0]) == len(PLAN_DAYS)
    assert (f"Inputs: {len(PLAN_DAYS)} plan day(s) (plan v{version}), {HORIZON - len(PLAN_DAYS)} projected day(s)."
            " 1 projected day(s) have planning data uploaded since this forecast") in _texts(at)


def test_forecast_view_store_without_forecast_says_not_found(ui_settings_env: UiEnv) -> None:
    at = _app()
    at.selectbox(key="forecast_store").set_value(6).run()
    assert not at.exception
    assert any("Not found" in e.value and "No batch forecast for store 6" in e.value for e in at.error)


def test_chain_view_totals_and_worst_stores(ui_settings_env: UiEnv) -> None:
    at = _app("Chain")
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Stores"] == str(len(FORECAST_STORES))
    assert metrics["Model versions"] == "v2"
    expected_total = sum(
        0.0 if (6 + k) % 7 == 0 else 4000.0 + 300 * s + 10 * k for s in FORECAST_STORES for k in range(1, HORIZON + 1)
    )  # 2015-06-14 is a Sunday (k=1), and every 7th day after
    assert metrics["Total forecast"] == f"{expected_total:,.0f}"
    worst = at.dataframe[0].value
    ranked = sorted(STORE_RMSPE, key=STORE_RMSPE.get, reverse=True)
    assert worst["store"].tolist() == ranked
    assert worst.iloc[0]["store_type"] == "d"
    assert len(_charts(at)) == 2


def test_models_view_versions_aliases_and_baselines(ui_settings_env: UiEnv) -> None:
    at = _app("Models")
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"challenger": "v1", "champion": "v2"}
    versions = at.dataframe[0].value
    assert versions["version"].tolist() == ["2", "1"]
    assert versions["aliases"].tolist() == ["champion", "challenger"]
    assert versions["backtest RMSPE"].tolist() == [0.10, 0.14]
    side_by_side = at.dataframe[1].value
    rmspe = side_by_side[side_by_side["metric"] == "rmspe"].set_index("model")
    assert rmspe.loc["median_baseline", "v2"] == pytest.approx(0.128)
    assert rmspe.loc["lgbm", "v2"] == pytest.approx(0.10) and rmspe.loc["lgbm", "v1"] == pytest.approx(0.14)


def test_training_view_double_click_starts_one_job_and_state_changes(ui_settings_env: UiEnv) -> None:
    at = _app("Training")
    at.radio(key="train_scope").set_value("One store").run()
    at.selectbox(key="train_store").set_value(2).run()
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    started = [s.value for s in at.success]
    assert started and "Started job" in started[0]
    job_id = started[0].split("`")[1]
    at.button(key="train_start").click().run()  # the second click of a double click
    assert any(job_id in i.value and "already started" in i.value for i in at.info)
    headers = {"X-API-Key": ui_settings_env.key}
    jobs = httpx.get(f"{ui_settings_env.api_url}/v1/training-jobs", headers=headers).json()["items"]
    assert [j["id"] for j in jobs].count(job_id) == 1 and len([j for j in jobs if j["store"] == 2]) == 1
    first = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        table = next(d.value for d in at.dataframe if "state" in d.value.columns)
        state = table.set_index("id").loc[job_id, "state"]
        first = first or state
        if "SUCCEEDED" in state or "FAILED" in state:
            break
        time.sleep(2)
        at.run()
    assert first is not None and "SUCCEEDED" in state, (first, state, table.to_dict("records"))
    assert "PENDING" in first or "RUNNING" in first
    assert any("Champion decision: Version 3 is the new champion" in s.value for s in at.success)
    # A finished job frees the key: the next click is a new job.
    at.button(key="train_start").click().run()
    assert any("Started job" in s.value and job_id not in s.value for s in at.success)


def test_job_details_follow_the_job_just_started(ui_settings_env: UiEnv) -> None:
    """An earlier finished job of the same client is shown first; after "Start training" the details show the new
    job, not the earlier one (the picker kept its value across reruns: CI saw the earlier noop job's SUCCEEDED and
    no champion decision)."""
    from app.common.api_client import ApiClient

    api = ApiClient(ui_settings_env.api_url, ui_settings_env.key, timeout_s=30)
    try:
        earlier, _ = api.submit_job({"kind": "noop"}, f"ui-earlier-{time.time_ns()}")
        assert api.wait_for_job(earlier["id"], timeout_s=180, poll_s=1)["state"] == "SUCCEEDED"
    finally:
        api.close()
    at = _app("Training")
    assert at.selectbox(key="job_pick").value == earlier["id"]  # the newest job of the list
    at.radio(key="train_scope").set_value("One store").run()
    at.selectbox(key="train_store").set_value(3).run()
    at.button(key="train_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    started = next(s.value for s in at.success if "Started job" in s.value).split("`")[1]
    assert started != earlier["id"]
    assert at.selectbox(key="job_pick").value == started
    at.run()  # the next poll keeps it
    assert at.selectbox(key="job_pick").value == started


def test_api_down_shows_message_not_trace(ui_settings_env: UiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFMLOPS_API_URL", f"http://127.0.0.1:{free_port()}")
    for view in (None, "Chain", "Training", "Models"):
        at = _app(view)
        assert not at.exception
        errors = "\n".join(e.value for e in at.error)
        assert "API unreachable" in errors and "Cannot reach the API" in errors and "Traceback" not in errors


def test_bad_key_shows_401_message(ui_settings_env: UiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFMLOPS_API_KEY", "sfm_00000000_not-a-real-key-at-all")
    at = _app()
    errors = "\n".join(e.value for e in at.error)
    assert "Not authorised" in errors and "SFMLOPS_API_KEY" in errors and "Invalid or revoked API key" in errors


def test_rate_limit_shows_429_message(ui_settings_env: UiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two unfinished jobs of this client hit the concurrency limit (2): the UI says so and when to retry."""
    env = ui_settings_env
    headers = {"X-API-Key": env.other_key}
    ids = []
    for i in range(2):
        r = httpx.post(
            f"{env.api_url}/v1/training-jobs",
            json={"kind": "noop", "noop_seconds": 120},
            headers={**headers, "Idempotency-Key": f"ui-429-{i}-{time.time_ns()}"},
            timeout=30,
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    try:
        monkeypatch.setenv("SFMLOPS_API_KEY", env.other_key)
        at = _app("Training")
        at.radio(key="train_scope").set_value("All stores").run()
        at.button(key="train_start").click().run()
        assert not at.exception
        assert any("Too many requests" in e.value for e in at.error), [e.value for e in at.error]
    finally:
        for job_id in ids:
            httpx.post(f"{env.api_url}/v1/training-jobs/{job_id}/stop", headers=headers, timeout=30)
