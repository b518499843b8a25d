"""DAG tasks push their outcome to the Pushgateway (``common/pushgateway.py``: job ``sfmlops_dag``, grouped by
DAG and task), so Prometheus and its alerts see the work of every DAG run, whichever backend ran it.

The address is the run-time setting ``pushgateway_url`` (``SFMLOPS_DAG_PUSHGATEWAY_URL`` / Variable
``sfmlops_pushgateway_url`` / ``[sfmlops] pushgateway_url`` of Airflow's configuration; empty or ``off`` = no pushing;
``sfmlops up --with-airflow`` sets the local one, Terraform MWAA's configuration option). A push that fails is
logged and never fails the task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sfmlops_dag_utils.common.pushgateway import push_dag_task


def _url_and_timeout() -> tuple[str, float]:
    from sfmlops_dag_utils.config import lookup

    try:
        timeout = float(lookup("metrics_push_timeout_s"))
    except ValueError:
        timeout = 2.0
    return lookup("pushgateway_url"), timeout


def push(dag: str, task: str, kind: str, outcome: str, seconds: float, rows: dict[str, float] | None = None) -> bool:
    """Push one task run (see :func:`sfmlops_dag_utils.common.pushgateway.push_dag_task`)."""
    url, timeout = _url_and_timeout()
    return push_dag_task(url, dag, task, kind, outcome, seconds, rows, timeout)


@contextmanager
def task_metrics(dag: str, task: str, kind: str, started: float | None = None) -> Iterator[dict[str, float]]:
    """Time the body and push its outcome: ``failed`` when it raises (the error goes on), else ``succeeded``.

    Yields a dict the body fills with its row counts (``{"upserted": n, ...}``). ``started`` (Unix time) is
    when the measured work began, if before the body (default: now).
    """
    began = time.time() if started is None else started
    rows: dict[str, float] = {}
    outcome = "failed"
    try:
        yield rows
        outcome = "succeeded"
    finally:
        push(dag, task, kind, outcome, max(0.0, time.time() - began), rows)


def outcome_callbacks(dag: str, kind: str) -> dict[str, Callable[[Any], None]]:
    """``on_success_callback`` / ``on_failure_callback`` that push the task's outcome, for an operator whose work
    runs elsewhere and which :func:`task_metrics` cannot wrap (``sales_ingest_daily.ingest_aws``: the EMR Serverless
    job run; a failed run, or one the operator could not start, pushes ``failed``). Use as ``Operator(...,
    **outcome_callbacks(DAG_ID, "ingest"))``. Seconds: since the task instance started (its first try when
    deferred); the failure callback runs once the last try failed. A push never fails the callback."""

    def callback(outcome: str) -> Callable[[Any], None]:
        def push_outcome(context: Any) -> None:  # Airflow's task context (a mapping)
            ti = context.get("ti") or context.get("task_instance")
            start = getattr(ti, "start_date", None)
            seconds = max(0.0, time.time() - start.timestamp()) if isinstance(start, datetime) else 0.0
            push(dag, str(getattr(ti, "task_id", "unknown")), kind, outcome, seconds)

        return push_outcome

    return {"on_success_callback": callback("succeeded"), "on_failure_callback": callback("failed")}


def job_seconds(job: dict[str, Any]) -> float:
    """A finished API job's run time (started or created -> finished), 0 when unknown."""
    try:
        begin = datetime.fromisoformat(str(job.get("started_at") or job.get("created_at")))
        end = datetime.fromisoformat(str(job.get("finished_at")))
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, (end - begin).total_seconds())


def job_rows(result: dict[str, Any] | None) -> dict[str, float]:
    """The row counts a job's result reports (a forecast's ``rows``, ``written``, ``stores``)."""
    return {k: float(v) for k, v in (result or {}).items() if k in ("rows", "written", "stores") and isinstance(v, (int, float))}
