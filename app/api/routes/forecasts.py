"""Forecasts: the latest batch forecast of a store, and on-demand forecasts from the champion model."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api import db
from app.api.deps import ClientDep, SettingsDep, StoreId
from app.api.errors import ApiError, ErrorDetail, error_responses
from app.api.mlflow_rest import MlflowRest, no_champion
from app.config import Settings

router = APIRouter(prefix="/v1", tags=["forecasts"])
log = logging.getLogger(__name__)


class ForecastPoint(BaseModel):
    """Forecast for one day."""

    date: date
    value: float = Field(..., description="Forecast sales")
    lower: float | None = Field(None, description="Lower bound of the prediction interval")
    upper: float | None = Field(None, description="Upper bound of the prediction interval")


class BatchForecastPoint(ForecastPoint):
    """Batch forecast for one day, with the known-future inputs it used."""

    inputs: Literal["plan", "projected"] = Field(
        ..., description="plan: the store's planning data for the day (POST /v1/planning); projected: projected from the recent past"
    )


class StoreForecast(BaseModel):
    """A store's forecast and the model that made it."""

    store: int
    model_name: str | None
    model_version: str | None
    forecast_run: int | None = Field(None, description="Number of the batch forecast run the points come from (0: before runs were numbered)")
    run_id: str | None = Field(None, description="MLflow run of the model version")
    created_at: datetime | None = Field(None, description="When the batch forecast was written")
    inputs: Literal["plan", "projected", "mixed"] | None = Field(
        None, description="Batch forecasts: the inputs of every point (plan or projected), or mixed (see each point's inputs)"
    )
    points: list[ForecastPoint]


class BatchStoreForecast(StoreForecast):
    """A store's batch forecast: each point says whether it used planning data or projected inputs."""

    inputs: Literal["plan", "projected", "mixed"] = Field(
        ..., description="plan or projected when every point used those inputs, else mixed (see each point's inputs)"
    )
    # Narrowed for the schema: a batch forecast's points carry their inputs (pydantic validates this type).
    points: list[BatchForecastPoint]  # type: ignore[assignment]


class KnownInputs(BaseModel):
    """Known-future inputs of one store-day (defaults: open except Sundays, no promo, no holidays)."""

    model_config = ConfigDict(extra="forbid")

    store: int = Field(..., ge=1, le=100_000)
    date: date
    open: Literal[0, 1] | None = None
    promo: Literal[0, 1] | None = None
    state_holiday: Literal["0", "a", "b", "c"] | None = None
    school_holiday: Literal[0, 1] | None = None


class OnDemandRequest(BaseModel):
    """Stores and dates to forecast with the champion model."""

    model_config = ConfigDict(extra="forbid")

    stores: list[Annotated[int, Field(ge=1, le=100_000)]] = Field(..., min_length=1, max_length=50)
    start: date = Field(..., description="First day to forecast")
    days: int = Field(..., ge=1, le=366, description="Number of days from start")
    inputs: list[KnownInputs] = Field(default_factory=list, max_length=5000, description="Overrides per store-day")

    @model_validator(mode="after")
    def _unique(self) -> OnDemandRequest:
        if len(set(self.stores)) != len(self.stores):
            raise ValueError("stores must not repeat")
        return self


class OnDemandResponse(BaseModel):
    """On-demand forecasts per store."""

    model_name: str
    model_version: str
    forecasts: list[StoreForecast]


def add_store_forecast_route(app: FastAPI, responses: dict[int | str, dict[str, Any]]) -> None:
    """Register ``GET /v1/stores/{store_id}/forecast`` on ``app`` itself (call it before including routers).

    The hottest route is matched first and without an included router's layers: FastAPI matches a request
    through every included router in turn (this route's path overlaps no other route), which for this
    route cost more Python calls per request than its own handler. Its schema is what ``router`` would give.
    """
    app.add_api_route(
        "/v1/stores/{store_id}/forecast",
        get_store_forecast,
        methods=["GET"],
        tags=list(router.tags),
        response_model=BatchStoreForecast,
        summary="Latest batch forecast of a store",
        responses={**responses, **error_responses(401, 404, 422, 503)},
    )


