"""Training-job bookkeeping: submission with idempotency and per-client limits, refresh from Ray.

Job records live in Postgres (``settings.table_training_jobs``); the Ray submission id equals the job id,
so a job can always be traced in Ray and its history survives a Ray restart.

Record first, then submit: a job row is committed in state ``SUBMITTING`` before Ray hears of the job, under
an id derived from (client, Idempotency-Key) when the request has a key. Ray refuses a second submission
with an id it already has, and that answer counts as success, so a timeout or a lost answer can never leave
a job on Ray that the API does not know (and count against the client's limits), and a retry can never
start a second one. A ``SUBMITTING`` job is submitted again (same id) whenever it is read or replayed,
until Ray confirms it (``PENDING``) or refuses it (``FAILED``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from app.api import db
from app.api.auth import Client
from app.api.errors import ApiError, ErrorDetail
from app.api.ray_jobs import RayJobExists, RayJobNotFound, RayJobsClient, RayUnreachable
from app.common.jobs import ACTIVE_STATES as _ACTIVE
from app.common.jobs import RAY_FINISHED_STATES, JobState, last_json_object
from app.config import Settings

log = logging.getLogger("app.api.jobs")

#: Unfinished states (see :class:`app.common.jobs.JobState`), as plain strings for SQL parameters.
ACTIVE_STATES = tuple(state.value for state in _ACTIVE)
#: Most characters kept of a failed job's log tail, of the JSON line read as a job's result and of Ray's
#: status message: a job list (up to 100 jobs) must stay far below Lambda's 6 MB response limit.
LOG_TAIL_CHARS = 4000
RESULT_LINE_CHARS = 16 * 1024
MESSAGE_CHARS = 2000
TRAIN_ALL = "ray_cluster/jobs/train_all.py"
TRAIN_STORE = "ray_cluster/jobs/train_store.py"
FORECAST = "ray_cluster/jobs/forecast.py"
NOOP = "app.jobs.noop"  #: the test job (kind=noop), run as ``python -m``
#: Settings passed to the job as SFMLOPS_* env vars (addresses only; secrets come from the Ray nodes' env,
#: or from the database secret's ARN, which the nodes' role may read).
JOB_ENV_SETTINGS = (
    "profile",
    "pg_host",
    "pg_port",
    "pg_database",
    "pg_user",
    "pg_secret_arn",
    "mlflow_username",
    "mlflow_auth_secret_arn",  # the job reads the MLflow credentials itself (its role may read the secret)
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
    # On AWS jobs run as their own database role / MLflow user (secrets their instance role may read).
    for name, job_name in (("pg_secret_arn", "job_pg_secret_arn"), ("mlflow_auth_secret_arn", "job_mlflow_auth_secret_arn")):
        if getattr(settings, job_name):
            env[f"SFMLOPS_{name.upper()}"] = getattr(settings, job_name)
    # Always passed: empty is real AWS, while a job without it would take the app's default, the emulator's URL.
    env["SFMLOPS_AWS_ENDPOINT_URL"] = settings.aws_endpoint_url or ""
    if settings.aws_endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.aws_endpoint_url
    return env


def build_submission(settings: Settings, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Entrypoint and runtime_env for one job request (see ``ray_cluster/jobs/`` and :mod:`app.jobs.noop` for the
    options); the entrypoint is a shell line of shlex-quoted arguments."""
    kind, store, noop_seconds = payload["kind"], payload.get("store"), payload.get("noop_seconds") or 0
    stores = ",".join(str(int(s)) for s in payload.get("stores") or [])
    options: list[str] = []
    if stores:
        options += ["--stores", stores]
    if payload.get("lgbm_rounds"):
        options += ["--lgbm-rounds", str(int(payload["lgbm_rounds"]))]
    if payload.get("max_steps"):
        options += ["--max-steps", str(int(payload["max_steps"]))]
    if payload.get("neural") is False:
        options += ["--no-neural"]
    runtime_env = {"working_dir": working_dir(settings), "env_vars": job_env(settings)}
    if kind == "noop":
        # Locally the package is installed where Ray runs (no job zip needed); on AWS it comes with the job zip.
        env = runtime_env if settings.profile != "local" else {"env_vars": runtime_env["env_vars"]}
        return shlex.join(["python", "-m", NOOP, "--seconds", str(int(noop_seconds))]), env
    if kind == "store":
        return shlex.join(["python", TRAIN_STORE, "--store", str(int(store)), *options]), runtime_env  # type: ignore[arg-type]
    if kind == "forecast":
        days = int(payload.get("days") or settings.horizon_days)
        return shlex.join(["python", FORECAST, "--days", str(days), *(["--stores", stores] if stores else [])]), runtime_env
    return shlex.join(["python", TRAIN_ALL, *options]), runtime_env


