"""Read-only routes the operator UI needs: store list, recent actual sales, chain totals, backtest errors.

* ``GET /v1/stores`` — every store with its type and assortment (for a searchable store picker).
* ``GET /v1/stores/{store_id}/sales?days=N`` — the store's last N days of actual sales.
* ``GET /v1/chain/forecast?days=N`` — the latest batch forecast of every store summed per day.
* ``GET /v1/chain/backtest-errors?limit=N&version=V`` — stores with the largest RMSPE in the last backtest of
  a model version (default: the champion), read from the run's ``backtest/store_rmspe.csv`` artifact.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated

import httpx
import psycopg
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api import db
from app.api.deps import ClientDep, SettingsDep, StoreId
from app.api.errors import ApiError, error_responses
from app.api.mlflow_rest import MlflowRest, no_champion
from app.config import Settings

router = APIRouter(prefix="/v1", tags=["stores"])

STORE_RMSPE_ARTIFACT = "backtest/store_rmspe.csv"


class StoreInfo(BaseModel):
    """Store metadata."""

    store: int
    store_type: str = Field(..., description="Rossmann store type, a..d")
    assortment: str = Field(..., description="Assortment level, a (basic) .. c (extended)")
    competition_distance: float | None = Field(None, description="Metres to the nearest competitor")
    promo2: int = Field(..., description="1 when the store takes part in the continuing promotion")


class StoreList(BaseModel):
    """Every store, ordered by id."""

    items: list[StoreInfo]
    count: int


class SalesPoint(BaseModel):
    """Actual sales of one day."""

    date: date
    sales: int
    customers: int
    open: int
    promo: int
    state_holiday: str
    school_holiday: int


class StoreSales(BaseModel):
    """The last ``days`` days of a store's actual sales (up to its latest ingested day), oldest first."""

    store: int
    points: list[SalesPoint]


class ChainDay(BaseModel):
    """The chain's forecast for one day: sums over stores."""

    date: date
    value: float = Field(..., description="Sum of the store forecasts")
    lower: float | None = Field(None, description="Sum of the store lower bounds (a conservative band)")
    upper: float | None = Field(None, description="Sum of the store upper bounds (a conservative band)")
    stores: int = Field(..., description="Stores with a forecast for this day")


class ChainForecast(BaseModel):
    """Totals of the latest batch forecast of every store."""

    stores: int = Field(..., description="Stores with a batch forecast")
    model_versions: list[str] = Field(..., description="Model versions the latest forecasts come from")
    days: list[ChainDay]


class StoreError(BaseModel):
    """Backtest error of one store."""

    store: int
    rmspe: float
    store_type: str | None = None
    assortment: str | None = None


class BacktestErrors(BaseModel):
    """Stores with the largest backtest RMSPE, worst first."""

    model_name: str
    model_version: str
    run_id: str
    stores_scored: int
    items: list[StoreError]


def _query(settings: Settings, sql: str, args: dict) -> list[tuple]:
    try:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    except psycopg.errors.UndefinedTable as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ApiError(
            503, "A table this route reads does not exist yet; run `sfmlops up`", internal=first
        ) from exc


@router.get("/stores", response_model=StoreList, summary="List stores", responses=error_responses(401, 503))
def list_stores(settings: SettingsDep, client: ClientDep) -> StoreList:
    """Every store with type, assortment, competition distance and promo2 flag."""
    rows = _query(
        settings,
        f"SELECT store, store_type, assortment, competition_distance, promo2 FROM {settings.table_stores} ORDER BY store",
        {},
    )
    items = [
        StoreInfo(store=r[0], store_type=r[1].strip(), assortment=r[2].strip(), competition_distance=r[3], promo2=r[4])
        for r in rows
    ]
    return StoreList(items=items, count=len(items))


@router.get(
    "/stores/{store_id}/sales",
    response_model=StoreSales,
    summary="Recent actual sales of a store",
    responses=error_responses(401, 404, 422, 503),
)
def get_store_sales(
    settings: SettingsDep,
    client: ClientDep,
    store_id: StoreId,
    days: Annotated[int, Query(ge=1, le=366, description="Days to return, counted back from the store's latest day")] = 56,
) -> StoreSales:
    """The last ``days`` calendar days of actual sales up to the store's latest ingested day."""
    t = settings.table_sales
    rows = _query(
        settings,
        f"SELECT date, sales, customers, open, promo, state_holiday, school_holiday FROM {t}"
        f" WHERE store = %(s)s AND date > (SELECT max(date) FROM {t} WHERE store = %(s)s) - %(n)s ORDER BY date",
        {"s": store_id, "n": days},
    )
    if not rows:
        raise ApiError(404, f"No sales for store {store_id}")
    points = [
        SalesPoint(date=r[0], sales=r[1], customers=r[2], open=r[3], promo=r[4], state_holiday=r[5], school_holiday=r[6])
        for r in rows
    ]
    return StoreSales(store=store_id, points=points)


