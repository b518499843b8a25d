"""Batch forecasts from Postgres, on-demand forecasts from a champion in the real MLflow registry, /v1/models."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from apitest_support import assert_error_shape
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.config import Settings

pytestmark = pytest.mark.integration
START = date(2015, 6, 14)


def _write_run(settings: Settings, version: str, first: date, days: int, base: float, stores: tuple[int, ...] = (1, 2), model_name: str | None = None) -> None:
    """One batch forecast run through the real writer (``app.forecasting.batch.write_forecasts``)."""
    import pandas as pd

    from app.forecasting.batch import write_forecasts

    frame = pd.DataFrame(
        [
            {
                "store": s, "date": pd.Timestamp(first + timedelta(days=k)), "value": base + 1000 * s + k,
                "lower": base + 1000 * s + k - 10, "upper": base + 1000 * s + k + 10,
            }
            for s in stores
            for k in range(days)
        ]
    )
    ident = {"model_name": model_name or settings.model_name, "model_version": version, "run_id": f"mlflow-run-{version}"}
    write_forecasts(settings, frame, ident)


@pytest.fixture
def serving(registry: Settings) -> Settings:
    """The registry's model (v1 challenger, v2 champion) with a forecasts table of its own, migrated and empty."""
    from app.api.routes import forecasts
    from app.db import SQL_DIR, render, transaction

    settings = registry.model_copy(update={"table_forecasts": f"tfc{uuid.uuid4().hex[:8]}_forecasts", "horizon_days": 7})
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(render((SQL_DIR / "020_forecasts.sql").read_text(), settings))
    forecasts.clear_champion_cache()
    yield settings
    forecasts.clear_champion_cache()
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {settings.table_forecasts}")


def _get(settings: Settings, key: str, store: int, **params: int) -> tuple[int, dict]:
    with TestClient(create_app(settings)) as api:
        resp = api.get(f"/v1/stores/{store}/forecast", params=params, headers={"X-API-Key": key})
    return resp.status_code, resp.json()


def _dates(body: dict) -> list[str]:
    return [p["date"] for p in body["points"]]


def test_latest_batch_forecast_of_a_store(serving: Settings, keys: dict[str, str]) -> None:
    _write_run(serving, "2", START, 60, 200.0)
    with TestClient(create_app(serving)) as api:
        resp = api.get("/v1/stores/1/forecast", params={"days": 7}, headers={"X-API-Key": keys["alice"]})
        default = api.get("/v1/stores/1/forecast", headers={"X-API-Key": keys["alice"]}).json()
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["model_name"], body["model_version"], body["run_id"], body["store"]) == (serving.model_name, "2", "mlflow-run-2", 1)
    assert _dates(body) == [str(START + timedelta(days=k)) for k in range(7)]
    assert body["points"][0] == {"date": "2015-06-14", "value": 1200.0, "lower": 1190.0, "upper": 1210.0, "inputs": "projected"}
    # the JSON Postgres renders is exactly the documented schema
    from app.api.routes.forecasts import StoreForecast

    parsed = StoreForecast.model_validate(body)
    assert parsed.created_at is not None and parsed.created_at.tzinfo is not None and parsed.forecast_run > 0
    assert set(body) == set(StoreForecast.model_fields) and resp.headers["content-type"] == "application/json"
    assert len(default["points"]) == serving.horizon_days


def test_serves_the_champion_not_the_newest_rows_of_other_versions_or_models(serving: Settings, keys: dict[str, str]) -> None:
    """Issue 15.3: the champion's rows, even when a challenger and another model name wrote later."""
    _write_run(serving, "2", START, 10, 200.0)  # the champion, written first
    _write_run(serving, "1", START + timedelta(days=30), 10, 100.0)  # the challenger, newer rows and dates
    _write_run(serving, "2", START + timedelta(days=60), 10, 900.0, model_name=f"{serving.model_name}-test-batch")  # another model
    status, body = _get(serving, keys["alice"], 1)
    assert status == 200, body
    assert (body["model_name"], body["model_version"]) == (serving.model_name, "2")
    assert _dates(body) == [str(START + timedelta(days=k)) for k in range(7)] and body["points"][0]["value"] == 1200.0