def request_hash(payload: dict[str, Any]) -> str:
    """Stable hash of a request body, to detect an Idempotency-Key reused with a different body."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if isinstance(value, (int, float)) and value > 0 else None


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

    A ``SUBMITTING`` job is submitted again first (see the module doc). Finished jobs are returned as
    stored. When Ray is unreachable the stored record is returned unchanged (``refreshed_at`` tells how old
    it is). A job Ray no longer knows becomes ``LOST``. A finished job is only finalised once its logs (where
    its result is) were read.
    """
    if job["state"] == JobState.SUBMITTING:
        job = _send(settings, ray, job["id"], fresh=False) or job
    if job["state"] not in ACTIVE_STATES or job["state"] == JobState.SUBMITTING:
        return job
    now = datetime.now(UTC)
    updates: dict[str, Any] = {"refreshed_at": now}
    try:
        info = ray.get(job["ray_submission_id"])
    except RayJobNotFound:
        updates.update(state=JobState.LOST, message="Ray no longer knows this job (cluster restarted?)", finished_at=now)
    except ApiError:
        return job
    else:
        state = str(info.get("status") or JobState.PENDING).upper()
        message = info.get("message")
        updates.update(
            state=state, message=message[:MESSAGE_CHARS] if isinstance(message, str) else None,
            started_at=_ms(info.get("start_time")),
        )
        if state in RAY_FINISHED_STATES:
            updates["finished_at"] = _ms(info.get("end_time")) or now
            try:
                logs = ray.logs(job["ray_submission_id"])
            except RayJobNotFound:
                logs = ""
            except ApiError:
                # The result is the log's last JSON line: finalising now would store an empty result for good.
                # The job stays as stored and a later read (Ray answering again) finalises it.
                log.warning("job %s finished but Ray did not return its logs; finalised on a later read", job["id"])
                return job
            # Lines longer than RESULT_LINE_CHARS are skipped: the result is stored and listed with every job.
            result = last_json_object(logs, max_line_chars=RESULT_LINE_CHARS) or {}
            if state != JobState.SUCCEEDED:
                result.update(
                    error_type=info.get("error_type"),
                    exit_code=info.get("driver_exit_code"),
                    log_tail="\n".join(logs.strip().splitlines()[-20:])[-LOG_TAIL_CHARS:],
                )
            updates["result"] = Jsonb(result)
    cols = ", ".join(f"{k} = %s" for k in updates)
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        # Only move forward: never overwrite a state another request already finalised.
        cur.execute(
            f"UPDATE {settings.table_training_jobs} SET {cols} WHERE id = %s AND state = ANY(%s) RETURNING *",
            [*updates.values(), job["id"], list(ACTIVE_STATES)],
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(f"SELECT * FROM {settings.table_training_jobs} WHERE id = %s", (job["id"],))
            row = db.one_row(cur)
    return row


def job_id_for(settings: Settings, client: Client, idempotency_key: str | None) -> str:
    """The id (and Ray submission id) of a new job: derived from (client, Idempotency-Key) when there is a key,
    so every retry of one request names the same Ray job; random otherwise (the row is written first)."""
    if idempotency_key is None:
        return f"sfm-{uuid.uuid4().hex}"
    scope = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_database}/{settings.table_training_jobs}"
    return "sfm-" + hashlib.sha256(f"{scope}|{client.id}|{idempotency_key}".encode()).hexdigest()[:32]


def _lock_client(cur: Any, settings: Settings, client_id: int) -> None:
    cur.execute(f"SELECT id FROM {settings.table_api_clients} WHERE id = %s FOR UPDATE", (client_id,))


