"""Planning data through the API (issue 17.5): JSON and CSV uploads as versions, refusals naming every bad row
with nothing stored, the version list, and the served forecast saying which days used the plan."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pandas as pd
import pytest
from apitest_support import assert_error_shape
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings

pytestmark = pytest.mark.integration
CSV_HEADER = "Id,Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday\n"


def _stores(ids: tuple[int, ...]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({
        "store": list(ids), "store_type": ["a"] * n, "assortment": ["a"] * n, "competition_distance": [500.0] * n,
        "competition_open_since_month": [None] * n, "competition_open_since_year": [None] * n, "promo2": [0] * n,
        "promo2_since_week": [None] * n, "promo2_since_year": [None] * n, "promo_interval": [None] * n,
    })


@pytest.fixture
def planner(api_settings: Settings, isolated_tables) -> tuple[Settings, str]:
    """Tables of this test only (stores 1 and 2) and an API key in them."""
    from app.api.auth import issue_key
    from app.data.load import load_stores_table

    settings = isolated_tables(api_settings, "tap")
    load_stores_table(settings, _stores((1, 2)))
    return settings, issue_key(settings, f"test-planner-{uuid.uuid4().hex[:8]}")


def _count(settings: Settings) -> int:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {settings.table_planning}")
        return cur.fetchone()[0]


def test_json_and_csv_uploads_become_versions_and_bad_ones_store_nothing(planner: tuple[Settings, str]) -> None:
    settings, key = planner
    headers = {"X-API-Key": key}
    rows = [{"store": 1, "date": "2015-08-03", "open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 0},
            {"store": 2, "date": "2015-08-03", "day_of_week": 1, "open": 0, "promo": 0, "state_holiday": "a", "school_holiday": 1}]
    with TestClient(create_app(settings)) as api:
        one = api.post("/v1/planning", json={"rows": rows}, headers=headers)
        assert one.status_code == 201, one.text
        csv = CSV_HEADER + "1,1,2,2015-08-04,1.0,0,0,0\n2,2,2,2015-08-04,1,1,0,0\n3,1,3,2015-08-05,1,1,0,1\n"
        two = api.post("/v1/planning/csv", content=csv.encode(), headers={**headers, "Content-Type": "text/csv"})
        assert two.status_code == 201, two.text
        bad_json = api.post("/v1/planning", headers=headers, json={"rows": [
            rows[0], {**rows[0], "store": 9, "date": "2015-08-06"}, {**rows[0], "date": "2015-8-6"}, {**rows[0], "date": "2015-08-07", "promo": 2},
            {**rows[0], "store": 2**40},  # beyond the database's integer: refused, not looked up
            {**rows[0], "store": [1]},
        ]})
        bad_csv = api.post("/v1/planning/csv", headers=headers, content=(CSV_HEADER + "1,1,2,2015-08-04,1,0,0,0\n2,2,5,2015-08-04,1,0,z,0\n").encode())
        not_utf8 = api.post("/v1/planning/csv", headers=headers, content=b"Store\xff\n")
        listed = api.get("/v1/planning", headers=headers)
        anonymous = api.post("/v1/planning", json={"rows": rows})
    assert {k: one.json()[k] for k in ("rows", "stores", "first_date", "last_date")} == {
        "rows": 2, "stores": 2, "first_date": "2015-08-03", "last_date": "2015-08-03"}
    assert one.json()["client"].startswith("test-planner-")
    assert (two.json()["version"] > one.json()["version"], two.json()["rows"], two.json()["last_date"]) == (True, 3, "2015-08-05")
    err = assert_error_shape(bad_json.json(), 422)
    assert bad_json.status_code == 422 and err["message"] == "plan body refused (5 bad row(s) of 6); nothing was stored"
    assert [(d["field"], d["message"]) for d in err["details"]] == [
        ("body.rows.1.store", "unknown store 9"),
        ("body.rows.2.date", "invalid date '2015-8-6' (expected YYYY-MM-DD)"),
        ("body.rows.3.promo", "promo must be 0 or 1, got 2"),
        ("body.rows.4.store", "wrong type for store: expected integer"),
        ("body.rows.5.store", "wrong type for store: expected integer"),
    ]
    err = assert_error_shape(bad_csv.json(), 422)
    assert [(d["field"], d["message"]) for d in err["details"]] == [
        ("body.line.3.DayOfWeek", "day_of_week 5 does not match date 2015-08-04 (2)"),
    ]
    assert not_utf8.status_code == 422 and "UTF-8" in assert_error_shape(not_utf8.json(), 422)["message"]
    assert anonymous.status_code == 401
    assert _count(settings) == 5  # the two good uploads only
    assert listed.status_code == 200
    assert [(v["version"], v["rows"]) for v in listed.json()["versions"]] == [(two.json()["version"], 3), (one.json()["version"], 2)]


def test_served_forecast_says_which_days_used_the_plan(api_settings: Settings, isolated_tables) -> None:
    """GET /v1/stores/{id}/forecast carries each point's inputs and, for the whole answer, plan / projected / mixed."""
    from mlflow import MlflowClient

    from app.api.auth import issue_key
    from app.api.routes import forecasts
    from app.forecasting.batch import write_forecasts
    from app.forecasting.tracking import configure_mlflow

    settings = isolated_tables(api_settings, "tap", model_name=f"test-plan-{uuid.uuid4().hex[:8]}", horizon_days=3)
    key = issue_key(settings, f"test-planner-{uuid.uuid4().hex[:8]}")
    configure_mlflow(settings)  # the registry's address and credentials
    client = MlflowClient(settings.mlflow_uri)
    client.create_registered_model(settings.model_name)
    try:
        version = client.create_model_version(settings.model_name, source="s3://nowhere/model").version
        client.set_registered_model_alias(settings.model_name, "champion", version)
        start = date(2015, 8, 1)
        frame = pd.DataFrame([
            {"store": s, "date": pd.Timestamp(start + timedelta(days=k)), "value": 100.0, "lower": 90.0, "upper": 110.0,
             "inputs": "plan" if (s, k) in {(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)} else "projected"}
            for s in (1, 2, 3) for k in range(3)
        ])
        write_forecasts(settings, frame, {"model_name": settings.model_name, "model_version": version, "run_id": "r"})
        forecasts.clear_champion_cache()
        with TestClient(create_app(settings)) as api:
            bodies = {s: api.get(f"/v1/stores/{s}/forecast", headers={"X-API-Key": key}).json() for s in (1, 2, 3)}
    finally:
        forecasts.clear_champion_cache()
        client.delete_registered_model(settings.model_name)
    assert [p["inputs"] for p in bodies[1]["points"]] == ["plan", "plan", "projected"] and bodies[1]["inputs"] == "mixed"
    assert (bodies[2]["inputs"], bodies[3]["inputs"]) == ("plan", "projected")
    assert {p["inputs"] for p in bodies[3]["points"]} == {"projected"}
    from app.api.routes.forecasts import BatchStoreForecast

    assert all(BatchStoreForecast.model_validate(b) for b in bodies.values())