async def get_store_forecast(
    request: Request,
    client: ClientDep,
    store_id: StoreId,
    days: Annotated[int | None, Query(ge=1, le=366, description="Days to return (default: the horizon)")] = None,
) -> Response:
    """The first ``days`` days of the newest batch forecast run of the champion for the store.

    Only rows of ``models:/<SFMLOPS_MODEL_NAME>@champion`` are served, and of those only the store's newest
    run (``forecast_run``): a re-run of the same version a week later replaces last week's days, never mixes
    with them. The hottest route: the champion's version is cached (``CHAMPION_TTL_S``), the rows come from
    one index (``{table}_serve_idx``) through a psycopg 3 async pool, and Postgres renders the JSON document,
    returned as it is (its shape is the ``BatchStoreForecast`` schema, checked by the schemathesis test). Each point
    says whether its known-future inputs came from the planning data or were projected (``inputs``), and so does the
    answer as a whole (``mixed`` when they differ).
    """
    settings: Settings = request.app.state.settings  # not SettingsDep: FastAPI solves every dependency per request
    version = await champion_version(settings)
    if version is None:
        raise no_champion(settings.model_name, ", so no batch forecast is served")
    import psycopg

    try:
        row = await db.read_one(
            settings, _serve_sql(settings.table_forecasts), {"m": settings.model_name, "v": version, "s": store_id, "n": days or settings.horizon_days}
        )
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise ApiError(
            503,
            f"Table {settings.table_forecasts} is missing or not migrated (SFMLOPS_TABLE_FORECASTS); run `sfmlops up`"
            " and `sfmlops forecast`",
            expose=True,
        ) from exc
    if row is None:
        raise ApiError(404, f"No batch forecast for store {store_id} from the champion {settings.model_name} v{version}")
    return Response(content=row[0], media_type="application/json")


@functools.lru_cache(maxsize=64)
def _serve_sql(table: str) -> str:
    """The route's one statement: the store's newest run of (model, version), its first ``n`` days as JSON (with
    each day's ``inputs``: plan or projected).

    Both steps are ranges of ``{table}_serve_idx`` (model_name, model_version, store, forecast_run, date):
    no casts on columns, no sort. Also the lean baseline's statement in ``sfmlops bench api``.
    """
    return (
        f"WITH r AS (SELECT forecast_run FROM {table} WHERE model_name = %(m)s AND model_version = %(v)s AND store = %(s)s"
        " ORDER BY forecast_run DESC LIMIT 1),"
        f" p AS (SELECT f.date, f.value, f.lower, f.upper, f.run_id, f.created_at, f.forecast_run, f.inputs FROM {table} f, r"
        " WHERE f.model_name = %(m)s AND f.model_version = %(v)s AND f.store = %(s)s AND f.forecast_run = r.forecast_run"
        " ORDER BY f.date LIMIT %(n)s)"
        " SELECT json_build_object('store', %(s)s::integer, 'model_name', %(m)s::text, 'model_version', %(v)s::text,"
        " 'forecast_run', max(p.forecast_run), 'run_id', max(p.run_id), 'created_at', max(p.created_at),"
        " 'inputs', CASE WHEN min(p.inputs) = max(p.inputs) THEN min(p.inputs) ELSE 'mixed' END,"
        " 'points', json_agg(json_build_object('date', p.date, 'value', p.value, 'lower', p.lower, 'upper', p.upper, 'inputs', p.inputs)"
        " ORDER BY p.date))::text FROM p HAVING count(*) > 0"
    )


# --- the champion's version, cached ---------------------------------------------------------------------
#: Seconds the champion's version is reused by this process before the registry is asked again (in the
#: background: requests keep the known version meanwhile), so a moved alias is served within about this time.
CHAMPION_TTL_S = 2.0
#: A known version older than this is not served while the registry is asked: requests wait for the answer.
CHAMPION_MAX_STALE_S = 60.0
_champions: dict[tuple[str, str], tuple[float, str | None]] = {}
_refreshing: dict[tuple[str, str], asyncio.Task] = {}


async def champion_version(settings: Settings) -> str | None:
    """The version ``models:/<model_name>@champion`` points to (None: no champion), cached per process.

    One registry call per ``CHAMPION_TTL_S`` at most, shared by concurrent requests and made in the
    background while the known version is younger than ``CHAMPION_MAX_STALE_S`` (no request waits on the
    registry then); when the registry is unreachable a known version keeps being served, otherwise 503.
    """
    key = (settings.mlflow_uri, settings.model_name)
    hit = _champions.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    loop = asyncio.get_running_loop()
    task = _refreshing.get(key)
    if task is None or task.done() or task.get_loop() is not loop:
        task = loop.create_task(_refresh_champion(settings, key, hit))
        _refreshing[key] = task
    if hit is not None and now - (hit[0] - CHAMPION_TTL_S) < CHAMPION_MAX_STALE_S:
        return hit[1]  # the refresh answers the next requests
    return await asyncio.shield(task)


async def _refresh_champion(settings: Settings, key: tuple[str, str], previous: tuple[float, str | None] | None) -> str | None:
    try:
        version = await asyncio.to_thread(_champion_alias, settings)
    except ApiError:
        if previous is None:
            raise
        log.warning("MLflow unreachable; serving the last known champion %s v%s", settings.model_name, previous[1])
        version = previous[1]
    _champions[key] = (time.monotonic() + CHAMPION_TTL_S, version)
    _refreshing.pop(key, None)
    return version


#: One registry client per MLflow URI, kept for the background refreshes (a new httpx client per refresh
#: builds a TLS context - milliseconds of CPU holding the GIL - and a new connection every ``CHAMPION_TTL_S``).
_rest_clients: dict[tuple[Any, ...], MlflowRest] = {}
_rest_lock = threading.Lock()


