"""UI pieces that need no services: chart frames, projections, summaries, and the client's error mapping."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from app.config import Settings
from app.stack.base import free_port
from app.ui import charts, streamlit_command, ui_env
from app.ui.client import ApiProblem, ui_client


def _actuals(days: int = 28) -> pd.DataFrame:
    last = date(2015, 6, 13)  # a Saturday
    rows = []
    for k in range(days):
        d = last - timedelta(days=k)
        opened = int(d.isoweekday() != 7)
        promo = int(opened and d.isoweekday() <= 5 and ((last - d).days // 7) % 2 == 1)
        rows.append({"date": str(d), "sales": 5000 * opened, "open": opened, "promo": promo})
    return charts.sales_frame({"points": rows})


def test_projection_follows_weekday_closures_and_two_week_promo_cycle() -> None:
    actuals = _actuals()
    future = pd.Series(pd.date_range("2015-06-14", periods=28, freq="D"))
    opened, promo = charts.project_inputs(actuals, future)
    for day, o, p in zip(future, opened, promo, strict=True):
        assert o == int(day.isoweekday() != 7)
        source = day - pd.Timedelta(days=((day - pd.Timestamp("2015-06-13")).days + 13) // 14 * 14)
        assert p == int(actuals.set_index("date").loc[source, "promo"])
    assert sum(promo) == 2 * int(actuals.tail(14)["promo"].sum())


def test_forecast_frame_marks_zero_forecast_closed_and_keeps_band() -> None:
    points = [{"date": "2015-06-14", "value": 0.0, "lower": 0.0, "upper": 0.0}] + [
        {"date": f"2015-06-{15 + k}", "value": 100.0 + k, "lower": 90.0, "upper": 120.0} for k in range(3)
    ]
    frame = charts.forecast_frame({"points": points}, _actuals())
    assert frame["open"].tolist() == [0, 1, 1, 1]
    assert frame.loc[0, "promo"] == 0
    chart = charts.forecast_chart(_actuals(), frame, "Store 1").to_dict()
    assert len(chart["layer"]) == 5
    assert set(frame["inputs"]) == {"projected"}  # points without inputs (an older API) count as projected


def test_forecast_frame_takes_plan_days_values_from_the_plan_and_projects_the_others() -> None:
    points = [{"date": f"2015-06-{14 + k}", "value": 100.0, "lower": 90.0, "upper": 110.0, "inputs": i}
              for k, i in enumerate(["plan", "plan", "projected", "projected"])]
    plan = charts.plan_frame({"store": 1, "days": [
        {"date": "2015-06-14", "open": 1, "promo": 1, "state_holiday": "a", "school_holiday": 1, "version": 7},
        {"date": "2015-06-15", "open": 0, "promo": 0, "state_holiday": "0", "school_holiday": 0, "version": 8},
        {"date": "2015-06-17", "open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 1, "version": 8},
    ]})
    frame = charts.forecast_frame({"points": points}, _actuals(), plan)
    assert frame["inputs"].tolist() == ["plan", "plan", "projected", "projected"]
    # 06-14 is a Sunday the projection closes: the plan opens it; 06-17's newer plan row is not what the forecast used.
    assert frame[["open", "promo", "state_holiday", "school_holiday"]].values.tolist()[:2] == [[1, 1, "a", 1], [0, 0, "0", 0]]
    assert frame["plan_version"].tolist()[:2] == [7, 8] and frame["plan_version"].iloc[2:].isna().all()
    projected_open, projected_promo = charts.project_inputs(_actuals(), frame["date"].iloc[2:])
    assert frame["open"].iloc[2:].tolist() == projected_open and frame["school_holiday"].iloc[2:].tolist() == [0, 0]
    assert frame["promo"].iloc[2:].tolist() == projected_promo
    marks = next(layer for layer in charts.forecast_chart(_actuals(), frame).to_dict()["layer"]
                 if layer["mark"].get("shape") == "square")
    assert marks["mark"]["filled"] is False
    assert charts.inputs_summary(frame, plan) == ("Inputs: 2 plan day(s) (plan v7, v8), 2 projected day(s). 1 projected day(s)"
                                                  " have planning data uploaded since this forecast (the next batch forecast uses it).")
    no_plan = charts.forecast_frame({"points": [{**p, "inputs": "projected"} for p in points]}, _actuals(), charts.plan_frame(None))
    assert charts.inputs_summary(no_plan, charts.plan_frame(None)) == "Inputs: projected for every forecast day (no planning data used)."


def test_metrics_table_puts_models_and_baselines_side_by_side() -> None:
    versions = [
        {"version": "2", "metrics": {"h48.lgbm.rmspe": 0.11, "h48.median.rmspe": 0.128, "backtest_rmspe": 0.11}},
        {"version": "1", "metrics": {"h48.lgbm.rmspe": 0.13, "h48.median.rmspe": 0.128, "h7.lgbm.mae": 500.0}},
    ]
    table = charts.metrics_table(versions)
    assert list(table.columns) == ["horizon", "metric", "model", "v2", "v1"]
    rmspe = table[(table["metric"] == "rmspe") & (table["horizon"] == 48)].set_index("model")
    assert rmspe.loc["lgbm", "v2"] == 0.11 and rmspe.loc["median", "v1"] == 0.128
    assert charts.metrics_table([{"version": "1", "metrics": {"backtest_rmspe": 0.1}}]).empty


def test_champion_decision_and_duration_texts() -> None:
    gate = {"decision": "challenger", "version": "4", "new_rmspe": 0.12, "champion_rmspe": 0.11, "previous_champion": "3"}
    assert charts.champion_decision({"gate": gate}) == (
        "Version 4 did not beat the champion v3 and is a challenger (backtest RMSPE 0.1200 vs champion 0.1100)."
    )
    first = {"decision": "champion", "version": "1", "new_rmspe": 0.1, "champion_rmspe": None}
    assert charts.champion_decision({"gate": first}) == "Version 1 is the new champion (backtest RMSPE 0.1000)."
    assert charts.champion_decision({"ok": True}) is None and charts.champion_decision(None) is None
    job = {"created_at": "2026-01-01T10:00:00Z", "started_at": "2026-01-01T10:00:05Z", "finished_at": "2026-01-01T10:01:10Z"}
    assert charts.duration(job) == "1 min 05 s"


def test_client_reports_unreachable_api_with_the_setting_to_check() -> None:
    port = free_port()
    client = ui_client(Settings(api_url=f"http://127.0.0.1:{port}", ui_api_timeout_s=2))
    with pytest.raises(ApiProblem) as info:
        client.models()
    client.close()
    assert info.value.status == 0 and info.value.title == "API unreachable"
    assert f"127.0.0.1:{port}" in info.value.message and "SFMLOPS_API_URL" in info.value.message


def test_streamlit_command_binds_to_settings_and_passes_api_settings() -> None:
    s = Settings(ui_port=8599, api_port=8123)
    cmd = streamlit_command(s)
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8599"
    assert cmd[cmd.index("--client.showErrorDetails") + 1] == "false"
    assert ui_env(s)["SFMLOPS_API_URL"] == "http://127.0.0.1:8123"


def test_ui_shows_no_emoji_only_marks_every_font_renders() -> None:
    """Chromium without an emoji font draws emoji as empty boxes: the UI's texts use plain marks, one per state."""
    from app.common.jobs import JobState
    from app.ui import views

    for path in sorted((Path(views.__file__).parent).glob("*.py")):
        emoji = sorted({f"U+{ord(c):04X}" for c in path.read_text() if ord(c) >= 0x1F000 or ord(c) == 0xFE0F})
        assert emoji == [], f"{path.name} uses emoji {emoji}"
    assert set(views.STATE_MARK) == set(JobState)
    assert views.state_label("SUCCEEDED") == "✓ SUCCEEDED" and views.state_label("NEW") == "NEW"