def _send(settings: Settings, ray: RayJobsClient, job_id: str, *, fresh: bool) -> dict[str, Any] | None:
    """Submit a ``SUBMITTING`` job to Ray under its own id and record the outcome; returns the stored row.

    Runs under the client's row lock, so submissions, reconciliations and stops of one client never interleave.
    Ray's "already exists" is success when that job is ours (same job id and request hash in its metadata).
    When Ray gives no answer the row stays ``SUBMITTING``; a fresh submission that certainly did not reach Ray
    (no connection, or Ray refused it) is deleted again and the error raised, as if it never happened.

    Raises:
        ApiError: only for ``fresh`` submissions that certainly did not start a job (503 / 502).
    """
    t = settings.table_training_jobs
    error: ApiError | None = None
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        cur.execute(f"SELECT client_id FROM {t} WHERE id = %s", (job_id,))
        owner = cur.fetchone()
        if owner is None:
            return None
        _lock_client(cur, settings, owner["client_id"])
        cur.execute(
            f"SELECT j.*, c.name AS client_name FROM {t} j JOIN {settings.table_api_clients} c ON c.id = j.client_id"
            " WHERE j.id = %s",
            (job_id,),
        )
        row = db.one_row(cur)
        client_name = row.pop("client_name")
        if row["state"] != JobState.SUBMITTING:
            return row
        _, runtime_env = build_submission(settings, row["params"])
        metadata = {
            "client": client_name,
            "kind": row["kind"],
            "sfmlops_job_id": job_id,
            "sfmlops_request_hash": row["request_hash"].strip(),
        }
        outcome: str = JobState.PENDING
        message: str | None = None
        try:
            ray.submit(entrypoint=row["entrypoint"], submission_id=row["ray_submission_id"], runtime_env=runtime_env, metadata=metadata)
        except RayJobExists:
            try:
                theirs = (ray.get(row["ray_submission_id"]).get("metadata") or {})
            except (ApiError, RayJobNotFound):
                theirs = None
            if theirs is None:
                outcome = JobState.SUBMITTING
                message = "Ray reports the submission id as taken but does not answer about it yet; retried when read"
            elif theirs.get("sfmlops_job_id") != job_id or theirs.get("sfmlops_request_hash") != metadata["sfmlops_request_hash"]:
                outcome, message = JobState.FAILED, "Ray already holds a different job under this submission id"
                log.error("job %s: Ray holds a foreign job under its submission id (metadata %s)", job_id, theirs)
        except RayUnreachable as exc:
            if fresh and not exc.maybe_received:
                outcome, error = "DELETE", exc
            else:
                outcome = JobState.SUBMITTING
                message = "Ray has not confirmed the submission yet; it is retried whenever the job is read"
                log.warning("job %s: submission unconfirmed: %s", job_id, exc.internal)
        except ApiError as exc:  # Ray answered and refused (it did not start the job)
            if fresh:
                outcome, error = "DELETE", exc
            else:
                outcome, message = JobState.FAILED, "Ray refused the submission"
                log.error("job %s: Ray refused the submission: %s", job_id, exc.internal or exc.message)
        now = datetime.now(UTC)
        if outcome == "DELETE":
            cur.execute(f"DELETE FROM {t} WHERE id = %s AND state = 'SUBMITTING'", (job_id,))
        else:
            finished = now if outcome == JobState.FAILED else None
            cur.execute(
                f"UPDATE {t} SET state = %s, message = %s, refreshed_at = %s, finished_at = %s"
                " WHERE id = %s AND state = 'SUBMITTING' RETURNING *",
                (outcome, message, now, finished, job_id),
            )
            row = db.one_row(cur)
    if error is not None:
        raise error
    return row


