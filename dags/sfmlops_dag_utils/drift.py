"""Live accuracy after each ingest, and an early retraining when the served model drifts (issue 18.4).

``score_accuracy``: ``POST /v1/accuracy/score`` - the API scores the stored forecasts of its model against
the sales that have landed, per version, day and horizon bucket, stores the scores and answers the drift
status (``drift`` is the flag of the current version, the one whose forecasts are served; the margin and the
number of days are the API's settings ``SFMLOPS_ACCURACY_DRIFT_MARGIN`` / ``SFMLOPS_ACCURACY_DRIFT_DAYS``).

``retrain_on_drift``: when the flag is up (and the run configuration's ``retrain_on_drift`` is true), submit
the weekly training's request (``training_request``) through ``POST /v1/training-jobs`` with an
Idempotency-Key of the DAG run, so a retried task never starts a second job.

Cool-down: drift lasts until the retrained version's forecasts have been served and scored for the drift
days, so without one every daily run would retrain again. A training of the same scope (the body's ``kind``
and set of ``stores``; the weekly run's counts too) that started less than ``retrain_cooldown_days`` ago and
did not fail (SUBMITTING, PENDING, RUNNING or SUCCEEDED) holds the retraining back; a FAILED, STOPPED or
LOST job does not (it produced no new version). The jobs are read from the API's jobs table
(``table_training_jobs``) over the DAG's Postgres connection, the one the data-quality task uses.

Only the standard library here: the functions take the ``SfmlopsApi`` client (any object with its
``request``/``submit_training`` methods).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

#: States of a job that hold an early retraining back during the cool-down (it did or may produce a version).
COOLDOWN_STATES = ("SUBMITTING", "PENDING", "RUNNING", "SUCCEEDED")
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def score_accuracy(api: Any) -> dict[str, Any]:  # SfmlopsApi
    """Score the stored forecasts against the new actuals; returns the API's answer (``status`` inside)."""
    return api.request("POST", "/v1/accuracy/score", json={})


def _scope(kind: Any, stores: Any) -> tuple[str, tuple[int, ...]]:  # JSON values
    """A training's scope: its kind and its set of stores (empty = every store)."""
    return str(kind or "all"), tuple(sorted({int(s) for s in stores or []}))


def recent_training(
    conn: Any, table: str, body: dict[str, Any], cooldown_days: int, now: datetime | None = None  # DB-API connection
) -> dict[str, Any] | None:
    """The newest job of ``body``'s scope that started in the last ``cooldown_days`` and did not fail, or None.

    Args:
        conn: A DB-API connection (psycopg2, the DAG's ``postgres_conn_id``) to the API's database.
        table: The API's jobs table (``table_training_jobs``).
        body: The training request that would be submitted (its ``kind`` and ``stores`` are the scope).
        cooldown_days: Length of the cool-down (0 = none: always None, nothing is read).
    """
    if cooldown_days <= 0:
        return None
    if not _IDENT.fullmatch(table):
        raise ValueError(f"table_training_jobs={table!r} is not a plain lower-case SQL identifier")
    since = (now or datetime.now(UTC)) - timedelta(days=cooldown_days)
    scope = _scope(body.get("kind"), body.get("stores"))
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT id, kind, params, state, COALESCE(started_at, created_at) AS started FROM {table}"
            " WHERE kind = %s AND state = ANY(%s) AND COALESCE(started_at, created_at) >= %s"
            " ORDER BY COALESCE(started_at, created_at) DESC, id",
            (scope[0], list(COOLDOWN_STATES), since),
        )
        rows = cur.fetchall()
    for job_id, kind, params, state, started in rows:
        params = json.loads(params) if isinstance(params, str) else (params or {})
        if _scope(kind, params.get("stores")) == scope:
            return {"id": job_id, "state": state, "started": started.isoformat()}
    return None


def retraining_decision(
    status: dict[str, Any], enabled: bool = True, recent: dict[str, Any] | None = None, cooldown_days: int = 0
) -> dict[str, Any]:
    """Whether to retrain now, from the drift status of ``POST /v1/accuracy/score`` (or ``GET /v1/accuracy``)
    and the newest training of the same scope in the cool-down (:func:`recent_training`).

    Returns:
        ``{"retrain": bool, "version", "reason"}`` (with ``recent_job`` when the cool-down held it back).
    """
    version = status.get("current_version")
    reason = str(status.get("reason") or "")
    if not status.get("drift"):
        return {"retrain": False, "version": version, "reason": f"no drift: {reason}"}
    if not enabled:
        return {"retrain": False, "version": version, "reason": f"drift, but retrain_on_drift is off: {reason}"}
    if recent is not None:
        return {
            "retrain": False, "version": version, "recent_job": recent,
            "reason": f"drift, but training job {recent['id']} of the same scope started {recent['started']} ({recent['state']}),"
                      f" within the {cooldown_days}-day cool-down (retrain_cooldown_days): {reason}",
        }
    return {"retrain": True, "version": version, "reason": f"drift: {reason}"}


def retrain_on_drift(
    api: Any,  # SfmlopsApi
    status: dict[str, Any],
    body: dict[str, Any],
    idempotency_key: str,
    enabled: bool = True,
    recent: Any = None,  # a callable () -> recent_training(...) result, called only on drift
    cooldown_days: int = 0,
) -> dict[str, Any]:
    """Submit ``body`` as a training job when :func:`retraining_decision` says so.

    ``recent`` (a callable returning :func:`recent_training`'s answer) is asked only when there is drift and
    retraining is on, so a calm day reads nothing.

    Returns:
        The decision, with ``job`` (the API's answer) when a training was submitted.
    """
    held = recent() if recent is not None and status.get("drift") and enabled else None
    decision = retraining_decision(status, enabled, held, cooldown_days)
    if decision["retrain"]:
        decision["job"] = api.submit_training(body, idempotency_key)
        decision["request"] = body
    return decision
