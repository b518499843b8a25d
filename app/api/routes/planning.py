"""``/v1/planning``: the business's known-future inputs (openings, promotions, holidays) as versioned uploads.

``POST /v1/planning`` takes JSON rows, ``POST /v1/planning/csv`` a Kaggle ``test.csv``-style body; both go
through :func:`app.forecasting.planning.upload` (the rules of the sales rows; an upload with a bad row is refused
as a whole with a 422 naming every bad row, nothing stored) and answer the new version. ``GET /v1/planning``
lists the newest versions. ``GET /v1/stores/{store_id}/plan`` reads a store's current plan (the newest version's
row of each day) over a range of days, by default the days of its latest batch forecast. The batch forecast uses
the newest version's row of each (store, date) and projects the inputs of the days without one
(:mod:`app.forecasting.batch`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api import db
from app.api.deps import ClientDep, SettingsDep, StoreId
from app.api.errors import ApiError, ErrorDetail, error_responses
from app.config import Settings
from app.forecasting import planning

router = APIRouter(prefix="/v1", tags=["planning"])


class PlanRowDoc(BaseModel):
    """One plan row (the shape :func:`app.forecasting.planning.check` accepts; documentation only)."""

    store: int = Field(..., description="A store of the stores table")
    date: date
    day_of_week: int | None = Field(None, description="Optional: 1 (Monday) .. 7, must match date")
    open: Literal[0, 1]
    promo: Literal[0, 1]
    state_holiday: Literal["0", "a", "b", "c"]
    school_holiday: Literal[0, 1]


class PlanUpload(BaseModel):
    """Plan rows, stored together as one new version."""

    model_config = ConfigDict(extra="forbid")

    rows: list[Any] = Field(
        ...,
        description="Plan rows (checked one by one like sales rows: a bad one refuses the whole upload)",
        json_schema_extra={"items": PlanRowDoc.model_json_schema()},
    )


class PlanVersion(BaseModel):
    """One upload of planning data."""

    version: int = Field(..., description="Version number: for a (store, date) the newest version's row wins")
    rows: int
    stores: int
    first_date: date
    last_date: date
    uploaded_at: datetime
    client: str = Field(..., description="API client (or `cli:` user) that uploaded it")


class PlanVersions(BaseModel):
    versions: list[PlanVersion]


class PlanDay(BaseModel):
    """A store's planning data for one day: the row of the newest version that has the store-day."""

    date: date
    open: Literal[0, 1]
    promo: Literal[0, 1]
    state_holiday: Literal["0", "a", "b", "c"]
    school_holiday: Literal[0, 1]
    version: int = Field(..., description="The upload (GET /v1/planning) this day's row comes from")


class StorePlan(BaseModel):
    """A store's current planning data for the days ``start..end``."""

    store: int
    start: date = Field(..., description="First day of the range")
    end: date = Field(..., description="Last day of the range (inclusive)")
    days: list[PlanDay] = Field(
        ..., description="The days of the range that have planning data, oldest first (empty: none; the batch forecast projects the inputs of the others)"
    )


_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "Id,Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday\n1,1,4,2015-09-17,1,1,0,0\n",
            }
        },
    }
}


def _refused(exc: planning.PlanError) -> ApiError:
    return ApiError(422, exc.summary, details=[ErrorDetail(field=p.location, message=p.reason) for p in exc.problems])


@contextlib.contextmanager
def _planning_db(settings: Settings) -> Iterator[Any]:
    """A pooled connection; a refused upload is a 422 naming every bad row, a missing planning (or stores) table a
    503, for either driver."""
    try:
        with db.connection(settings) as conn:
            yield conn
    except planning.PlanError as exc:
        raise _refused(exc) from exc
    except ApiError:
        raise
    except Exception as exc:
        if not _missing_table(exc):
            raise
        raise ApiError(
            503, f"Table {settings.table_planning} or {settings.table_stores} does not exist (SFMLOPS_TABLE_PLANNING); run `sfmlops up`",
            expose=True,
        ) from exc


def _missing_table(exc: BaseException) -> bool:
    return "42P01" in (getattr(exc, "pgcode", None), getattr(exc, "sqlstate", None))


def _store(settings: Settings, entries: list[planning.Entry], client: str, **kwargs: Any) -> PlanVersion:
    with _planning_db(settings) as conn:
        return PlanVersion(**planning.upload(conn, settings, entries, client, **kwargs))


@router.post(
    "/planning", response_model=PlanVersion, status_code=201, summary="Upload planning data (JSON rows) as a new version",
    responses=error_responses(401, 413, 422, 503),
)
async def upload_plan(body: PlanUpload, settings: SettingsDep, client: ClientDep) -> PlanVersion:
    """Store ``rows`` as one new version of the planning data; 422 names every bad row (``body.rows.<i>.<field>``)."""
    return await run_in_threadpool(_store, settings, planning.json_entries(body.rows), client.name, source="body")


