"""``/v1/training-jobs``: submit, list, inspect, read logs of and stop training jobs on Ray."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.api import jobs_service
from app.api.deps import ClientDep, RayDep, SettingsDep
from app.api.errors import ApiError, ErrorDetail, error_responses

router = APIRouter(prefix="/v1/training-jobs", tags=["training-jobs"])

JobState = Literal["SUBMITTING", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED", "LOST"]
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Job id returned at submission")]


#: Most store ids one request may name (kind=all or forecast): a slice for tests and small runs.
MAX_STORES = 200


class TrainingJobRequest(BaseModel):
    """What to train (or, with kind=forecast, which batch forecast to run)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["all", "store", "forecast", "noop"] = Field(
        "all",
        description="all = global model over every store (or `stores`); store = one store (needs `store`); "
        "forecast = batch forecast of the champion into the forecasts table (`days`, `stores`); "
        "noop = trivial job, accepted only when the server runs with SFMLOPS_API_TEST_JOBS=true",
    )
    store: int | None = Field(None, ge=1, le=100_000, description="Store id, required when kind=store")
    stores: list[Annotated[int, Field(ge=1, le=100_000)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_STORES,
        description=f"Only these store ids (kind=all or forecast; 1 to {MAX_STORES} distinct ids; default: every store)",
    )
    neural: bool | None = Field(None, description="Also train the neuralforecast candidate (kind=all; default true)")
    days: int | None = Field(None, ge=1, le=366, description="Forecast horizon in days (kind=forecast; default SFMLOPS_HORIZON_DAYS)")
    noop_seconds: int = Field(0, ge=0, le=600, description="How long a noop job sleeps (kind=noop only)")
    lgbm_rounds: int | None = Field(None, ge=1, le=20_000, description="Boosting rounds of LightGBM (all, store)")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Training steps of the neural model (all)")

    @field_validator("store")
    @classmethod
    def _store_needs_kind_store(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind != "store":
            raise ValueError("store is only allowed when kind is 'store' (use stores for kind 'all' or 'forecast')")
        return value

    @field_validator("stores")
    @classmethod
    def _stores_distinct_and_kind(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if value is None:
            return value
        kind = info.data.get("kind")
        if kind is not None and kind not in ("all", "forecast"):
            raise ValueError(f"stores is only allowed when kind is 'all' or 'forecast', not {kind!r}")
        duplicates = sorted({s for s in value if value.count(s) > 1})
        if duplicates:
            raise ValueError(f"stores must be distinct; repeated: {duplicates[:10]}")
        return value

    @field_validator("neural", "max_steps")
    @classmethod
    def _all_only(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind != "all":
            raise ValueError(f"{info.field_name} is only allowed when kind is 'all', not {kind!r}")
        return value

    @field_validator("days")
    @classmethod
    def _forecast_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if value is not None and kind is not None and kind != "forecast":
            raise ValueError(f"days is only allowed when kind is 'forecast', not {kind!r}")
        return value

    @field_validator("noop_seconds")
    @classmethod
    def _noop_only(cls, value: int, info: ValidationInfo) -> int:
        kind = info.data.get("kind")
        if value and kind is not None and kind != "noop":
            raise ValueError(f"noop_seconds is only allowed when kind is 'noop', not {kind!r}")
        return value

    @field_validator("lgbm_rounds")
    @classmethod
    def _training_only(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("kind")
        if value is not None and kind in ("noop", "forecast"):
            raise ValueError(f"lgbm_rounds is only allowed when kind is 'all' or 'store', not {kind!r}")
        return value

    @model_validator(mode="after")
    def _store_matches_kind(self) -> "TrainingJobRequest":
        if self.kind == "store" and self.store is None:
            raise ValueError("store is required when kind is 'store'")
        return self


class JobLinks(BaseModel):
    """Where to look next."""

    self: str
    logs: str
    stop: str


class TrainingJob(BaseModel):
    """A training job and its latest known state."""

    id: str = Field(..., description="Job id (also the Ray submission id; derived from the Idempotency-Key when given)")
    kind: str
    store: int | None = None
    state: JobState = Field(
        ...,
        description="SUBMITTING (recorded; Ray has not confirmed it yet, retried when read), PENDING, RUNNING, "
        "SUCCEEDED, FAILED, STOPPED, or LOST (Ray forgot it)",
    )
    message: str | None = Field(None, description="Ray's status message")
    result: dict[str, Any] | None = Field(None, description="Summary the job printed last (JSON line), or error info")
    entrypoint: str
    ray_submission_id: str
    idempotency_key: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    refreshed_at: datetime | None = Field(None, description="When the state was last read from Ray")
    links: JobLinks


class TrainingJobList(BaseModel):
    """Jobs of the calling client, newest first."""

    items: list[TrainingJob]
    count: int


class JobLogs(BaseModel):
    """One page of a job's driver log (at most SFMLOPS_API_MAX_LOG_PAGE_BYTES bytes of UTF-8)."""

    job_id: str
    state: JobState
    logs: str = Field(..., description="The page")
    offset: int = Field(..., ge=0, description="Byte offset of the page in the whole log")
    next_offset: int = Field(..., ge=0, description="Byte offset right after the page: pass it as offset to read on")
    total_bytes: int = Field(..., ge=0, description="Size of the whole log so far")
    truncated: bool = Field(..., description="True when the log holds more than this page (before or after it)")


class StopResult(BaseModel):
    """Outcome of a stop request."""

    stopped: bool = Field(..., description="True if Ray initiated a stop")
    job: TrainingJob


def _out(request: Request, row: dict[str, Any]) -> TrainingJob:
    base = f"{request.scope.get('root_path', '')}/v1/training-jobs/{row['id']}"
    fields = {k: row.get(k) for k in TrainingJob.model_fields if k != "links"}
    return TrainingJob(**fields, links=JobLinks(self=base, logs=f"{base}/logs", stop=f"{base}/stop"))


@router.post(
    "",
    status_code=202,
    response_model=TrainingJob,
    summary="Submit a training job",
    responses={
        200: {"model": TrainingJob, "description": "Replay: the job an earlier request with this Idempotency-Key started"},
        **error_responses(401, 409, 413, 422, 429, 502, 503),
    },
)
def submit_training_job(
    request: Request,
    response: Response,
    body: TrainingJobRequest,
    settings: SettingsDep,
    client: ClientDep,
    ray: RayDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=128,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="Any unique string; a retry with the same key returns the same job instead of a new one",
        ),
    ] = None,
) -> TrainingJob:
    """Start training on Ray (all stores, a few stores, or one store) or a batch forecast. Returns 202 with the job and links."""
    if body.kind == "noop" and not (settings.api_test_jobs and settings.profile == "local"):
        raise ApiError(
            422,
            "kind=noop is disabled on this server (needs SFMLOPS_API_TEST_JOBS=true and the local profile)",
            details=[ErrorDetail(field="body.kind", message="noop jobs are disabled")],
        )
    allowed = {k.strip() for k in settings.api_job_kinds.split(",") if k.strip()} | {"noop"}
    if body.kind not in allowed:
        raise ApiError(
            422,
            f"kind={body.kind} is disabled on this server (SFMLOPS_API_JOB_KINDS={settings.api_job_kinds})",
            details=[ErrorDetail(field="body.kind", message=f"{body.kind} jobs are disabled")],
        )
    row, created = jobs_service.submit(settings, ray, client, body.model_dump(), idempotency_key)
    job = _out(request, row)
    response.headers["Location"] = job.links.self
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return job


@router.get("", response_model=TrainingJobList, summary="List my training jobs", responses=error_responses(401, 422, 503))
def list_training_jobs(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    ray: RayDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Most jobs to return")] = 20,
    state: Annotated[JobState | None, Query(description="Only jobs in this state")] = None,
) -> TrainingJobList:
    """The caller's jobs, newest first; unfinished ones are refreshed from Ray."""
    rows = [jobs_service.refresh(settings, ray, r) for r in jobs_service.list_jobs(settings, client, limit, state)]
    if state:
        rows = [r for r in rows if r["state"] == state]
    items = [_out(request, r) for r in rows]
    return TrainingJobList(items=items, count=len(items))


@router.get("/{job_id}", response_model=TrainingJob, summary="Get a training job", responses=error_responses(401, 404, 422, 503))
def get_training_job(request: Request, job_id: JobId, settings: SettingsDep, client: ClientDep, ray: RayDep) -> TrainingJob:
    """One of the caller's jobs, its state refreshed from Ray when unfinished."""
    return _out(request, jobs_service.refresh(settings, ray, jobs_service.get_job(settings, client, job_id)))


@router.get(
    "/{job_id}/logs", response_model=JobLogs, summary="Logs of a training job", responses=error_responses(401, 404, 422, 502, 503)
)
def get_training_job_logs(
    job_id: JobId,
    settings: SettingsDep,
    client: ClientDep,
    ray: RayDep,
    tail: Annotated[int | None, Query(ge=1, le=10_000, description="Only the last N lines (without offset)")] = None,
    offset: Annotated[
        int | None, Query(ge=0, le=2**53, description="Byte offset to read from (0 = the start); default: the end of the log")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=2**53, description="Most bytes in the page (capped by SFMLOPS_API_MAX_LOG_PAGE_BYTES)")] = None,
) -> JobLogs:
    """One bounded page of the driver log of one of the caller's jobs, read from Ray.

    Without ``offset`` the page is the end of the log (its last ``tail`` lines when given); with ``offset``
    it starts there, and ``next_offset`` is where the next page starts. A page holds at most ``limit`` bytes
    and never more than the server's maximum (Lambda answers at most 6 MB).
    """
    if offset is not None and tail is not None:
        raise ApiError(
            422, "Pass either offset or tail, not both", details=[ErrorDetail(field="query.tail", message="not with offset")]
        )
    text = jobs_service.logs(settings, ray, client, job_id)
    max_bytes = min(limit or settings.api_max_log_page_bytes, settings.api_max_log_page_bytes)
    page, start, end, total = jobs_service.log_page(text, offset=offset, tail=tail, max_bytes=max_bytes)
    job = jobs_service.refresh(settings, ray, jobs_service.get_job(settings, client, job_id))
    return JobLogs(
        job_id=job_id, state=job["state"], logs=page, offset=start, next_offset=end, total_bytes=total,
        truncated=start > 0 or end < total,
    )


@router.post(
    "/{job_id}/stop",
    response_model=StopResult,
    summary="Stop a training job",
    responses=error_responses(401, 404, 409, 422, 502, 503),
)
def stop_training_job(request: Request, job_id: JobId, settings: SettingsDep, client: ClientDep, ray: RayDep) -> StopResult:
    """Ask Ray to stop one of the caller's unfinished jobs (409 if it already finished)."""
    row, stopped = jobs_service.stop(settings, ray, client, job_id)
    return StopResult(stopped=stopped, job=_out(request, row))