def submit(
    settings: Settings,
    ray: RayJobsClient,
    client: Client,
    payload: dict[str, Any],
    idempotency_key: str | None,
) -> tuple[dict[str, Any], bool]:
    """Submit a training job for ``client``, or return the job an earlier request with the same key started.

    The job row is committed (``SUBMITTING``) before Ray is called, and submitted under the client's row lock
    (see :func:`_send`); per-client submissions are serialised by that lock, so the idempotency check, the
    limit checks and the insert happen as one unit. A replay of a job that is still ``SUBMITTING`` submits it
    again under the same id.

    Returns:
        (job record, created) - created is False for an idempotent replay.

    Raises:
        ApiError: 409 key reused with another body, 429 over a limit (with Retry-After), 503 Ray unreachable
            (nothing recorded, nothing started).
    """
    digest = request_hash(payload)
    t = settings.table_training_jobs
    # Refresh this client's unfinished jobs first so that finished ones stop counting against the limit.
    for job in list_jobs(settings, client, settings.api_max_concurrent_jobs + 20, None):
        if job["state"] in ACTIVE_STATES:
            refresh(settings, ray, job)
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        _lock_client(cur, settings, client.id)
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
                existing = dict(existing)
        else:
            existing = None
        if existing is None:
            cur.execute(
                f"SELECT count(*) AS n FROM {t} WHERE client_id = %s AND state = ANY(%s)", (client.id, list(ACTIVE_STATES))
            )
            if db.one_row(cur)["n"] >= settings.api_max_concurrent_jobs:
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
            window = db.one_row(cur)
            if window["n"] >= settings.api_max_jobs_per_hour:
                retry = max(1, int((window["oldest"] - since).total_seconds()) + 1)
                raise ApiError(
                    429,
                    f"Too many training submissions: the limit is {settings.api_max_jobs_per_hour} per hour "
                    "(SFMLOPS_API_MAX_JOBS_PER_HOUR)",
                    headers={"Retry-After": str(retry)},
                )
            job_id = job_id_for(settings, client, idempotency_key)
            entrypoint, _ = build_submission(settings, payload)
            cur.execute(
                f"INSERT INTO {t} (id, client_id, kind, store, params, entrypoint, ray_submission_id, state,"
                " idempotency_key, request_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, 'SUBMITTING', %s, %s)"
                " RETURNING *",
                (
                    job_id,
                    client.id,
                    payload["kind"],
                    payload.get("store"),
                    Jsonb(payload),
                    entrypoint,
                    job_id,
                    idempotency_key,
                    digest,
                ),
            )
            row = db.one_row(cur)
    if existing is not None:
        if existing["state"] != JobState.SUBMITTING:
            return existing, False
        return _send(settings, ray, existing["id"], fresh=False) or existing, False
    # Committed: from here on the job is known (and counted) whatever happens to the call to Ray.
    return _send(settings, ray, row["id"], fresh=True) or row, True


def stop(settings: Settings, ray: RayJobsClient, client: Client, job_id: str) -> tuple[dict[str, Any], bool]:
    """Ask Ray to stop the client's job; returns (refreshed record, stop initiated)."""
    job = refresh(settings, ray, get_job(settings, client, job_id))
    if job["state"] not in ACTIVE_STATES:
        raise ApiError(409, f"Training job {job_id} already finished ({job['state']})")
    if job["state"] == JobState.SUBMITTING:
        # Ray has not confirmed it: stop it there in case it did get it, then finish the record, all under
        # the client's lock so that no reconciliation submits it in between.
        t = settings.table_training_jobs
        with db.connection(settings) as conn, db.cursor(conn) as cur:
            _lock_client(cur, settings, client.id)
            try:
                stopped = ray.stop(job["ray_submission_id"])
            except RayJobNotFound:
                stopped = False
            cur.execute(
                f"UPDATE {t} SET state = 'STOPPED', message = %s, finished_at = now(), refreshed_at = now()"
                " WHERE id = %s AND state = 'SUBMITTING'",
                ("Stopped before Ray confirmed the submission", job_id),
            )
        return refresh(settings, ray, get_job(settings, client, job_id)), stopped
    try:
        stopped = ray.stop(job["ray_submission_id"])
    except RayJobNotFound:
        stopped = False
    return refresh(settings, ray, job), stopped


def logs(settings: Settings, ray: RayJobsClient, client: Client, job_id: str) -> str:
    """The job's driver log from Ray (404 when Ray no longer has it; empty while Ray has not confirmed it)."""
    job = get_job(settings, client, job_id)
    try:
        return ray.logs(job["ray_submission_id"])
    except RayJobNotFound as exc:
        if job["state"] == JobState.SUBMITTING:
            return ""
        raise ApiError(404, f"Logs of training job {job_id} are no longer available from Ray") from exc


def log_page(text: str, *, offset: int | None, tail: int | None, max_bytes: int) -> tuple[str, int, int, int]:
    """One page of a log of at most ``max_bytes`` UTF-8 bytes: (page, start offset, end offset, total bytes).

    Offsets count bytes of the UTF-8 log and fall on character boundaries. With ``offset`` the page starts
    there (the next page starts at the returned end); without it the page is the end of the log - the last
    ``tail`` lines when given - cut to its last ``max_bytes``.
    """
    data = text.encode("utf-8", errors="replace")
    total = len(data)
    if offset is None:
        if tail:
            lines = data.splitlines(keepends=True)
            start = max(0, total - sum(len(line) for line in lines[-tail:]))
        else:
            start = 0
        start = max(start, total - max_bytes)
    else:
        start = min(offset, total)
    while 0 < start < total and (data[start] & 0xC0) == 0x80:  # inside a multi-byte character
        start += 1
    end = min(total, start + max_bytes)
    while start < end < total and (data[end] & 0xC0) == 0x80:
        end -= 1
    return data[start:end].decode("utf-8", errors="replace"), start, end, total
