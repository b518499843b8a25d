"""Every metric sfmlops defines, in one place (names and meanings are listed in monitoring/README.md).

Three kinds of producers:

* the API process (long-lived): metrics in prometheus-client's default registry, served at ``GET /metrics``
  (:class:`RequestMetrics`, called by the API's one ASGI middleware, times every request; its per-request
  work is one dict lookup and one ``Histogram.observe``);
* short-lived jobs (the Spark driver, ``sfmlops produce``, training runs on Ray or in-process): they push a
  registry of their own to the Pushgateway (:func:`push`), grouped by job and a key, so Prometheus scrapes
  the last figures of every run after it has ended. A push that fails is logged and never fails the job;
* the exporter (``python -m app.monitoring.exporter``): figures read from Postgres and Kafka at scrape time
  (:mod:`app.monitoring.exporter`).

The Airflow DAG tasks push too (job ``sfmlops_dag``), but their runtime has neither prometheus-client nor
``app``: their metrics are defined and pushed by :mod:`app.common.pushgateway` (standard library, vendored
into the DAG bundle).

Only prometheus-client is imported here: the module ships in the Lambda package with the API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from app.common.spark import kafka_offsets

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)

PREFIX = "sfmlops_"
disable_created_metrics()  # no *_created series: half the series per counter/histogram, nothing the rules use

# --- API (default registry, scraped at /metrics) ------------------------------------------------------------
#: Seconds buckets of the request histogram (the API's p50 is ~1-3 ms, its p99 target 50 ms).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
API_REQUEST_SECONDS = Histogram(
    "sfmlops_api_request_duration_seconds",
    "API request latency by route template, method and status (its _count is the request counter)",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
API_AUTH_FAILURES = Counter(
    "sfmlops_api_auth_failures_total", "Requests refused with 401 (missing, unknown or revoked API key)", ["route"]
)
API_RATE_LIMITED = Counter(
    "sfmlops_api_rate_limited_total", "Requests refused with 429 (per-client rate or job limits)", ["route"]
)
API_RAY_SUBMISSION_FAILURES = Counter(
    "sfmlops_api_ray_submission_failures_total", "Job submissions the Ray Jobs API refused or never answered", ["reason"]
)
#: Route label of requests no route matched (keeps the label set bounded against path scanning).
UNMATCHED = "unmatched"


class RequestMetrics:
    """What the API's one ASGI middleware (:class:`app.api.main.ApiMiddleware`) records per HTTP request:
    its latency under its route template, method and status, and the 401/429 counters.

    The route template is read from the scope after the app ran (Starlette stores the matched route there);
    the histogram child of each (route, method, status) is cached in a plain dict, so a request costs one
    dict lookup and one observe (prometheus-client's own per-value lock, uncontended on the event loop).
    """

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], Any] = {}

    def _child(self, route: str, method: str, status: int) -> Any:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = API_REQUEST_SECONDS.labels(route, method, str(status))
            if status == 401:
                API_AUTH_FAILURES.labels(route)  # the series exists (at 0) once its route was seen
            elif status == 429:
                API_RATE_LIMITED.labels(route)
        return child

    def observe(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        """Record one request of ``scope`` answered with ``status`` after ``seconds``."""
        route = scope.get("route")
        name = getattr(route, "path", None) or UNMATCHED
        self._child(name, scope.get("method", ""), status).observe(seconds)
        if status == 401:
            API_AUTH_FAILURES.labels(name).inc()
        elif status == 429:
            API_RATE_LIMITED.labels(name).inc()


def ray_submission_failed(exc: BaseException) -> None:
    """Count one failed Ray submission (called by :meth:`app.api.ray_jobs.RayJobsClient.submit`)."""
    API_RAY_SUBMISSION_FAILURES.labels(type(exc).__name__).inc()


# --- pushing (short-lived jobs) -----------------------------------------------------------------------------
def push(settings: Settings, registry: CollectorRegistry, job: str, grouping_key: dict[str, str]) -> bool:
    """PUT ``registry`` to the Pushgateway under ``job`` + ``grouping_key`` (replacing that group's last push).

    Returns False (and logs a warning) when pushing is off (``SFMLOPS_PUSHGATEWAY_URL=off``) or fails: metrics
    never fail the job that reports them.
    """
    from prometheus_client import push_to_gateway

    url = settings.pushgateway_base_url
    if not url:
        return False
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key=grouping_key, timeout=settings.metrics_push_timeout_s)
        return True
    except Exception as exc:  # noqa: BLE001 - URLError, timeouts, HTTP errors: report, never fail the job
        log.warning("metrics push of %s %s to %s failed: %s", job, grouping_key, url, exc)
        return False


class IngestMetrics:
    """What the Spark streaming driver pushes (job ``sfmlops_ingest``, grouped by topic) after each micro-batch.

    Counters are cumulative over this driver's run (``increase()`` handles the reset of the next run); the
    gauges hold the last micro-batch and, from :meth:`progress`, the query's per-partition offsets.
    """

    JOB = "sfmlops_ingest"
    KINDS = ("in", "valid", "rejected", "upserted")

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        r = self.registry = CollectorRegistry()
        self.rows = Counter(
            "sfmlops_ingest_rows_total",
            "Rows of committed micro-batches by kind (in, valid, rejected, upserted)",
            ["topic", "kind"],
            registry=r,
        )
        self.batches = Counter("sfmlops_ingest_batches_total", "Micro-batches committed", ["topic"], registry=r)
        self.batch_rows = Gauge("sfmlops_ingest_batch_rows", "Rows of the last committed micro-batch by kind", ["topic", "kind"], registry=r)
        self.batch_seconds = Gauge(
            "sfmlops_ingest_batch_seconds",
            "Seconds of the last micro-batch by stage (prepare, stage, commit)",
            ["topic", "stage"],
            registry=r,
        )
        self.last_batch = Gauge("sfmlops_ingest_last_batch_timestamp_seconds", "Unix time the last micro-batch committed", ["topic"], registry=r)
        self.committed = Gauge(
            "sfmlops_ingest_committed_offset",
            "Next Kafka offset the query will read, per partition (its committed progress)",
            ["topic", "partition"],
            registry=r,
        )
        self.lag = Gauge(
            "sfmlops_ingest_consumer_lag",
            "Kafka records not yet read by the query, per partition (latest offset - committed progress)",
            ["topic", "partition"],
            registry=r,
        )
        for kind in self.KINDS:
            self.rows.labels(topic, kind)

    def batch(self, rows_in: int, rejected: int, upserted: int, prepare_s: float, stage_s: float, commit_s: float) -> bool:
        """Record one committed micro-batch and push."""
        t = self.topic
        figures = {"in": rows_in, "valid": rows_in - rejected, "rejected": rejected, "upserted": upserted}
        for kind, value in figures.items():
            self.rows.labels(t, kind).inc(value)
            self.batch_rows.labels(t, kind).set(value)
        for stage, seconds in (("prepare", prepare_s), ("stage", stage_s), ("commit", commit_s)):
            self.batch_seconds.labels(t, stage).set(seconds)
        self.batches.labels(t).inc()
        self.last_batch.labels(t).set_to_current_time()
        return self.push()

    def progress(self, end_offset: object, latest_offset: object) -> bool:
        """Record a query progress' source offsets (Spark's ``{"topic": {"partition": offset}}``, see
        :func:`app.common.spark.kafka_offsets`) and push (the job's query listener calls it)."""
        end = kafka_offsets(end_offset).get(self.topic, {})
        latest = kafka_offsets(latest_offset).get(self.topic, {})
        if not end:
            return False
        for partition, offset in end.items():
            self.committed.labels(self.topic, partition).set(offset)
            if partition in latest:
                self.lag.labels(self.topic, partition).set(max(0, latest[partition] - offset))
        return self.push()

    def push(self) -> bool:
        return push(self.settings, self.registry, self.JOB, {"topic": self.topic})


def push_producer(settings: Settings, summary: dict[str, Any]) -> bool:
    """Push one ``sfmlops produce`` run (job ``sfmlops_producer``, grouped by topic and mode)."""
    r = CollectorRegistry()
    labels = [summary["topic"], summary["mode"]]
    for name, help_, key in (
        ("sfmlops_producer_sent", "Records acknowledged by Kafka in the last producer run", "sent"),
        ("sfmlops_producer_failed", "Records Kafka refused or that timed out in the last producer run", "failed"),
        ("sfmlops_producer_invalid", "Rows the producer's validation kept out of Kafka in the last run", "invalid"),
        ("sfmlops_producer_rate", "Records per second acknowledged in the last producer run", "rate"),
        ("sfmlops_producer_seconds", "Wall seconds of the last producer run", "seconds"),
    ):
        Gauge(name, help_, ["topic", "mode"], registry=r).labels(*labels).set(float(summary.get(key) or 0))
    Gauge(
        "sfmlops_producer_last_run_timestamp_seconds",
        "Unix time the last producer run ended",
        ["topic", "mode"],
        registry=r,
    ).labels(*labels).set_to_current_time()
    return push(settings, r, "sfmlops_producer", {"topic": summary["topic"], "mode": summary["mode"]})


#: Outcome label values of ``sfmlops_training_runs`` / the gate.
TRAINING_OUTCOMES = ("succeeded", "failed")


def push_training(settings: Settings, scope: str, summary: dict[str, Any] | None, error: BaseException | None = None) -> bool:
    """Push one training run (job ``sfmlops_training``, grouped by scope: ``all`` or a store list).

    ``summary`` is :func:`app.forecasting.pipeline.train`'s result (stage seconds, backtest table, gate);
    with ``error`` the run failed and only the outcome is pushed.
    """
    r = CollectorRegistry()
    outcome = "failed" if error is not None else "succeeded"
    Gauge(
        "sfmlops_training_last_run_timestamp_seconds",
        "Unix time the last training run ended, by outcome",
        ["scope", "outcome"],
        registry=r,
    ).labels(scope, outcome).set_to_current_time()
    if error is None and summary is not None:
        stage = Gauge("sfmlops_training_stage_seconds", "Seconds of each stage of the last successful training run", ["scope", "stage"], registry=r)
        for name, seconds in (summary.get("seconds") or {}).items():
            stage.labels(scope, str(name)).set(float(seconds))
        rmspe = Gauge(
            "sfmlops_training_candidate_rmspe",
            "Backtest RMSPE of each candidate and baseline of the last run, by horizon",
            ["scope", "model", "horizon"],
            registry=r,
        )
        for horizon, rows in (summary.get("backtest") or {}).items():
            for row in rows or []:
                if row.get("rmspe") is not None and row.get("model") is not None:
                    rmspe.labels(scope, str(row["model"]), str(horizon)).set(float(row["rmspe"]))
        gate = summary.get("gate")
        if gate is not None:
            promoted = _gate_promoted(gate)
            Gauge(
                "sfmlops_training_gate_promoted",
                "1 if the last run's gate moved the champion alias, else 0",
                ["scope"],
                registry=r,
            ).labels(scope).set(1.0 if promoted else 0.0)
    return push(settings, r, "sfmlops_training", {"scope": scope})


def _gate_promoted(gate: Any) -> bool:
    """Whether a gate result (a dict with ``promoted``/``decision``, or a string) promoted the candidate."""
    if isinstance(gate, dict):
        if "promoted" in gate:
            return bool(gate["promoted"])
        gate = gate.get("decision") or gate.get("outcome") or ""
    return str(gate).lower().endswith("champion")  # champion / scope_champion (challenger: not moved)


def training_scope(stores: Iterable[int] | None) -> str:
    """The ``scope`` label of a training run: ``all`` or its first stores (bounded length)."""
    ids = list(stores or [])
    if not ids:
        return "all"
    text = ",".join(str(s) for s in ids[:8])
    return text + (f"+{len(ids) - 8}" if len(ids) > 8 else "")


async def metrics_endpoint(request: Any) -> Any:
    """``GET /metrics`` of the API: the default registry in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
    from starlette.responses import Response

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
