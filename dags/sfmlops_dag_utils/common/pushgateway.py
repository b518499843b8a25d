"""What the Airflow DAGs' tasks push to the Pushgateway: the outcome, duration and rows of each ingestion,
training and forecast task (job ``sfmlops_dag``, grouped by DAG and task).

Standard library only: the DAG bundle (MWAA, ``.venv-airflow``) has no prometheus-client and cannot import
``app``, so this module (vendored into ``dags/sfmlops_dag_utils/common/`` like the rest of ``app/common``)
renders Prometheus' text format itself and PUTs it, as prometheus-client's ``push_to_gateway`` does for the
other short-lived jobs (``app.monitoring.metrics.push``). The names are listed in monitoring/README.md with
the others; like every push, a failure is logged and returns False, never failing the task.
"""

from __future__ import annotations

import base64
import logging
import math
import time
import urllib.request
from collections.abc import Mapping

log = logging.getLogger(__name__)

#: Pushgateway job of the DAG tasks.
DAG_JOB = "sfmlops_dag"
#: ``kind`` label values: what the task does.
DAG_TASK_KINDS = ("ingest", "training", "forecast")
#: ``outcome`` label values.
OUTCOMES = ("succeeded", "failed")
#: Metric name -> help of every family pushed here.
DAG_METRICS = {
    "sfmlops_dag_task_last_run_timestamp_seconds": "Unix time a DAG task last ended, by outcome (only the last outcome is present)",
    "sfmlops_dag_task_seconds": "Seconds of the last run of a DAG task (for a job it waited on: the job's run time)",
    "sfmlops_dag_task_rows": "Rows of the last run of a DAG task by what (upserted, rejected, dead_letters, forecast rows, stores)",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    number = "NaN" if math.isnan(value) else ("+Inf" if value == math.inf else repr(float(value)))
    return f"{name}{{{body}}} {number}\n"


def dag_task_text(
    dag: str, task: str, kind: str, outcome: str, seconds: float, rows: Mapping[str, float] | None = None,
    now: float | None = None,
) -> str:
    """One DAG task run in Prometheus' text exposition format (0.0.4)."""
    if kind not in DAG_TASK_KINDS:
        raise ValueError(f"kind must be one of {DAG_TASK_KINDS}, got {kind!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    base = {"dag": dag, "task": task, "kind": kind}
    families = {
        "sfmlops_dag_task_last_run_timestamp_seconds": [({**base, "outcome": outcome}, time.time() if now is None else now)],
        "sfmlops_dag_task_seconds": [(base, float(seconds))],
        "sfmlops_dag_task_rows": [({**base, "what": str(what)}, float(n)) for what, n in sorted((rows or {}).items())],
    }
    text = ""
    for name, samples in families.items():
        if samples:
            text += f"# HELP {name} {DAG_METRICS[name]}\n# TYPE {name} gauge\n"
            text += "".join(_sample(name, labels, value) for labels, value in samples)
    return text


def group_url(base_url: str, job: str, grouping_key: Mapping[str, str]) -> str:
    """The Pushgateway URL of a group (label values base64url-encoded, so any value is safe in the path)."""

    def b64(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode() or "="

    path = f"/metrics/job@base64/{b64(job)}" + "".join(f"/{k}@base64/{b64(str(v))}" for k, v in grouping_key.items())
    return base_url.rstrip("/") + path


def push_text(base_url: str | None, job: str, grouping_key: Mapping[str, str], text: str, timeout_s: float = 2.0) -> bool:
    """PUT ``text`` as the group ``job`` + ``grouping_key`` (replacing its last push). False (logged) when
    ``base_url`` is empty or ``off``, or the push fails."""
    if not base_url or base_url.strip().lower() == "off":
        return False
    url = group_url(base_url.strip(), job, grouping_key)
    request = urllib.request.Request(
        url, data=text.encode(), method="PUT", headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # a configured http(s) URL
            return 200 <= resp.status < 300
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, timeouts: report, never fail the task
        log.warning("metrics push of %s %s to %s failed: %s", job, dict(grouping_key), base_url, exc)
        return False


def push_dag_task(
    base_url: str | None, dag: str, task: str, kind: str, outcome: str, seconds: float,
    rows: Mapping[str, float] | None = None, timeout_s: float = 2.0,
) -> bool:
    """Push one DAG task run (job ``sfmlops_dag``, grouped by ``dag`` and ``task``)."""
    text = dag_task_text(dag, task, kind, outcome, seconds, rows)
    return push_text(base_url, DAG_JOB, {"dag": dag, "task": task}, text, timeout_s)
