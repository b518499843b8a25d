"""Planning data (issue 17.5): validation of plan rows, versioning in Postgres, and the batch forecast using the
plan where it has a (store, day) and projected inputs elsewhere, with the ``inputs`` label per forecast row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from app.config import Settings
from app.forecasting import planning

KNOWN = {1, 2}


def _row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {"store": 1, "date": "2015-02-02", "open": 1, "promo": 0, "state_holiday": "0", "school_holiday": 0}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


def _problems(entries: list, **kwargs: object) -> list[tuple[tuple[str, int], str, str]]:
    with pytest.raises(planning.PlanError) as info:
        planning.check(entries, KNOWN, **kwargs)
    return [(p.where, p.field, p.reason) for p in info.value.problems]


# --- validation (no services) ----------------------------------------------------------------------------
def test_every_bad_row_is_named_with_its_index_field_and_reason() -> None:
    good = _row()
    rows = [
        good,
        _row(store=7),  # unknown store
        _row(date="02/03/2015"),  # not YYYY-MM-DD
        _row(open=2),  # flag not 0/1
        _row(state_holiday="x"),  # not the ingestion's vocabulary
        _row(promo=...),  # missing field
        _row(school_holiday="1"),  # wrong type
        _row(day_of_week=3),  # 2015-02-02 is a Monday
        _row(date="2015-02-03", Promo=1),  # unknown field
        _row(date="2015-02-02"),  # repeats row 0
        "not an object",
    ]
    assert _problems(planning.json_entries(rows)) == [
        (("rows", 1), "store", "unknown store 7"),
        (("rows", 2), "date", "invalid date '02/03/2015' (expected YYYY-MM-DD)"),
        (("rows", 3), "open", "open must be 0 or 1, got 2"),
        (("rows", 4), "state_holiday", "state_holiday must be one of 0,a,b,c, got 'x'"),
        (("rows", 5), "promo", "missing field promo"),
        (("rows", 6), "school_holiday", "wrong type for school_holiday: expected integer"),
        (("rows", 7), "day_of_week", "day_of_week 3 does not match date 2015-02-02 (1)"),
        (("rows", 8), "Promo", "unknown field (a plan row has store, date, day_of_week, open, promo, state_holiday, school_holiday)"),
        (("rows", 9), "date", "store 1 on 2015-02-02 repeats row 0 of this upload"),
        (("rows", 10), "", "a row must be an object with store, date, open, promo, state_holiday, school_holiday"),
    ]
    # the API's dotted locations and the summary that says nothing was stored
    with pytest.raises(planning.PlanError) as info:
        planning.check(planning.json_entries(rows), KNOWN)
    assert info.value.problems[2].location == "body.rows.3.open"
    assert info.value.summary == "plan body refused (10 bad row(s) of 11); nothing was stored"
    assert _problems([]) == [(("body", 0), "", "no rows")]


def test_csv_in_the_kaggle_test_format_is_parsed_and_checked_line_by_line() -> None:
    text = (
        "Id,Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday\n"
        "1,1,1,2015-02-02,1.0,1,0,0\n"  # Kaggle writes Open as 1.0
        "2,2,1,2015-02-02,1,0,a,1\n"
        "\n"
        "3,1,4,2015-02-03,1,0,0,0\n"  # 2015-02-03 is a Tuesday
        "4,2,2,2015-02-03,,0,0,0\n"  # Open missing (as store 622 in Kaggle's test.csv)
        "5,2,2\n"
    )
    entries, names = planning.csv_entries(text)
    assert entries[0] == (("line", 2), {"store": 1, "day_of_week": 1, "date": "2015-02-02", "open": 1, "promo": 1, "state_holiday": "0",
                                        "school_holiday": 0})
    assert _problems(entries, names=names, require_day_of_week=True) == [
        (("line", 5), "DayOfWeek", "day_of_week 4 does not match date 2015-02-03 (2)"),
        (("line", 6), "Open", "missing field open"),
        (("line", 7), "", "3 field(s), the header has 8"),
    ]
    rows = planning.check(entries[:2], KNOWN, names=names, require_day_of_week=True)
    assert rows[1] == planning.PlanRow(2, dt.date(2015, 2, 2), 1, 0, "a", 1)
    # a header without a column the plan needs, or with one it does not know, is refused before any row
    with pytest.raises(planning.PlanError) as info:
        planning.csv_entries("Store,Date,Open,Promo,StateHoliday,SchoolHoliday,Sales\n1,2015-02-02,1,0,0,0,5\n")
    assert [(p.where, p.field, p.reason[:14]) for p in info.value.problems] == [
        (("line", 1), "DayOfWeek", "missing column"), (("line", 1), "Sales", "unknown column")
    ]


def test_apply_plan_replaces_the_projected_inputs_only_where_the_plan_has_the_store_day(make_sales) -> None:
    from app.forecasting.batch import apply_plan, project_future_inputs

    future = project_future_inputs(make_sales(), 14)  # stores 1, 2 from 2015-02-02 (a Monday)
    plan = pd.DataFrame({
        "store": [1, 1, 9], "date": pd.to_datetime(["2015-02-02", "2015-02-09", "2015-02-09"]), "open": [0, 1, 1], "promo": [0, 1, 1],
        "state_holiday": ["a", "0", "0"], "school_holiday": [1, 0, 0], "version": [1, 2, 2],
    })
    out = apply_plan(future, plan)
    assert len(out) == len(future) and (out["inputs"] == "plan").sum() == 2  # store 9 is not in the grid: ignored
    planned = out.set_index(["store", "date"])
    assert planned.loc[(1, pd.Timestamp("2015-02-02")), ["open", "promo", "state_holiday", "school_holiday", "inputs"]].tolist() == [0, 0, "a", 1, "plan"]
    assert planned.loc[(1, pd.Timestamp("2015-02-09")), ["open", "promo", "inputs"]].tolist() == [1, 1, "plan"]
    rest = out["inputs"] == "projected"
    cols = ["store", "date", "open", "promo", "state_holiday", "school_holiday"]
    pd.testing.assert_frame_equal(out.loc[rest, cols], future.loc[rest.to_numpy(), cols])
    assert (apply_plan(future, plan.iloc[:0])["inputs"] == "projected").all()


# --- Postgres: versions, refusal, the batch forecast -------------------------------------------------------
@pytest.fixture
def plan_db(stack: Settings, isolated_tables, make_sales, make_stores) -> Settings:
    """Tables of this test only, with stores 1 and 2 and 28 days of their sales (2015-01-05 .. 2015-02-01)."""
    from app.data.load import load_sales_table, load_stores_table

    settings = isolated_tables(stack, "tpl")
    load_stores_table(settings, make_stores())
    load_sales_table(settings, make_sales())
    return settings


def _upload(settings: Settings, rows: list[dict]) -> dict:
    from app.db import transaction

    with transaction(settings) as conn:
        return planning.upload(conn, settings, planning.json_entries(rows), "test-client")


def _stored(settings: Settings) -> int:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {settings.table_planning}")
        return cur.fetchone()[0]


@pytest.mark.integration
def test_newest_version_wins_and_a_bad_upload_stores_nothing(plan_db: Settings) -> None:
    from app.db import transaction

    one = _upload(plan_db, [_row(date="2015-02-02", promo=0), _row(date="2015-02-03", promo=0), _row(store=2, date="2015-02-02")])
    two = _upload(plan_db, [_row(date="2015-02-03", promo=1, open=1)])
    assert (one["version"] < two["version"], one["rows"], one["stores"], two["rows"]) == (True, 3, 2, 1)
    assert (one["first_date"], one["last_date"], one["client"]) == ("2015-02-02", "2015-02-03", "test-client")
    with pytest.raises(planning.PlanError) as info:
        _upload(plan_db, [_row(date="2015-02-04"), _row(store=3, date="2015-02-04")])  # store 3 is not in the stores table
    assert [(p.where, p.field, p.reason) for p in info.value.problems] == [(("rows", 1), "store", "unknown store 3")]
    assert _stored(plan_db) == 4
    with transaction(plan_db) as conn:
        plan = planning.read_plan(conn, plan_db, dt.date(2015, 2, 1), dt.date(2015, 2, 28))
        assert [(r[0], str(r[1]), r[3], r[6]) for r in plan] == [
            (1, "2015-02-02", 0, one["version"]), (1, "2015-02-03", 1, two["version"]), (2, "2015-02-02", 0, one["version"]),
        ]
        assert planning.read_plan(conn, plan_db, dt.date(2015, 2, 3), dt.date(2015, 2, 3), stores=[2]) == []
        assert [v["version"] for v in planning.versions(conn, plan_db)] == [two["version"], one["version"]]


def _tiny_model(tmp_path: Path, sales: pd.DataFrame, stores: pd.DataFrame) -> str:
    """A real fitted model (the median(store, weekday, promo) baseline on the test's sales) saved as a local pyfunc."""
    import mlflow.pyfunc

    from app.forecasting.features import to_long
    from app.forecasting.models import BaselineModel
    from app.forecasting.pyfunc import SalesForecaster

    fitted = BaselineModel("median_dow_promo").fit(to_long(sales), stores)
    intervals = pd.DataFrame({"lo": [0.9, 0.9], "hi": [1.1, 1.1]}, index=[1, 2])
    wrapper = SalesForecaster(fitted, intervals, sales["date"].max(), [1, 2])
    path = tmp_path / "model"
    mlflow.pyfunc.save_model(str(path), python_model=wrapper, pip_requirements=["pandas"])
    return str(path)


@pytest.mark.integration
def test_batch_forecast_uses_the_plan_where_given_and_says_which_rows_are_projected(
    plan_db: Settings, tmp_path: Path, make_sales, make_stores
) -> None:
    from app.db import transaction
    from app.forecasting.batch import forecast

    # Projection: the promo of 14 days earlier, so the first future week (from Monday 2015-02-02) has promo Mon-Fri
    # and the second none. The plan closes store 1 on Monday 2015-02-02 and puts it on promo on Monday 2015-02-09.
    _upload(plan_db, [_row(date="2015-02-02", open=0, promo=0, state_holiday="a"), _row(date="2015-02-09", open=1, promo=0)])
    _upload(plan_db, [_row(date="2015-02-09", open=1, promo=1)])  # a newer version of the 9th wins
    summary = forecast(plan_db, days=14, model_uri=_tiny_model(tmp_path, make_sales(), make_stores()), source="postgres", version_label="v-test")
    assert (summary["written"], summary["plan_rows"], summary["projected_rows"]) == (28, 2, 26)
    with transaction(plan_db) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT store, date::text, value, inputs FROM {plan_db.table_forecasts} WHERE model_version = 'v-test' ORDER BY store, date")
        rows = {(s, d): (v, i) for s, d, v, i in cur.fetchall()}
    # median(store, weekday, promo) of the history: 1000 * store + 100 * weekday (0 = Monday) + 300 with promo
    assert rows[(1, "2015-02-02")] == (0.0, "plan")  # closed by the plan (projected: open, on promo)
    assert rows[(1, "2015-02-09")] == (1300.0, "plan")  # promo from the plan (projected: none)
    assert rows[(2, "2015-02-02")] == (2300.0, "projected")  # projected promo week
    assert rows[(2, "2015-02-09")] == (2000.0, "projected")
    assert rows[(1, "2015-02-03")] == (1400.0, "projected")
    assert rows[(1, "2015-02-08")] == (0.0, "projected")  # Sunday: projected closed
    assert sum(i == "plan" for _, i in rows.values()) == 2


@pytest.mark.integration
def test_evaluate_scores_true_inputs_and_projected_inputs_side_by_side(plan_db: Settings, tmp_path: Path, make_sales, make_stores) -> None:
    """``sfmlops evaluate --projected-inputs``: the measure of what planning data are worth (issue 17.5)."""
    from app.forecasting.evaluate import evaluate

    # 14 later days of the same shop pattern, except an unplanned-for promo of store 1 on Monday 2015-02-09.
    later = make_sales(days=42)
    later = later[later["date"] >= "2015-02-02"].copy()  # stores 1 and 2, 2015-02-02 .. 2015-02-15
    hit = (later["store"] == 1) & (later["date"] == "2015-02-09")
    later.loc[hit, ["promo", "sales"]] = [1, 1300]
    path = tmp_path / "later.csv"
    kaggle = {"store": "Store", "day_of_week": "DayOfWeek", "date": "Date", "sales": "Sales", "customers": "Customers", "open": "Open",
              "promo": "Promo", "state_holiday": "StateHoliday", "school_holiday": "SchoolHoliday"}
    later.rename(columns=kaggle).assign(Date=lambda d: d["Date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    result = evaluate(plan_db, path, model_uri=_tiny_model(tmp_path, make_sales(), make_stores()), projected_inputs=True)
    assert result["rmspe"] == 0.0 and result["rows"] == result["projected_inputs"]["rows"] == 28
    # one of the 24 open days is forecast without its promo: (1300 - 1000) / 1300 on it, 0 elsewhere
    assert result["projected_inputs"]["rmspe"] == pytest.approx(((300 / 1300) ** 2 / 24) ** 0.5)


def test_projected_inputs_replace_the_true_ones_and_keep_the_actuals(make_sales) -> None:
    from app.forecasting.batch import with_projected_inputs

    sales = make_sales(days=42)
    history, later = sales[sales["date"] < "2015-02-02"], sales[sales["date"] >= "2015-02-02"].copy()
    later["promo"] = 1 - later["promo"]  # the truth differs from the projection everywhere
    out = with_projected_inputs(later, history, pd.Timestamp("2015-02-02"))
    assert out["sales"].tolist() == later["sales"].tolist() and len(out) == len(later)
    assert (out["promo"].to_numpy() == sales[sales["date"] >= "2015-02-02"]["promo"].to_numpy()).all()
    with pytest.raises(ValueError, match=r"store\(s\) \[3\] have no history"):
        with_projected_inputs(later[later["store"] == 1].assign(store=3), history, pd.Timestamp("2015-02-02"))


@pytest.mark.integration
def test_cli_uploads_a_plan_file_with_the_same_checks(plan_db: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from app.cli import app
    from app.config import get_settings

    for name in type(plan_db).model_fields:  # the CLI reads its settings from the environment: this test's tables
        if name.startswith("table_"):
            monkeypatch.setenv(f"SFMLOPS_{name.upper()}", getattr(plan_db, name))
    get_settings.cache_clear()
    header = "Id,Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday\n"
    good, bad = tmp_path / "plan.csv", tmp_path / "bad.csv"
    good.write_text(header + "1,1,1,2015-02-02,1.0,1,0,0\n2,2,1,2015-02-02,0,0,a,0\n")
    bad.write_text(header + "1,1,1,2015-02-03,1,1,0,0\n2,2,1,2015-02-03,1,0,0,0\n")  # 2015-02-03 is a Tuesday
    runner = CliRunner()
    try:
        uploaded = runner.invoke(app, ["plan", "upload", str(good)])
        refused = runner.invoke(app, ["plan", "upload", str(bad)])
        listed = runner.invoke(app, ["plan", "list"])
    finally:
        get_settings.cache_clear()
    assert uploaded.exit_code == 0, uploaded.output
    version = json.loads(uploaded.stdout.strip().splitlines()[-1])
    assert (version["rows"], version["stores"], version["client"].startswith("cli:")) == (2, 2, True)
    text = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "2 bad row(s) of 2" in text and "line 2, DayOfWeek: day_of_week 1 does not match date 2015-02-03 (2)" in text
    assert [v["version"] for v in json.loads(listed.stdout.strip().splitlines()[-1])["versions"]] == [version["version"]]
    assert _stored(plan_db) == 2
