"""``/v1/training-jobs``: submit, list, inspect, read logs of and stop training jobs on Ray."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api import jobs_service
from app.api.deps import ClientDep, RayDep, SettingsDep
from app.api.errors import ApiError, ErrorDetail, error_responses

router = APIRouter(prefix="/v1/training-jobs", tags=["training-jobs"])

JobState = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED", "LOST"]
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Job id returned at submission")]


class TrainingJobRequest(BaseModel):
    """What to train."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["all", "store", "noop"] = Field(
        "all",
        description="all = global model over every store; store = one store (needs `store`); "
        "noop = trivial job, accepted only when the server runs with SFMLOPS_API_TEST_JOBS=true",
    )
    store: int | None = Field(None, ge=1, le=100_000, description="Store id, required when kind=store")
    noop_seconds: int = Field(0, ge=0, le=600, description="How long a noop job sleeps (kind=noop only)")
    lgbm_rounds: int | None = Field(None, ge=1, le=20_000, description="Boosting rounds of LightGBM (all, store)")
    max_steps: int | None = Field(None, ge=1, le=100_000, description="Training steps of the neural model (all)")

    @model_validator(mode="after")
    def _store_matches_kind(self) -> "TrainingJobRequest":
        if self.kind == "store" and self.store is None:
            raise ValueError("store is required when kind is 'store'")
        if self.kind != "store" and self.store is not None:
            raise ValueError("store is only allowed when kind is 'store'")
        if self.kind != "noop" and self.noop_seconds:
            raise ValueError("noop_seconds is only allowed when kind is 'noop'")
        if self.kind == "noop" and self.lgbm_rounds is not None:
            raise ValueError("lgbm_rounds is not allowed when kind is 'noop'")
        if self.kind != "all" and self.max_steps is not None:
            raise ValueError("max_steps is only allowed when kind is 'all'")
        return self


class JobLinks(BaseModel):
    """Where to look next."""

    self: str
    logs: str
    stop: str


class TrainingJob(BaseModel):
    """A training job and its latest known state."""

    id: str = Field(..., description="Job id (also the Ray submission id)")
    kind: str
    store: int | None = None
    state: JobState = Field(..., description="PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED, or LOST (Ray forgot it)")
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
    """Driver log of a job."""

    job_id: str
    state: JobState
    logs: str


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
    """Start training on Ray (all stores, or one store). Returns 202 with the job and links."""
    if body.kind == "noop" and not (settings.api_test_jobs and settings.profile == "local"):
        raise ApiError(
            422,
            "kind=noop is disabled on this server (needs SFMLOPS_API_TEST_JOBS=true and the local profile)",
            details=[ErrorDetail(field="body.kind", message="noop jobs are disabled")],
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
    tail: Annotated[int | None, Query(ge=1, le=10_000, description="Only the last N lines")] = None,
) -> JobLogs:
    """The driver log of one of the caller's jobs, read from Ray."""
    text = jobs_service.logs(settings, ray, client, job_id)
    if tail:
        text = "\n".join(text.splitlines()[-tail:])
    job = jobs_service.refresh(settings, ray, jobs_service.get_job(settings, client, job_id))
    return JobLogs(job_id=job_id, state=job["state"], logs=text)


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
