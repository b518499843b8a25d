"""Forecasts: the latest batch forecast of a store, and on-demand forecasts from the champion model."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg2
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api import db
from app.api.deps import ClientDep, SettingsDep
from app.api.errors import ApiError, ErrorDetail, error_responses
from app.api.mlflow_rest import MlflowRest
from app.config import Settings

router = APIRouter(prefix="/v1", tags=["forecasts"])


class ForecastPoint(BaseModel):
    """Forecast for one day."""

    date: date
    value: float = Field(..., description="Forecast sales")
    lower: float | None = Field(None, description="Lower bound of the prediction interval")
    upper: float | None = Field(None, description="Upper bound of the prediction interval")


class StoreForecast(BaseModel):
    """A store's forecast and the model that made it."""

    store: int
    model_name: str | None
    model_version: str | None
    run_id: str | None = None
    created_at: datetime | None = Field(None, description="When the batch forecast was written")
    points: list[ForecastPoint]


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
    def _unique(self) -> "OnDemandRequest":
        if len(set(self.stores)) != len(self.stores):
            raise ValueError("stores must not repeat")
        return self


class OnDemandResponse(BaseModel):
    """On-demand forecasts per store."""

    model_name: str
    model_version: str
    forecasts: list[StoreForecast]


@router.get(
    "/stores/{store_id}/forecast",
    response_model=StoreForecast,
    summary="Latest batch forecast of a store",
    responses=error_responses(401, 404, 422, 503),
)
def get_store_forecast(
    settings: SettingsDep,
    client: ClientDep,
    store_id: Annotated[int, Path(ge=1, le=100_000, description="Store id")],
    days: Annotated[int | None, Query(ge=1, le=366, description="Days to return (default: the horizon)")] = None,
) -> Response:
    """The first ``days`` days of the most recent batch forecast written for the store.

    The hottest route: Postgres renders the JSON document (``json_build_object``/``json_agg``) and it is
    returned as it is, without building and re-validating ~50 pydantic objects per request; its shape is
    the ``StoreForecast`` schema (checked against the OpenAPI document by the schemathesis test).
    """
    t = settings.table_forecasts
    sql = (
        f"WITH latest AS (SELECT model_name, model_version, run_id, created_at FROM {t} WHERE store = %(s)s"
        " ORDER BY created_at DESC LIMIT 1),"
        " points AS (SELECT f.date, f.value, f.lower, f.upper"
        f" FROM {t} f JOIN latest l ON f.model_name = l.model_name AND f.model_version::text = l.model_version::text"
        " WHERE f.store = %(s)s ORDER BY f.date LIMIT %(n)s)"
        " SELECT json_build_object('store', %(s)s, 'model_name', l.model_name, 'model_version', l.model_version::text,"
        " 'run_id', l.run_id, 'created_at', l.created_at, 'points', (SELECT coalesce(json_agg(json_build_object("
        "'date', p.date, 'value', p.value, 'lower', p.lower, 'upper', p.upper) ORDER BY p.date), '[]'::json)"
        " FROM points p))::text FROM latest l"
    )
    try:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute(sql, {"s": store_id, "n": days or settings.horizon_days})
            row = cur.fetchone()
    except psycopg2.errors.UndefinedTable as exc:
        raise ApiError(503, f"Table {t} does not exist yet (SFMLOPS_TABLE_FORECASTS); run `sfmlops forecast`") from exc
    if row is None:
        raise ApiError(404, f"No batch forecast for store {store_id}")
    return Response(content=row[0], media_type="application/json")


# --- on-demand -----------------------------------------------------------------------------------------
_model_lock = threading.Lock()
_model_cache: dict[str, Any] = {}


def _champion_version(settings: Settings) -> str:
    rest = MlflowRest(settings)
    try:
        model = rest.registered_model(settings.model_name)
    finally:
        rest.close()
    aliases = {a.get("alias"): a.get("version") for a in (model or {}).get("aliases", [])}
    if "champion" not in aliases:
        raise ApiError(
            503,
            f"No champion model: models:/{settings.model_name}@champion does not exist yet; train first "
            "(POST /v1/training-jobs)",
        )
    return str(aliases["champion"])


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
            ) from exc
        for name, value in settings.aws_env().items():
            os.environ.setdefault(name, value)
        mlflow.set_tracking_uri(settings.mlflow_uri)
        try:
            model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
        except Exception as exc:  # noqa: BLE001 - report any load failure as unavailable
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


def _column(frame: Any, *names: str) -> str | None:
    lower = {str(c).lower(): c for c in frame.columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


@router.post(
    "/forecasts",
    response_model=OnDemandResponse,
    summary="On-demand forecast with the champion model",
    responses=error_responses(401, 413, 422, 503),
)
def on_demand_forecast(body: OnDemandRequest, settings: SettingsDep, client: ClientDep) -> OnDemandResponse:
    """Forecast the given stores and dates with ``models:/<model_name>@champion``.

    The model receives one row per store-day in the canonical sales columns (store, date, day_of_week, open,
    promo, state_holiday, school_holiday) and returns a frame with store, date and value (lower/upper
    optional). Returns 503 with a clear message when no champion exists or mlflow is not installed.
    """
    version = _champion_version(settings)
    model = _load_champion(settings, version)
    frame = _input_frame(body)
    try:
        out = model.predict(frame)
    except ValueError as exc:  # the model refuses the input (unknown store, dates inside its training data)
        raise ApiError(422, f"The champion cannot forecast this request: {exc}", details=[ErrorDetail(field="body", message=str(exc))]) from exc
    except Exception as exc:  # noqa: BLE001 - other model errors are upstream failures
        raise ApiError(503, f"Champion model failed to predict: {type(exc).__name__}: {exc}") from exc
    value_col = _column(out, "value", "forecast", "yhat", "y_hat", "prediction")
    store_col, date_col = _column(out, "store", "unique_id"), _column(out, "date", "ds")
    if value_col is None or store_col is None or date_col is None:
        raise ApiError(503, f"Champion model output lacks store/date/value columns: {list(out.columns)}")
    lo, hi = _column(out, "lower", "lo"), _column(out, "upper", "hi")
    forecasts = []
    for store in body.stores:
        part = out[out[store_col].astype(str) == str(store)].sort_values(date_col)
        points = [
            ForecastPoint(
                date=r[date_col].date() if hasattr(r[date_col], "date") else r[date_col],
                value=float(r[value_col]),
                lower=None if lo is None else float(r[lo]),
                upper=None if hi is None else float(r[hi]),
            )
            for _, r in part.iterrows()
        ]
        forecasts.append(StoreForecast(store=store, model_name=settings.model_name, model_version=version, points=points))
    return OnDemandResponse(model_name=settings.model_name, model_version=version, forecasts=forecasts)