@router.get(
    "/chain/forecast",
    response_model=ChainForecast,
    summary="Total forecast across stores",
    responses=error_responses(401, 404, 422, 503),
)
def get_chain_forecast(
    settings: SettingsDep,
    client: ClientDep,
    days: Annotated[int | None, Query(ge=1, le=366, description="Days to return (default: the horizon)")] = None,
) -> ChainForecast:
    """Sum per day of every store's most recent batch forecast (the same forecast `/stores/{id}/forecast` returns)."""
    t = settings.table_forecasts
    sql = (
        f"WITH latest AS (SELECT DISTINCT ON (store) store, model_name, model_version FROM {t}"
        " ORDER BY store, created_at DESC),"
        f" rows AS (SELECT f.store, f.date, f.value, f.lower, f.upper, f.model_version FROM {t} f JOIN latest l"
        " ON f.store = l.store AND f.model_name = l.model_name AND f.model_version::text = l.model_version::text),"
        " first_days AS (SELECT DISTINCT date FROM rows ORDER BY date LIMIT %(n)s)"
        " SELECT r.date, sum(r.value), sum(r.lower), sum(r.upper), count(*),"
        " (SELECT count(DISTINCT store) FROM rows), (SELECT array_agg(DISTINCT model_version::text) FROM rows)"
        " FROM rows r JOIN first_days d ON d.date = r.date GROUP BY r.date ORDER BY r.date"
    )
    rows = _query(settings, sql, {"n": days or settings.horizon_days})
    if not rows:
        raise ApiError(404, "No batch forecasts yet; run `sfmlops forecast` (or train through POST /v1/training-jobs)")
    return ChainForecast(
        stores=rows[0][5],
        model_versions=sorted(rows[0][6] or []),
        days=[ChainDay(date=r[0], value=r[1], lower=r[2], upper=r[3], stores=r[4]) for r in rows],
    )


def _store_rmspe(settings: Settings, run_id: str) -> dict[int, float]:
    """Parse the run's per-store RMSPE artifact (columns: store id, rmspe), served by the tracking server."""
    base = settings.mlflow_uri.rstrip("/")
    folder = STORE_RMSPE_ARTIFACT.rpartition("/")[0]
    try:
        # MLflow answers a missing artifact with a 500, so list the folder first: absent means 404 here.
        listing = httpx.get(
            f"{base}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": folder},
            timeout=settings.api_upstream_timeout_s, auth=settings.mlflow_auth(),
        )
        files = {f.get("path") for f in (listing.json().get("files") or [])} if listing.status_code == 200 else set()
        if STORE_RMSPE_ARTIFACT not in files:
            raise ApiError(404, f"Run {run_id} has no {STORE_RMSPE_ARTIFACT} artifact")
        resp = httpx.get(f"{base}/get-artifact", params={"path": STORE_RMSPE_ARTIFACT, "run_uuid": run_id},
                         timeout=settings.api_upstream_timeout_s, auth=settings.mlflow_auth())
    except httpx.HTTPError as exc:
        raise ApiError(
            503, "MLflow is unavailable; try again later",
            internal=f"MLflow at {settings.mlflow_uri} (SFMLOPS_MLFLOW_TRACKING_URI): {type(exc).__name__}: {exc}",
        ) from exc
    if resp.status_code in (400, 404):
        raise ApiError(404, f"Run {run_id} has no {STORE_RMSPE_ARTIFACT} artifact (MLflow answered {resp.status_code})")
    if resp.status_code >= 400:
        raise ApiError(
            502, "MLflow answered with an error",
            internal=f"MLflow /get-artifact answered {resp.status_code}: {resp.text.strip()[-300:]}",
        )
    out: dict[int, float] = {}
    reader = csv.reader(io.StringIO(resp.text))
    next(reader, None)  # header
    for row in reader:
        if len(row) < 2:
            continue
        try:
            store, value = int(float(row[0])), float(row[1])
        except ValueError:
            continue
        if value == value:  # not NaN
            out[store] = value
    return out


@router.get(
    "/chain/backtest-errors",
    response_model=BacktestErrors,
    summary="Stores with the largest backtest error",
    responses=error_responses(401, 404, 422, 502, 503),
)
def get_backtest_errors(
    settings: SettingsDep,
    client: ClientDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Stores to return")] = 20,
    version: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,9}$", description="Model version (default: the champion)")
    ] = None,
) -> BacktestErrors:
    """Per-store RMSPE of the model version's last backtest, worst first."""
    rest = MlflowRest(settings)
    try:
        if version is None:
            version = rest.alias_version(settings.model_name)
            if version is None:
                raise no_champion(settings.model_name)
        mv = rest.model_version(settings.model_name, version)
    finally:
        rest.close()
    if not mv or not mv.get("run_id"):
        raise ApiError(404, f"Model {settings.model_name} has no version {version}")
    errors = _store_rmspe(settings, mv["run_id"])
    worst = sorted(errors.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    meta: dict[int, tuple[str, str]] = {}
    if worst:
        rows = _query(
            settings,
            f"SELECT store, store_type, assortment FROM {settings.table_stores} WHERE store = ANY(%(ids)s)",
            {"ids": [s for s, _ in worst]},
        )
        meta = {r[0]: (r[1].strip(), r[2].strip()) for r in rows}
    items = [
        StoreError(store=s, rmspe=v, store_type=meta.get(s, (None, None))[0], assortment=meta.get(s, (None, None))[1])
        for s, v in worst
    ]
    return BacktestErrors(
        model_name=settings.model_name, model_version=str(version), run_id=mv["run_id"], stores_scored=len(errors), items=items
    )
