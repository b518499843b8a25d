"""Batch forecasts from Postgres, on-demand forecasts from a champion in the real MLflow registry, /v1/models."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg2
import pytest
from fastapi.testclient import TestClient

from apitest_support import assert_error_shape
from app.api.main import create_app
from app.config import Settings

pytestmark = pytest.mark.integration
STORE = 99_001  # beyond the 1,115 Rossmann stores, so seeded rows never mix with real forecasts


@pytest.fixture(scope="module")
def seeded(api_settings: Settings) -> Settings:
    """Two batch forecasts for STORE: an older one (v1) and the latest (v2, 60 days)."""
    t = api_settings.table_forecasts
    start = date(2015, 6, 14)
    with psycopg2.connect(api_settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {t} WHERE store = %s", (STORE,))
        for version, created, n, base in (("1", datetime(2026, 1, 1, tzinfo=UTC), 48, 100.0), ("2", datetime(2026, 2, 1, tzinfo=UTC), 60, 200.0)):
            for k in range(n):
                cur.execute(
                    f"INSERT INTO {t} (store, date, value, lower, upper, model_name, model_version, run_id, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (STORE, start + timedelta(days=k), base + k, base + k - 10, base + k + 10, "sales-forecaster", version, f"run{version}", created),
                )
    yield api_settings
    with psycopg2.connect(api_settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {t} WHERE store = %s", (STORE,))


@pytest.fixture(scope="module")
def api(seeded: Settings) -> TestClient:
    with TestClient(create_app(seeded)) as client:
        yield client


def test_latest_batch_forecast_of_a_store(api: TestClient, keys: dict[str, str]) -> None:
    resp = api.get(f"/v1/stores/{STORE}/forecast", params={"days": 7}, headers={"X-API-Key": keys["alice"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "2" and body["run_id"] == "run2" and body["store"] == STORE
    assert [p["date"] for p in body["points"]] == [str(date(2015, 6, 14) + timedelta(days=k)) for k in range(7)]
    assert body["points"][0] == {"date": "2015-06-14", "value": 200.0, "lower": 190.0, "upper": 210.0}
    # the JSON Postgres renders is exactly the documented schema
    from app.api.routes.forecasts import StoreForecast

    parsed = StoreForecast.model_validate(body)
    assert parsed.created_at is not None and parsed.created_at.tzinfo is not None
    assert set(body) == set(StoreForecast.model_fields) and resp.headers["content-type"] == "application/json"
    default = api.get(f"/v1/stores/{STORE}/forecast", headers={"X-API-Key": keys["alice"]}).json()
    assert len(default["points"]) == min(60, api.app.state.settings.horizon_days)


def test_forecast_errors(api: TestClient, keys: dict[str, str]) -> None:
    missing = api.get("/v1/stores/99002/forecast", headers={"X-API-Key": keys["alice"]})
    assert missing.status_code == 404 and "99002" in assert_error_shape(missing.json(), 404)["message"]
    bad = api.get(f"/v1/stores/{STORE}/forecast", params={"days": 0}, headers={"X-API-Key": keys["alice"]})
    assert bad.status_code == 422 and assert_error_shape(bad.json(), 422)["details"][0]["field"] == "query.days"
    assert api.get(f"/v1/stores/{STORE}/forecast").status_code == 401




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