def test_a_missing_planning_table_is_a_503_naming_the_setting(planner: tuple[Settings, str]) -> None:
    settings, key = planner
    missing = settings.model_copy(update={"table_planning": f"planning_missing_{uuid.uuid4().hex[:8]}"})
    row = {"store": 1, "date": "2015-08-03", "open": 1, "promo": 0, "state_holiday": "0", "school_holiday": 0}
    with TestClient(create_app(missing)) as api:
        for resp in (api.get("/v1/planning", headers={"X-API-Key": key}),
                     api.post("/v1/planning", json={"rows": [row]}, headers={"X-API-Key": key}),
                     api.get("/v1/stores/1/plan", params={"start": "2015-08-03"}, headers={"X-API-Key": key}),
                     api.get("/v1/stores/1/plan", headers={"X-API-Key": key})):
            assert resp.status_code == 503, resp.text
            assert_error_shape(resp.json(), 503)
            assert missing.table_planning in resp.text and "SFMLOPS_TABLE_PLANNING" in resp.text, resp.text
    assert _count(settings) == 0  # the configured table got nothing either


def _plan_rows(store: int, first: date, days: int, **values: object) -> list[dict[str, object]]:
    base = {"open": 1, "promo": 0, "state_holiday": "0", "school_holiday": 0}
    return [{"store": store, "date": str(first + timedelta(days=k)), **base, **values} for k in range(days)]


