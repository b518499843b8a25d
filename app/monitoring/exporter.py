"""The sfmlops exporter: figures that live in Postgres and Kafka, read at scrape time.

``python -m app.monitoring.exporter`` serves ``http://bind_host:exporter_port/metrics`` (the local stack's
``exporter`` service). Each scrape runs a handful of aggregate queries on one kept connection:

* forecast freshness: age of the newest forecast per store of ``settings.model_name``, and the stores that
  lack a forecast for one of the next ``forecast_coverage_days`` days after the newest actuals (the day
  the batch forecast's horizon starts; with live data that is today);
* the ingest ledger (every committed micro-batch, whoever ran it: EMR or local): rows by kind, last commit;
* training jobs submitted through the API: count by kind and state, last finish time and duration by state;
* live accuracy (``table_accuracy``, when present): newest day's RMSPE and the backtest RMSPE per model
  version, and the drift flag (the newest ``accuracy_drift_days`` scored days all worse than backtest x
  (1 + ``accuracy_drift_margin``));
* Kafka: the end offset of every partition of the sales topic (lag = end offset - the query's committed
  offset, pushed by the streaming driver: recording rule ``sfmlops:ingest_consumer_lag``).

A source that fails sets ``sfmlops_exporter_source_up{source}`` to 0 instead of failing the scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)

SOURCES = ("forecasts", "ledger", "training_jobs", "accuracy", "kafka")


def _exists(cur: Any, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    return bool(cur.fetchone()[0])


class SfmlopsCollector(Collector):
    """prometheus-client collector reading Postgres and Kafka on each ``collect``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: Any = None
        self._consumer: Any = None
        self._lock = threading.Lock()  # one scrape at a time shares the connection

    # -- connections ------------------------------------------------------------------------------------
    def _cursor(self) -> Any:
        from app.db import connect

        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, application_name="sfmlops-exporter")
            self._conn.autocommit = True
        return self._conn.cursor()

    def _drop_conn(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        self._conn = None

    # -- sources ----------------------------------------------------------------------------------------
    def _forecasts(self) -> Iterator[Any]:
        s = self.settings
        age = GaugeMetricFamily(
            "sfmlops_forecast_newest_age_seconds",
            "Age of the newest forecast row per store (model_name of the settings)",
            labels=["model", "store"],
        )
        missing = GaugeMetricFamily(
            "sfmlops_forecast_stores_missing",
            "Stores without a forecast for each of the next N days after the newest actuals",
            labels=["model", "days"],
        )
        stores = GaugeMetricFamily("sfmlops_forecast_stores", "Stores in the stores table (denominator of the missing ratio)", labels=[])
        with self._cursor() as cur:
            cur.execute(
                f"SELECT store, extract(epoch FROM now() - max(created_at)) FROM {s.table_forecasts}"  # identifiers from validated settings
                " WHERE model_name = %s GROUP BY store",
                (s.model_name,),
            )
            for store, seconds in cur.fetchall():
                age.add_metric([s.model_name, str(store)], float(seconds))
            cur.execute(
                f"""WITH anchor AS (SELECT COALESCE(max(date), current_date - 1) + 1 AS d FROM {s.table_sales}),
                    covered AS (
                        SELECT f.store FROM {s.table_forecasts} f, anchor
                         WHERE f.model_name = %s AND f.date >= anchor.d AND f.date < anchor.d + %s
                         GROUP BY f.store HAVING count(DISTINCT f.date) = %s)
                SELECT count(*), count(*) FILTER (WHERE c.store IS NULL)
                  FROM {s.table_stores} st LEFT JOIN covered c ON c.store = st.store""",
                (s.model_name, s.forecast_coverage_days, s.forecast_coverage_days),
            )
            total, lacking = cur.fetchone()
        stores.add_metric([], float(total))
        missing.add_metric([s.model_name, str(s.forecast_coverage_days)], float(lacking))
        yield from (age, missing, stores)

    def _ledger(self) -> Iterator[Any]:
        s = self.settings
        rows = CounterMetricFamily(
            "sfmlops_ingest_ledger_rows",
            "Rows of every committed micro-batch (ingest ledger), by kind",
            labels=["topic", "kind"],
        )
        batches = CounterMetricFamily("sfmlops_ingest_ledger_batches", "Committed micro-batches (ingest ledger)", labels=["topic"])
        last = GaugeMetricFamily(
            "sfmlops_ingest_last_commit_timestamp_seconds",
            "Unix time of the newest committed micro-batch (ingest ledger)",
            labels=["topic"],
        )
        with self._cursor() as cur:
            cur.execute(
                f"SELECT topic, count(*), sum(rows_in), sum(rows_valid), sum(rows_rejected), sum(rows_upserted),"
                f" extract(epoch FROM max(committed_at)) FROM {s.table_ledger} GROUP BY topic"
            )
            for topic, n, rows_in, valid, rejected, upserted, newest in cur.fetchall():
                for kind, value in (("in", rows_in), ("valid", valid), ("rejected", rejected), ("upserted", upserted)):
                    rows.add_metric([topic, kind], float(value or 0))
                batches.add_metric([topic], float(n))
                last.add_metric([topic], float(newest))
        yield from (rows, batches, last)

    def _training_jobs(self) -> Iterator[Any]:
        s = self.settings
        jobs = GaugeMetricFamily("sfmlops_training_jobs", "Training jobs submitted through the API, by kind and state", labels=["kind", "state"])
        finished = GaugeMetricFamily(
            "sfmlops_training_job_last_finished_timestamp_seconds",
            "Unix time the newest job of each kind and final state finished",
            labels=["kind", "state"],
        )
        duration = GaugeMetricFamily(
            "sfmlops_training_job_last_duration_seconds",
            "Run seconds (start to finish) of the newest finished job of each kind and state",
            labels=["kind", "state"],
        )
        running = GaugeMetricFamily(
            "sfmlops_training_job_running_seconds",
            "Seconds the longest-running unfinished job of each kind has run",
            labels=["kind"],
        )
        with self._cursor() as cur:
            if not _exists(cur, s.table_training_jobs):
                return
            cur.execute(
                f"SELECT kind, extract(epoch FROM now() - min(started_at)) FROM {s.table_training_jobs}"
                " WHERE state = 'RUNNING' AND started_at IS NOT NULL GROUP BY kind"
            )
            for kind, seconds in cur.fetchall():
                running.add_metric([kind], float(seconds))
            cur.execute(f"SELECT kind, state, count(*) FROM {s.table_training_jobs} GROUP BY kind, state")
            for kind, state, n in cur.fetchall():
                jobs.add_metric([kind, state], float(n))
            cur.execute(
                f"""SELECT DISTINCT ON (kind, state) kind, state, extract(epoch FROM finished_at),
                           extract(epoch FROM finished_at - started_at)
                      FROM {s.table_training_jobs} WHERE finished_at IS NOT NULL
                     ORDER BY kind, state, finished_at DESC"""
            )
            for kind, state, at, seconds in cur.fetchall():
                finished.add_metric([kind, state], float(at))
                if seconds is not None:
                    duration.add_metric([kind, state], float(seconds))
        yield from (jobs, finished, duration, running)

    def _accuracy(self) -> Iterator[Any]:
        s = self.settings
        live = GaugeMetricFamily(
            "sfmlops_accuracy_live_rmspe",
            "Live RMSPE of the newest scored day per model version (rows-weighted over horizon buckets)",
            labels=["model", "version"],
        )
        bucket = GaugeMetricFamily(
            "sfmlops_accuracy_live_bucket_rmspe",
            "Live RMSPE of the newest scored day per model version and horizon bucket",
            labels=["model", "version", "bucket"],
        )
        backtest = GaugeMetricFamily(
            "sfmlops_accuracy_backtest_rmspe",
            "Backtest RMSPE of each scored model version (the drift yardstick)",
            labels=["model", "version"],
        )
        drift = GaugeMetricFamily(
            "sfmlops_accuracy_drift",
            "1 when the newest accuracy_drift_days scored days were all worse than backtest x (1 + accuracy_drift_margin)",
            labels=["model", "version"],
        )
        with self._cursor() as cur:
            if not _exists(cur, s.table_accuracy):
                return
            cur.execute(
                f"""WITH daily AS (
                        SELECT model_name, model_version, date,
                               sqrt(sum(rmspe ^ 2 * rows_scored) / NULLIF(sum(rows_scored), 0)) AS rmspe,
                               max(backtest_rmspe) AS backtest,
                               row_number() OVER (PARTITION BY model_name, model_version ORDER BY date DESC) AS n
                          FROM {s.table_accuracy} WHERE rmspe IS NOT NULL GROUP BY model_name, model_version, date)
                SELECT model_name, model_version, max(rmspe) FILTER (WHERE n = 1), max(backtest),
                       count(*) FILTER (WHERE n <= %s AND rmspe > backtest * (1 + %s)) >= %s
                  FROM daily GROUP BY model_name, model_version""",
                (s.accuracy_drift_days, s.accuracy_drift_margin, s.accuracy_drift_days),
            )
            for model, version, rmspe, bt, drifting in cur.fetchall():
                if rmspe is not None:
                    live.add_metric([model, version], float(rmspe))
                if bt is not None:
                    backtest.add_metric([model, version], float(bt))
                drift.add_metric([model, version], 1.0 if drifting else 0.0)
            cur.execute(
                f"""SELECT DISTINCT ON (model_name, model_version, bucket) model_name, model_version, bucket, rmspe
                      FROM {s.table_accuracy} WHERE rmspe IS NOT NULL
                     ORDER BY model_name, model_version, bucket, date DESC"""
            )
            for model, version, name, rmspe in cur.fetchall():
                bucket.add_metric([model, version, name], float(rmspe))
        yield from (live, bucket, backtest, drift)

    def _kafka(self) -> Iterator[Any]:
        from kafka import KafkaConsumer, TopicPartition

        from app.kafka_client import kafka_client_config

        s = self.settings
        end = GaugeMetricFamily(
            "sfmlops_kafka_end_offset",
            "End offset (next offset to be written) of each partition of the sales topic",
            labels=["topic", "partition"],
        )
        if self._consumer is None:
            self._consumer = KafkaConsumer(**kafka_client_config(s, "sfmlops-exporter", request_timeout_ms=10000))
        parts = self._consumer.partitions_for_topic(s.kafka_topic) or set()
        tps = [TopicPartition(s.kafka_topic, p) for p in sorted(parts)]
        for tp, offset in sorted(self._consumer.end_offsets(tps).items(), key=lambda kv: kv[0].partition):
            end.add_metric([tp.topic, str(tp.partition)], float(offset))
        yield end

    # -- collector --------------------------------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("sfmlops_exporter_source_up", "1 if the exporter could read the source at this scrape", labels=["source"])
        took = GaugeMetricFamily("sfmlops_exporter_source_seconds", "Seconds the exporter spent reading the source", labels=["source"])
        with self._lock:
            for source in SOURCES:
                t0 = time.perf_counter()
                try:
                    families = list(getattr(self, f"_{source}")())
                    ok = 1.0
                except Exception as exc:  # noqa: BLE001 - one failing source must not fail the scrape
                    log.warning("exporter source %s failed: %s", source, exc)
                    families, ok = [], 0.0
                    if source == "kafka":
                        self._consumer = None
                    else:
                        self._drop_conn()
                yield from families
                up.add_metric([source], ok)
                took.add_metric([source], time.perf_counter() - t0)
        yield up
        yield took


def registry(settings: Settings) -> CollectorRegistry:
    """A registry holding only the sfmlops collector (what the exporter serves)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SfmlopsCollector(settings))
    return reg


def main() -> None:
    """Serve the exporter on ``bind_host:exporter_port`` until killed."""
    from prometheus_client import start_http_server

    from app.config import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    server, thread = start_http_server(settings.exporter_port, addr=settings.bind_host, registry=registry(settings))
    log.info("sfmlops exporter on http://%s:%s/metrics", settings.bind_host, settings.exporter_port)
    thread.join()


if __name__ == "__main__":
    main()
