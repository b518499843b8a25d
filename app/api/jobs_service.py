"""Training-job bookkeeping: submission with idempotency and per-client limits, refresh from Ray.

Job records live in Postgres (``settings.table_training_jobs``); the Ray submission id equals the job id,
so a job can always be traced in Ray and its history survives a Ray restart.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2.extras

from app.api import db
from app.api.auth import Client
from app.api.errors import ApiError, ErrorDetail
from app.api.ray_jobs import TERMINAL_STATES, RayJobNotFound, RayJobsClient
from app.config import Settings

#: States of our own records: Ray's plus LOST (Ray no longer knows an unfinished job).
ACTIVE_STATES = ("PENDING", "RUNNING")
TRAIN_ALL = "ray_cluster/jobs/train_all.py"
TRAIN_STORE = "ray_cluster/jobs/train_store.py"
FORECAST = "ray_cluster/jobs/forecast.py"
#: Settings passed to the job as SFMLOPS_* env vars (addresses only; secrets come from the Ray nodes' env,
#: or from the database secret's ARN, which the nodes' role may read).
JOB_ENV_SETTINGS = (
    "profile",
    "pg_host",
    "pg_port",
    "pg_database",
    "pg_user",
    "pg_secret_arn",
    "mlflow_experiment",
    "model_name",
    "aws_region",
    "bucket_mlflow",
    "bucket_code",
    "table_sales",
    "table_stores",
    "table_forecasts",
    "horizon_days",
)


def working_dir(settings: Settings) -> str:
    """The Ray ``working_dir`` of training jobs: the job-code zip on S3 unless overridden."""
    override = (settings.job_working_dir or "").strip()
    return override or f"s3://{settings.bucket_code}/{settings.job_code_key}"


def job_env(settings: Settings) -> dict[str, str]:
    """Environment for the job's driver: non-secret addresses from settings plus the S3 endpoint."""
    env = {
        f"SFMLOPS_{name.upper()}": str(value)
        for name in JOB_ENV_SETTINGS
        if (value := getattr(settings, name)) is not None
    }
    env["SFMLOPS_MLFLOW_TRACKING_URI"] = settings.mlflow_uri
    if settings.aws_endpoint_url:
        env["SFMLOPS_AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        env["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.aws_endpoint_url
    return env


def build_submission(settings: Settings, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Entrypoint and runtime_env for one job request (see ``ray_cluster/jobs/`` for the options)."""
    kind, store, noop_seconds = payload["kind"], payload.get("store"), payload.get("noop_seconds") or 0
    stores = ",".join(str(int(s)) for s in payload.get("stores") or [])
    options = ""
    if stores:
        options += f" --stores {stores}"
    if payload.get("lgbm_rounds"):
        options += f" --lgbm-rounds {int(payload['lgbm_rounds'])}"
    if payload.get("max_steps"):
        options += f" --max-steps {int(payload['max_steps'])}"
    if payload.get("neural") is False:
        options += " --no-neural"
    if kind == "noop":
        script = (
            "import json,time; print('sfmlops noop job', flush=True); "
            f"time.sleep({int(noop_seconds)}); print(json.dumps({{'ok': True, 'seconds': {int(noop_seconds)}}}))"
        )
        return f"python -c {shlex.quote(script)}", {"env_vars": job_env(settings)}
    runtime_env = {"working_dir": working_dir(settings), "env_vars": job_env(settings)}
    if kind == "store":
        return f"python {TRAIN_STORE} --store {int(store)}{options}", runtime_env  # type: ignore[arg-type]
    if kind == "forecast":
        days = int(payload.get("days") or settings.horizon_days)
        return f"python {FORECAST} --days {days}" + (f" --stores {stores}" if stores else ""), runtime_env
    return f"python {TRAIN_ALL}{options}", runtime_env


def request_hash(payload: dict[str, Any]) -> str:
    """Stable hash of a request body, to detect an Idempotency-Key reused with a different body."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if isinstance(value, (int, float)) and value > 0 else None


def _result_from_logs(logs: str) -> dict[str, Any] | None:
    """The last log line that is a JSON object (jobs print their summary as one JSON line last)."""
    for line in reversed(logs.strip().splitlines()[-200:]):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def get_job(settings: Settings, client: Client, job_id: str) -> dict[str, Any]:
    """The client's job record (404 for unknown ids and for other clients' jobs alike)."""
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        cur.execute(
            f"SELECT * FROM {settings.table_training_jobs} WHERE id = %s AND client_id = %s", (job_id, client.id)
        )
        row = cur.fetchone()
    if row is None:
        raise ApiError(404, f"Training job {job_id} not found")
    return dict(row)


def list_jobs(settings: Settings, client: Client, limit: int, state: str | None) -> list[dict[str, Any]]:
    """The client's jobs, newest first."""
    sql = f"SELECT * FROM {settings.table_training_jobs} WHERE client_id = %s"
    args: list[Any] = [client.id]
    if state:
        sql += " AND state = %s"
        args.append(state)
    sql += " ORDER BY created_at DESC, id LIMIT %s"
    args.append(limit)
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        cur.execute(sql, args)
        return [dict(r) for r in cur.fetchall()]


def refresh(settings: Settings, ray: RayJobsClient, job: dict[str, Any]) -> dict[str, Any]:
    """Update an unfinished job from Ray and return the stored record.

    Finished jobs are returned as stored. When Ray is unreachable the stored record is returned unchanged
    (``refreshed_at`` tells how old it is). A job Ray no longer knows becomes ``LOST``.
    """
    if job["state"] not in ACTIVE_STATES:
        return job
    now = datetime.now(UTC)
    updates: dict[str, Any] = {"refreshed_at": now}
    try:
        info = ray.get(job["ray_submission_id"])
    except RayJobNotFound:
        updates.update(state="LOST", message="Ray no longer knows this job (cluster restarted?)", finished_at=now)
    except ApiError:
        return job
    else:
        state = str(info.get("status") or "PENDING").upper()
        updates.update(state=state, message=info.get("message"), started_at=_ms(info.get("start_time")))
        if state in TERMINAL_STATES:
            updates["finished_at"] = _ms(info.get("end_time")) or now
            try:
                logs = ray.logs(job["ray_submission_id"])
            except (ApiError, RayJobNotFound):
                logs = ""
            result = _result_from_logs(logs) or {}
            if state != "SUCCEEDED":
                result.update(
                    error_type=info.get("error_type"),
                    exit_code=info.get("driver_exit_code"),
                    log_tail="\n".join(logs.strip().splitlines()[-20:]),
                )
            updates["result"] = psycopg2.extras.Json(result)
    cols = ", ".join(f"{k} = %s" for k in updates)
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        # Only move forward: never overwrite a state another request already finalised.
        cur.execute(
            f"UPDATE {settings.table_training_jobs} SET {cols} WHERE id = %s AND state IN %s RETURNING *",
            [*updates.values(), job["id"], ACTIVE_STATES],
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(f"SELECT * FROM {settings.table_training_jobs} WHERE id = %s", (job["id"],))
            row = cur.fetchone()
    return dict(row)


def submit(
    settings: Settings,
    ray: RayJobsClient,
    client: Client,
    payload: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Submit a training job for ``client``, or return the job an earlier request with the same key started.

    Per-client submissions are serialised by locking the client's row, so the idempotency check, the limit
    checks, the Ray submission and the insert happen as one unit.

    Returns:
        (job record, created) - created is False for an idempotent replay.

    Raises:
        ApiError: 409 key reused with another body, 429 over a limit (with Retry-After), 503 Ray unreachable.
    """
    digest = request_hash(payload)
    t = settings.table_training_jobs
    # Refresh this client's unfinished jobs first so that finished ones stop counting against the limit.
    for job in list_jobs(settings, client, settings.api_max_concurrent_jobs + 20, None):
        if job["state"] in ACTIVE_STATES:
            refresh(settings, ray, job)
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        cur.execute(f"SELECT id FROM {settings.table_api_clients} WHERE id = %s FOR UPDATE", (client.id,))
        if idempotency_key is not None:
            cur.execute(f"SELECT * FROM {t} WHERE client_id = %s AND idempotency_key = %s", (client.id, idempotency_key))
            existing = cur.fetchone()
            if existing is not None:
                if existing["request_hash"].strip() != digest:
                    raise ApiError(
                        409,
                        "Idempotency-Key was already used with a different request body",
                        details=[ErrorDetail(field="header.idempotency-key", message="reused with a different body")],
                    )
                return dict(existing), False
        cur.execute(
            f"SELECT count(*) AS n FROM {t} WHERE client_id = %s AND state IN %s", (client.id, ACTIVE_STATES)
        )
        if cur.fetchone()["n"] >= settings.api_max_concurrent_jobs:
            raise ApiError(
                429,
                f"Too many unfinished training jobs: the limit is {settings.api_max_concurrent_jobs} per client "
                "(SFMLOPS_API_MAX_CONCURRENT_JOBS); wait for one to finish or stop one",
                headers={"Retry-After": "30"},
            )
        since = datetime.now(UTC) - timedelta(hours=1)
        cur.execute(
            f"SELECT count(*) AS n, min(created_at) AS oldest FROM {t} WHERE client_id = %s AND created_at > %s",
            (client.id, since),
        )
        window = cur.fetchone()
        if window["n"] >= settings.api_max_jobs_per_hour:
            retry = max(1, int((window["oldest"] - since).total_seconds()) + 1)
            raise ApiError(
                429,
                f"Too many training submissions: the limit is {settings.api_max_jobs_per_hour} per hour "
                "(SFMLOPS_API_MAX_JOBS_PER_HOUR)",
                headers={"Retry-After": str(retry)},
            )
        job_id = f"sfm-{uuid.uuid4().hex}"
        entrypoint, runtime_env = build_submission(settings, payload)
        cur.execute(
            f"INSERT INTO {t} (id, client_id, kind, store, params, entrypoint, ray_submission_id, state,"
            " idempotency_key, request_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, 'PENDING', %s, %s) RETURNING *",
            (
                job_id,
                client.id,
                payload["kind"],
                payload.get("store"),
                psycopg2.extras.Json(payload),
                entrypoint,
                job_id,
                idempotency_key,
                digest,
            ),
        )
        row = dict(cur.fetchone())
        # Submit last: if Ray refuses or is unreachable the transaction rolls back and nothing is recorded.
        ray.submit(
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=runtime_env,
            metadata={"client": client.name, "kind": payload["kind"], "sfmlops_job_id": job_id},
        )
    return row, True


def stop(settings: Settings, ray: RayJobsClient, client: Client, job_id: str) -> tuple[dict[str, Any], bool]:
    """Ask Ray to stop the client's job; returns (refreshed record, stop initiated)."""
    job = refresh(settings, ray, get_job(settings, client, job_id))
    if job["state"] not in ACTIVE_STATES:
        raise ApiError(409, f"Training job {job_id} already finished ({job['state']})")
    try:
        stopped = ray.stop(job["ray_submission_id"])
    except RayJobNotFound:
        stopped = False
    return refresh(settings, ray, job), stopped


def logs(settings: Settings, ray: RayJobsClient, client: Client, job_id: str) -> str:
    """The job's driver log from Ray (404 when Ray no longer has it)."""
    job = get_job(settings, client, job_id)
    try:
        return ray.logs(job["ray_submission_id"])
    except RayJobNotFound as exc:
        raise ApiError(404, f"Logs of training job {job_id} are no longer available from Ray") from exc
