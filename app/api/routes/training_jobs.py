"""``/v1/training-jobs``: submit, list, inspect, read logs of and stop training jobs on Ray."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from app.api import jobs_service
from app.api.deps import ClientDep, RayDep, SettingsDep
from app.api.errors import ApiError, ErrorDetail, error_responses
from app.common.jobs import JobState

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Job id returned at submission")]


#: Most store ids one request may name (kind=all or forecast): a slice for tests and small runs.
MAX_STORES = 200


StoreId = Annotated[int, Field(ge=1, le=100_000)]


def _distinct(stores: list[int]) -> list[int]:
    repeated = sorted({s for s in stores if stores.count(s) > 1})
    if repeated:
        raise ValueError(f"stores must be distinct; repeated: {repeated[:10]}")
    return stores


StoreList = Annotated[
    list[StoreId],
    Field(min_length=1, max_length=MAX_STORES),
    AfterValidator(_distinct),
]


class _JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainAllRequest(_JobRequest):
    """Train the global model over every store (or ``stores``): backtest, register, champion gate."""

    kind: Literal["all"] = "all"
    stores: StoreList | None = Field(None, description=f"Only these store ids (1 to {MAX_STORES} distinct ids; default: every store)")
    neural: bool | None = Field(None, description="Also train the neuralforecast candidate (default true)")
    lgbm_rounds: int | None = Field(None, ge=1, le=20_000, description="Boosting rounds of LightGBM")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Training steps of the neural model")


class TrainStoreRequest(_JobRequest):
    """Retrain and re-forecast one store."""

    kind: Literal["store"]
    store: StoreId = Field(..., description="Store id")
    lgbm_rounds: int | None = Field(None, ge=1, le=20_000, description="Boosting rounds of LightGBM")


class ForecastRequest(_JobRequest):
    """Batch forecast of the champion into the forecasts table."""

    kind: Literal["forecast"]
    days: int | None = Field(None, ge=1, le=366, description="Forecast horizon in days (default SFMLOPS_HORIZON_DAYS)")
    stores: StoreList | None = Field(None, description=f"Only these store ids (1 to {MAX_STORES} distinct ids; default: every store)")


class NoopRequest(_JobRequest):
    """A trivial job, accepted only when the server runs with SFMLOPS_API_TEST_JOBS=true (local profile)."""

    kind: Literal["noop"]
    noop_seconds: int = Field(0, ge=0, le=600, description="How long the job sleeps")


JOB_REQUESTS: dict[str, type[_JobRequest]] = {
    "all": TrainAllRequest,
    "store": TrainStoreRequest,
    "forecast": ForecastRequest,
    "noop": NoopRequest,
}


def _kind_of(value: Any) -> Any:
    """The union's tag: the body's ``kind`` (``all`` when left out)."""
    return value.get("kind", "all") if isinstance(value, dict) else getattr(value, "kind", None)


#: The body of ``POST /v1/training-jobs``: one model per ``kind``, each with only the fields that kind takes.
TrainingJobRequest = Annotated[
    Annotated[TrainAllRequest, Tag("all")]
    | Annotated[TrainStoreRequest, Tag("store")]
    | Annotated[ForecastRequest, Tag("forecast")]
    | Annotated[NoopRequest, Tag("noop")],
    Discriminator(
        _kind_of,
        custom_error_type="invalid_kind",
        custom_error_message=f"kind must be one of {', '.join(map(repr, JOB_REQUESTS))}",
    ),
]
TRAINING_JOB_REQUEST: TypeAdapter[Any] = TypeAdapter(TrainingJobRequest)


def _flat_error(error: dict[str, Any]) -> dict[str, Any]:
    """A body error of the union as the client sent it: ``body.store``, not ``body.<tag>.store``; a field
    another kind takes is named as such (instead of pydantic's "Extra inputs are not permitted")."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "invalid_kind" and loc == ("body",):
        return {**error, "loc": ("body", "kind")}
    if len(loc) < 3 or loc[0] != "body" or loc[1] not in JOB_REQUESTS:
        return error
    kind, rest = loc[1], loc[2:]
    if error.get("type") == "extra_forbidden" and len(rest) == 1:
        fields = [f for f in JOB_REQUESTS[kind].model_fields if f != "kind"]
        takes = [k for k, model in JOB_REQUESTS.items() if rest[0] in model.model_fields]
        where = f"; kinds that take it: {', '.join(map(repr, takes))}" if takes else ""
        msg = f"{rest[0]} is not allowed when kind is {kind!r} (allowed: {', '.join(fields) or 'none'}){where}"
        return {**error, "loc": ("body", *rest), "msg": msg}
    return {**error, "loc": ("body", *rest)}


class JobRequestRoute(APIRoute):
    """Routes of this router: validation errors of the job-request union name the fields as sent (see _flat_error)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def flat_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise RequestValidationError([_flat_error(dict(e)) for e in exc.errors()], body=exc.body) from None

        return flat_errors


router = APIRouter(prefix="/v1/training-jobs", tags=["training-jobs"], route_class=JobRequestRoute)


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
    fields: dict[str, Any] = {k: row.get(k) for k in TrainingJob.model_fields if k != "links"}
    fields["links"] = JobLinks(self=base, logs=f"{base}/logs", stop=f"{base}/stop")
    return TrainingJob.model_validate(fields)


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