def test_rerun_of_the_same_version_serves_the_new_horizon_only(serving: Settings, keys: dict[str, str]) -> None:
    """Issue 13.9: the same version re-run a week later: the new run's days, none of last week's."""
    _write_run(serving, "2", START, 10, 200.0)
    status, first = _get(serving, keys["alice"], 2)
    assert status == 200 and _dates(first)[0] == str(START)
    _write_run(serving, "2", START + timedelta(days=7), 10, 500.0)
    status, body = _get(serving, keys["alice"], 2, days=10)
    assert status == 200, body
    assert _dates(body) == [str(START + timedelta(days=7 + k)) for k in range(10)]
    assert [p["value"] for p in body["points"]] == [2500.0 + k for k in range(10)]
    assert body["forecast_run"] > first["forecast_run"]
    # a run for store 1 only: store 2 keeps its newest run (a run is complete per store it wrote)
    _write_run(serving, "2", START + timedelta(days=14), 3, 700.0, stores=(1,))
    assert _dates(_get(serving, keys["alice"], 1)[1]) == [str(START + timedelta(days=14 + k)) for k in range(3)]
    assert _get(serving, keys["alice"], 2, days=10)[1] == body


def test_moved_alias_is_served_after_the_cache_time(serving: Settings, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from app.api.routes import forecasts

    _write_run(serving, "1", START + timedelta(days=30), 5, 100.0)
    _write_run(serving, "2", START, 5, 200.0)
    monkeypatch.setattr(forecasts, "CHAMPION_TTL_S", 0.0)
    monkeypatch.setattr(forecasts, "CHAMPION_MAX_STALE_S", 0.0)  # ask the registry on every request
    client = MlflowClient(serving.mlflow_uri)
    client.set_registered_model_alias(serving.model_name, "champion", "1")
    try:
        status, body = _get(serving, keys["alice"], 1)
    finally:
        client.set_registered_model_alias(serving.model_name, "champion", "2")
    assert status == 200 and body["model_version"] == "1" and _dates(body)[0] == str(START + timedelta(days=30))
    assert _get(serving, keys["alice"], 1)[1]["model_version"] == "2"


def test_forecast_errors(serving: Settings, keys: dict[str, str]) -> None:
    _write_run(serving, "1", START, 5, 100.0, stores=(3,))  # only the challenger forecast store 3
    with TestClient(create_app(serving)) as api:
        for store in (3, 99_002):
            missing = api.get(f"/v1/stores/{store}/forecast", headers={"X-API-Key": keys["alice"]})
            assert missing.status_code == 404 and f"store {store}" in assert_error_shape(missing.json(), 404)["message"]
        bad = api.get("/v1/stores/3/forecast", params={"days": 0}, headers={"X-API-Key": keys["alice"]})
        assert bad.status_code == 422 and assert_error_shape(bad.json(), 422)["details"][0]["field"] == "query.days"
        assert api.get("/v1/stores/3/forecast").status_code == 401
    no_champion = serving.model_copy(update={"model_name": f"absent-{uuid.uuid4().hex[:8]}"})
    status, body = _get(no_champion, keys["alice"], 3)
    assert status == 503 and "@champion" in assert_error_shape(body, 503)["message"]
    unmigrated = serving.model_copy(update={"table_forecasts": f"tfc{uuid.uuid4().hex[:8]}_absent"})
    status, body = _get(unmigrated, keys["alice"], 3)
    assert status == 503 and "SFMLOPS_TABLE_FORECASTS" in assert_error_shape(body, 503)["message"]


def test_models_lists_versions_aliases_and_metrics(registry: Settings, keys: dict[str, str]) -> None:
    with TestClient(create_app(registry)) as api:
        body = api.get("/v1/models", headers={"X-API-Key": keys["alice"]}).json()
    assert body["name"] == registry.model_name and body["exists"] is True
    assert body["aliases"] == {"challenger": "1", "champion": "2"}
    v2, v1 = body["versions"]
    assert (v2["version"], v2["aliases"], v2["metrics"]) == ("2", ["champion"], {"backtest_rmspe": 0.1, "baseline_median_rmspe": 0.128})
    assert (v1["version"], v1["aliases"], v1["metrics"]["backtest_rmspe"]) == ("1", ["challenger"], 0.2)


def test_models_when_nothing_is_registered(api_settings: Settings, keys: dict[str, str]) -> None:
    settings = api_settings.model_copy(update={"model_name": f"absent-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(settings)) as api:
        body = api.get("/v1/models", headers={"X-API-Key": keys["alice"]}).json()
    assert body == {"name": settings.model_name, "exists": False, "aliases": {}, "versions": []}


def test_on_demand_forecast_uses_the_champion(registry: Settings, keys: dict[str, str]) -> None:
    request = {
        "stores": [3, 7],
        "start": "2015-06-14",  # a Sunday: closed by default
        "days": 3,
        "inputs": [{"store": 7, "date": "2015-06-14", "open": 1, "promo": 1}],
    }
    with TestClient(create_app(registry)) as api:
        resp = api.post("/v1/forecasts", json=request, headers={"X-API-Key": keys["alice"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "2"
    by_store = {f["store"]: f for f in body["forecasts"]}
    assert [p["value"] for p in by_store[3]["points"]] == [300.0, 301.0, 301.0]
    assert [p["value"] for p in by_store[7]["points"]] == [701.0, 701.0, 701.0]
    assert by_store[7]["points"][0] == {"date": "2015-06-14", "value": 701.0, "lower": 696.0, "upper": 706.0}


def test_on_demand_without_champion_is_503(api_settings: Settings, keys: dict[str, str]) -> None:
    settings = api_settings.model_copy(update={"model_name": f"absent-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(settings)) as api:
        resp = api.post("/v1/forecasts", json={"stores": [1], "start": "2015-06-14", "days": 2}, headers={"X-API-Key": keys["alice"]})
        assert resp.status_code == 503
        assert "@champion" in assert_error_shape(resp.json(), 503)["message"]
        bad = api.post("/v1/forecasts", json={"stores": [1, 1], "start": "2015-06-14", "days": 2}, headers={"X-API-Key": keys["alice"]})
        assert bad.status_code == 422


def test_one_champion_lookup_reads_the_registry(registry: Settings) -> None:
    """Issue 19: ``MlflowRest.alias_version`` is the one champion lookup (forecast routes, backtest errors)."""
    from app.api.mlflow_rest import MlflowRest

    rest = MlflowRest(registry)
    try:
        assert rest.alias_version(registry.model_name) == "2"
        assert rest.alias_version(registry.model_name, "challenger") == "1"
        assert rest.alias_version(registry.model_name, "no-such-alias") is None
        assert rest.alias_version(f"absent-{uuid.uuid4().hex[:8]}") is None
        assert rest.model_version(registry.model_name, "2")["run_id"]
        assert rest.model_version(registry.model_name, "99") is None
    finally:
        rest.close()


def test_routes_without_a_champion_answer_alike(api_settings: Settings, keys: dict[str, str]) -> None:
    """The champion's absence is one answer on every route that needs it: 503, naming the alias and what to do
    (``GET /v1/chain/backtest-errors`` answered 404 with other words before)."""
    settings = api_settings.model_copy(update={"model_name": f"absent-{uuid.uuid4().hex[:8]}"})
    with TestClient(create_app(settings)) as api:
        errors = api.get("/v1/chain/backtest-errors", headers={"X-API-Key": keys["alice"]})
        on_demand = api.post("/v1/forecasts", json={"stores": [1], "start": "2015-06-14", "days": 2}, headers={"X-API-Key": keys["alice"]})
    expected = f"No champion model: models:/{settings.model_name}@champion does not exist yet; train first (POST /v1/training-jobs)"
    assert errors.status_code == on_demand.status_code == 503
    assert assert_error_shape(errors.json(), 503)["message"] == assert_error_shape(on_demand.json(), 503)["message"] == expected