def _champion_alias(settings: Settings) -> str | None:
    key = (settings.mlflow_uri, settings.mlflow_auth(), settings.api_upstream_timeout_s)
    with _rest_lock:
        rest = _rest_clients.get(key)
        if rest is None:
            rest = _rest_clients[key] = MlflowRest(settings)
    return rest.alias_version(settings.model_name)


def clear_champion_cache() -> None:
    """Forget every cached champion version (tests)."""
    _champions.clear()
    _refreshing.clear()
    with _rest_lock:
        for rest in _rest_clients.values():
            rest.close()
        _rest_clients.clear()


# --- on-demand -----------------------------------------------------------------------------------------
_model_lock = threading.Lock()
_model_cache: dict[str, Any] = {}


def _champion_version(settings: Settings) -> str:
    version = _champion_alias(settings)
    if version is None:
        raise no_champion(settings.model_name)
    return version


def _load_champion(settings: Settings, version: str) -> Any:
    """The champion pyfunc, loaded once per version (mlflow is imported here, never at import time)."""
    key = f"{settings.mlflow_uri}|{settings.model_name}|{version}"
    with _model_lock:
        if key in _model_cache:
            return _model_cache[key]
        try:
            import os

            import mlflow.pyfunc
        except ImportError as exc:
            raise ApiError(
                503,
                "On-demand forecasts need the mlflow runtime, which this deployment (Lambda package) does not "
                "contain; read batch forecasts from GET /v1/stores/{store_id}/forecast",
                expose=True,
            ) from exc
        for name, value in {**settings.aws_env(), **settings.mlflow_env()}.items():
            os.environ.setdefault(name, value)
        mlflow.set_tracking_uri(settings.mlflow_uri)
        try:
            model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
        except Exception as exc:  # report any load failure as unavailable
            raise ApiError(503, f"Cannot load champion {settings.model_name} v{version}: {exc}") from exc
        _model_cache.clear()
        _model_cache[key] = model
        return model


def _input_frame(body: OnDemandRequest) -> Any:
    import pandas as pd  # only with mlflow present (checked before)

    overrides = {(i.store, i.date): i for i in body.inputs}
    rows = []
    for store in body.stores:
        for k in range(body.days):
            day = body.start + timedelta(days=k)
            o = overrides.get((store, day))
            rows.append(
                {
                    "store": store,
                    "date": pd.Timestamp(day),
                    "day_of_week": day.isoweekday(),
                    "open": o.open if o and o.open is not None else int(day.isoweekday() != 7),
                    "promo": o.promo if o and o.promo is not None else 0,
                    "state_holiday": o.state_holiday if o and o.state_holiday is not None else "0",
                    "school_holiday": o.school_holiday if o and o.school_holiday is not None else 0,
                }
            )
    return pd.DataFrame(rows)


@router.post(
    "/forecasts",
    response_model=OnDemandResponse,
    summary="On-demand forecast with the champion model",
    responses=error_responses(401, 413, 422, 503),
)
def on_demand_forecast(body: OnDemandRequest, settings: SettingsDep, client: ClientDep) -> OnDemandResponse:
    """Forecast the given stores and dates with ``models:/<model_name>@champion``.

    The model receives one row per store-day in the canonical sales columns (store, date, day_of_week, open,
    promo, state_holiday, school_holiday) and returns the pyfunc contract's frame (``OUTPUT_COLUMNS``: store, date,
    value, lower, upper). Returns 503 with a clear message when no champion exists or mlflow is not installed.
    """
    version = _champion_version(settings)
    model = _load_champion(settings, version)
    frame = _input_frame(body)
    try:
        out = model.predict(frame)
    except ValueError as exc:  # the model refuses the input (unknown store, dates inside its training data)
        raise ApiError(422, f"The champion cannot forecast this request: {exc}", details=[ErrorDetail(field="body", message=str(exc))]) from exc
    except Exception as exc:  # other model errors are upstream failures
        raise ApiError(503, f"Champion model failed to predict: {type(exc).__name__}: {exc}") from exc
    from app.forecasting.pyfunc import OUTPUT_COLUMNS  # the pyfunc contract (mlflow is present: the model loaded)

    missing = [c for c in OUTPUT_COLUMNS if c not in out.columns]
    if missing:
        raise ApiError(503, f"Champion model output lacks column(s) {missing} of its contract {list(OUTPUT_COLUMNS)}: has {list(out.columns)}")
    forecasts = []
    for store in body.stores:
        part = out[out["store"].astype(int) == store].sort_values("date")
        points = [
            ForecastPoint(
                date=r["date"].date() if hasattr(r["date"], "date") else r["date"],
                value=float(r["value"]),
                lower=float(r["lower"]),
                upper=float(r["upper"]),
            )
            for _, r in part.iterrows()
        ]
        forecasts.append(StoreForecast(store=store, model_name=settings.model_name, model_version=version, points=points))
    return OnDemandResponse(model_name=settings.model_name, model_version=version, forecasts=forecasts)