@router.post(
    "/planning/csv", response_model=PlanVersion, status_code=201,
    summary="Upload planning data (Kaggle test.csv columns) as a new version",
    responses=error_responses(401, 413, 422, 503), openapi_extra=_CSV_BODY,
)
async def upload_plan_csv(request: Request, settings: SettingsDep, client: ClientDep) -> PlanVersion:
    """Store a CSV with ``Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday`` (``Id`` optional, ignored) as
    one new version; 422 names every bad line (``body.line.<n>.<column>``, the header is line 1)."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"The CSV body is not UTF-8 text (byte {exc.start})", details=[ErrorDetail(field="body", message=str(exc))]) from exc
    try:
        entries, names = planning.csv_entries(text)
    except planning.PlanError as exc:
        raise _refused(exc) from exc
    return await run_in_threadpool(_store, settings, entries, client.name, source="body", names=names, require_day_of_week=True)


def _versions(settings: Settings, limit: int) -> PlanVersions:
    with _planning_db(settings) as conn:
        return PlanVersions(versions=[PlanVersion(**v) for v in planning.versions(conn, settings, limit)])


@router.get("/planning", response_model=PlanVersions, summary="The newest uploads of planning data", responses=error_responses(401, 503))
async def list_plans(settings: SettingsDep, client: ClientDep, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> PlanVersions:
    """The newest ``limit`` versions, newest first: rows, stores, dates, when and by whom."""
    return await run_in_threadpool(_versions, settings, limit)


def _plan_end(start: date, days: int) -> date:
    try:
        return start + timedelta(days=days - 1)
    except OverflowError as exc:
        raise ApiError(422, f"start {start} + {days} days is beyond {date.max}",
                       details=[ErrorDetail(field="query.start", message=f"the last day would be beyond {date.max}")]) from exc


def _default_start(conn: Any, settings: Settings, store: int) -> date:
    """The first day of the store's newest batch forecast run (of ``SFMLOPS_MODEL_NAME``); without one the day after
    its latest sales day; without either, today (UTC)."""
    f, s = settings.table_forecasts, settings.table_sales
    sql = (
        f"SELECT coalesce((SELECT min(date) FROM {f} WHERE model_name = %(m)s AND store = %(s)s AND forecast_run ="
        f" (SELECT max(forecast_run) FROM {f} WHERE model_name = %(m)s AND store = %(s)s)),"
        f" (SELECT max(date) + 1 FROM {s} WHERE store = %(s)s))"
    )
    try:
        with conn.transaction(), conn.cursor() as cur:  # a savepoint: a missing table is named here, not as the plan's
            cur.execute(sql, {"m": settings.model_name, "s": store})
            row = cur.fetchone()
    except Exception as exc:
        if not _missing_table(exc):
            raise
        raise ApiError(
            503, f"Table {f} or {s} does not exist (SFMLOPS_TABLE_FORECASTS, SFMLOPS_TABLE_SALES); run `sfmlops up`", expose=True,
        ) from exc
    return row[0] if row and row[0] is not None else datetime.now(UTC).date()


def _store_plan(settings: Settings, store: int, start: date | None, days: int) -> StorePlan:
    if start is not None:
        _plan_end(start, days)  # a bad range is refused before the database is asked
    with _planning_db(settings) as conn:
        with conn.cursor() as cur:
            cur.execute(f"SELECT 1 FROM {settings.table_stores} WHERE store = %s", (store,))
            if cur.fetchone() is None:
                raise ApiError(404, f"Store {store} is not in the stores table")
        if start is None:
            start = _default_start(conn, settings, store)
        end = _plan_end(start, days)
        rows = planning.read_plan(conn, settings, start, end, [store])
    return StorePlan(store=store, start=start, end=end, days=[
        PlanDay(date=r[1], open=r[2], promo=r[3], state_holiday=r[4], school_holiday=r[5], version=r[6]) for r in rows
    ])


@router.get(
    "/stores/{store_id}/plan", response_model=StorePlan, summary="A store's current planning data for a range of days",
    responses=error_responses(401, 404, 422, 503),
)
async def get_store_plan(
    settings: SettingsDep,
    client: ClientDep,
    store_id: StoreId,
    start: Annotated[date | None, Query(description="First day (default: the first day of the store's latest batch forecast)")] = None,
    days: Annotated[int | None, Query(ge=1, le=366, description="Days from start (default: the horizon)")] = None,
) -> StorePlan:
    """The store's planning data of ``days`` days from ``start``: per day the row of the newest version that has it
    (the row the batch forecast uses), with that version. Days without planning data are left out (an empty
    ``days`` list: the batch forecast projects their inputs). By default ``start`` is the first day of the store's
    newest batch forecast run (``SFMLOPS_MODEL_NAME``; without one, the day after its latest sales day) and ``days``
    the horizon (``SFMLOPS_HORIZON_DAYS``), the days ``GET /v1/stores/{store_id}/forecast`` serves. 404: no such store.
    """
    return await run_in_threadpool(_store_plan, settings, store_id, start, days or settings.horizon_days)