def test_store_plan_route_serves_each_days_newest_version(planner: tuple[Settings, str]) -> None:
    """GET /v1/stores/{id}/plan: per day the newest version's row (with that version) over start..start+days-1; a
    store without planning data is 200 with no days; an unknown store 404; a bad range 422; no key 401."""
    settings, key = planner
    headers = {"X-API-Key": key}
    first = date(2015, 8, 3)
    with TestClient(create_app(settings)) as api:
        one = api.post("/v1/planning", json={"rows": _plan_rows(1, first, 2, promo=1)}, headers=headers).json()["version"]
        # The second version changes 08-04 (closed, a holiday) and adds 08-05; 08-03 keeps the first version's row.
        two = api.post("/v1/planning", json={"rows": [
            *_plan_rows(1, first + timedelta(days=1), 1, open=0, state_holiday="a", school_holiday=1),
            *_plan_rows(1, first + timedelta(days=2), 1, promo=1)]}, headers=headers).json()["version"]
        store_1 = api.get("/v1/stores/1/plan", params={"start": "2015-08-02", "days": 5}, headers=headers)
        only_first = api.get("/v1/stores/1/plan", params={"start": "2015-08-03", "days": 1}, headers=headers)
        store_2 = api.get("/v1/stores/2/plan", params={"start": "2015-08-03", "days": 3}, headers=headers)
        unknown = api.get("/v1/stores/9/plan", params={"start": "2015-08-03", "days": 3}, headers=headers)
        bad = {q: api.get(f"/v1/stores/{q}", headers=headers) for q in (
            "1/plan?days=0", "1/plan?days=367", "1/plan?start=2015-13-01", "1/plan?start=9999-12-30&days=3", "0/plan")}
        anonymous = api.get("/v1/stores/1/plan")
    assert store_1.status_code == 200, store_1.text
    assert store_1.json() == {"store": 1, "start": "2015-08-02", "end": "2015-08-06", "days": [
        {"date": "2015-08-03", "open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 0, "version": one},
        {"date": "2015-08-04", "open": 0, "promo": 0, "state_holiday": "a", "school_holiday": 1, "version": two},
        {"date": "2015-08-05", "open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 0, "version": two},
    ]}
    assert [d["date"] for d in only_first.json()["days"]] == ["2015-08-03"]
    assert store_2.status_code == 200 and store_2.json()["days"] == [], store_2.text
    assert unknown.status_code == 404 and "Store 9" in assert_error_shape(unknown.json(), 404)["message"]
    for query, resp in bad.items():
        assert resp.status_code == 422, (query, resp.text)
        assert_error_shape(resp.json(), 422)
    overflow = bad["1/plan?start=9999-12-30&days=3"].json()["error"]
    assert [d["field"] for d in overflow["details"]] == ["query.start"] and "9999-12-31" in overflow["message"]
    assert anonymous.status_code == 401


def test_store_plan_route_defaults_to_the_days_of_the_latest_forecast(planner: tuple[Settings, str]) -> None:
    """Without start/days: the first day of the store's newest batch forecast run and the horizon; a store without a
    forecast starts the day after its latest sales day."""
    from app.db import transaction
    from app.forecasting.batch import write_forecasts

    settings, key = planner
    settings = settings.model_copy(update={"horizon_days": 3, "model_name": f"test-plan-{uuid.uuid4().hex[:8]}"})
    ident = {"model_name": settings.model_name, "model_version": "1", "run_id": "r"}
    for start in (date(2015, 8, 1), date(2015, 8, 10)):  # two runs: the newest one counts
        write_forecasts(settings, pd.DataFrame([
            {"store": 1, "date": pd.Timestamp(start + timedelta(days=k)), "value": 1.0, "lower": 1.0, "upper": 1.0}
            for k in range(5)]), ident)
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {settings.table_sales} (store, date, day_of_week, sales, customers, open, promo, state_holiday,"
                    " school_holiday) VALUES (2, '2015-07-31', 5, 100, 10, 1, 0, '0', 0)")
    rows = [*_plan_rows(1, date(2015, 8, 9), 5), *_plan_rows(2, date(2015, 8, 1), 1)]
    with TestClient(create_app(settings)) as api:
        assert api.post("/v1/planning", json={"rows": rows}, headers={"X-API-Key": key}).status_code == 201
        store_1 = api.get("/v1/stores/1/plan", headers={"X-API-Key": key}).json()
        store_2 = api.get("/v1/stores/2/plan", params={"days": 2}, headers={"X-API-Key": key}).json()
    assert (store_1["start"], store_1["end"]) == ("2015-08-10", "2015-08-12")
    assert [d["date"] for d in store_1["days"]] == ["2015-08-10", "2015-08-11", "2015-08-12"]
    assert (store_2["start"], store_2["end"], [d["date"] for d in store_2["days"]]) == ("2015-08-01", "2015-08-02", ["2015-08-01"])
