"""``/v1/accuracy``: live accuracy of the stored forecasts as actuals arrive, and the drift flag (issue 18.4).

``POST /v1/accuracy/score`` scores the configured model's stored forecasts against the sales that have landed
(the daily DAG calls it after each ingest) and answers the drift status; ``GET /v1/accuracy`` reads the
scores and the status. See :mod:`app.forecasting.live_accuracy`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.api import db
from app.api.deps import ClientDep, SettingsDep
from app.api.errors import error_responses
from app.api.mlflow_rest import MlflowRest
from app.forecasting import live_accuracy

router = APIRouter(prefix="/v1", tags=["accuracy"])


class DayScore(BaseModel):
    """Live RMSPE of one scored day of a version (all its horizon buckets)."""

    date: date
    rmspe: float
    rows_scored: int


class VersionAccuracy(BaseModel):
    """One model version's live accuracy against its backtest."""

    model_version: str
    backtest_rmspe: float | None = Field(None, description="The version's backtest RMSPE (registry tag backtest_rmspe)")
    threshold: float | None = Field(None, description="backtest_rmspe x (1 + margin): a day above it is a bad day")
    drift: bool
    bad_days: int = Field(..., description="Bad days in a row, ending with the newest scored day")
    window: int = Field(..., description="Bad days in a row that flag drift (SFMLOPS_ACCURACY_DRIFT_DAYS)")
    reason: str
    days: list[DayScore]
    buckets: dict[str, float] = Field(default_factory=dict, description="Live RMSPE per horizon bucket over the returned days")


class AccuracyStatus(BaseModel):
    """Scores per version and the drift flag of the current version (the newest forecast run's)."""

    model_name: str
    margin: float = Field(..., description="SFMLOPS_ACCURACY_DRIFT_MARGIN")
    window: int
    current_version: str | None
    drift: bool = Field(..., description="The current version is in drift: retrain")
    reason: str
    versions: list[VersionAccuracy]


class ScoreRequest(BaseModel):
    """Which forecast days to (re)score."""

    model_config = ConfigDict(extra="forbid")

    since: date | None = Field(None, description="Only forecast days on or after this day (default: every day with actuals)")


class ScoreResponse(BaseModel):
    """What the scoring wrote, and the drift status after it."""

    model_name: str
    scored_rows: int = Field(..., description="Stored forecast rows that have actuals")
    written: int = Field(..., description="(version, day, bucket) scores upserted")
    first_date: date | None
    last_date: date | None
    versions: list[str]
    status: AccuracyStatus


@router.post("/accuracy/score", response_model=ScoreResponse, summary="Score stored forecasts against the actuals",
             responses=error_responses(401, 413, 422, 502, 503))
def score_accuracy(settings: SettingsDep, client: ClientDep, body: ScoreRequest | None = None) -> dict[str, Any]:
    """Score every stored forecast day of the configured model that now has actuals, per version, day and
    horizon bucket; store the scores; answer the drift status."""
    since = body.since if body else None
    rest = MlflowRest(settings)
    try:
        with db.connection(settings) as conn:
            return live_accuracy.score(settings, conn, since=since, backtest=rest.backtest_rmspes)
    finally:
        rest.close()


@router.get("/accuracy", response_model=AccuracyStatus, summary="Live accuracy and drift per model version",
            responses=error_responses(401, 422, 503))
def read_accuracy(
    settings: SettingsDep,
    client: ClientDep,
    days: int = Query(60, ge=1, le=366, description="Newest scored days returned per version"),
) -> dict[str, Any]:
    """The stored live scores of the configured model per version (newest ``days``), each version's drift
    verdict and the flag of the current version."""
    with db.connection(settings) as conn:
        return live_accuracy.drift_status(settings, conn, days=days)
