"""``sfmlops bench ingest``: the full history through Kafka -> Spark -> Postgres, against plain COPY.

Measured in one run, on the same database, into fresh tables of the same shape as ``sales`` (tables and
topic of its own, dropped afterwards):

* producer rows/s (kafka-python, acks=all, idempotent, lz4, forked producers) for the replay of every row;
* cold: one availableNow run, from the job's process start to its last commit (the daily schedule);
* steady: a second query on fresh tables in several micro-batches, rows/s after the first batch;
* peer: a plain kafka-python consumer -> COPY into staging -> upsert, offsets in the same transaction;
* baseline: a plain ``COPY`` of the same rows into an identical keyed table (rows/s), and the ratios;
* peak resident memory of the Spark driver (JVM, which runs the executors in local mode) and of its
  whole process tree; the driver heap is capped by ``spark_driver_memory``.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from app.config import Settings


def _dataset(settings: Settings, rossmann_dir: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    from app.config import PROJECT_ROOT
    from app.data import kaggle, load_dataset

    folder = rossmann_dir or settings.rossmann_dir
    if folder is None:
        try:
            return load_dataset(settings)
        except FileNotFoundError:
            folder = PROJECT_ROOT.parent / "shared" / "data" / "rossmann"
    train, store = kaggle.find_files(Path(folder))
    return kaggle.load_train(train), kaggle.load_stores(store)


def _csv(frame: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False, date_format="%Y-%m-%d")
    return buf.getvalue().encode()


def _copy_baseline(settings: Settings, sales: pd.DataFrame, table: str) -> float:
    """Seconds for a plain COPY of ``sales`` into a fresh table LIKE sales (keys and indexes included)."""
    from app.db import connect
    from app.ingest.schema import SALES_COLUMNS

    data = _csv(sales[SALES_COLUMNS])
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} (LIKE {settings.table_sales} INCLUDING ALL)")
            conn.commit()
            t0 = time.perf_counter()
            cur.copy_expert(f"COPY {table} ({', '.join(SALES_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", io.BytesIO(data))
            conn.commit()
            seconds = time.perf_counter() - t0
            cur.execute(f"DROP TABLE {table}")
            conn.commit()
    finally:
        conn.close()
    return seconds


def _watch_rss(pid: int, peaks: dict, stop: threading.Event) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            total, java = 0, 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                total += rss
                if p.name().startswith("java"):
                    java = max(java, rss)
            peaks["tree"] = max(peaks.get("tree", 0), total)
            peaks["driver"] = max(peaks.get("driver", 0), java)
        except psutil.NoSuchProcess:
            return
        stop.wait(0.25)


def _peer(settings: Settings, sales_table: str, rows_expected: int, poll_records: int = 100_000) -> dict:
    """The plain consumer (kafka-python -> ``COPY`` into an UNLOGGED staging table -> upsert), with the
    consumed offsets written in the same transaction as the rows (so also exactly-once), on the same topic
    and into a table of the same shape as ``sales``. Returns ``{"rows", "seconds", "batches"}``."""
    from kafka import KafkaConsumer, TopicPartition

    from app.db import connect
    from app.ingest.schema import SALES_COLUMNS
    from app.kafka_client import kafka_client_config

    stage, offsets = f"{sales_table}_stage", f"{sales_table}_offsets"
    cols = ", ".join(SALES_COLUMNS)
    data_cols = [c for c in SALES_COLUMNS if c not in ("store", "date")]
    conn = connect(settings, application_name="sfmlops-bench-peer")
    consumer = KafkaConsumer(**kafka_client_config(
        settings, "sfmlops-bench-peer", enable_auto_commit=False, max_poll_records=poll_records,
        fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=16 * 1024 * 1024,
    ))
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {sales_table} (LIKE {settings.table_sales} INCLUDING ALL)")
            cur.execute(f"CREATE UNLOGGED TABLE {stage} AS SELECT {cols} FROM {settings.table_sales} WITH NO DATA")
            cur.execute(f"CREATE TABLE {offsets} (topic text, kafka_partition int, next_offset bigint, "
                        "PRIMARY KEY (topic, kafka_partition))")
        conn.commit()
        parts = [TopicPartition(settings.kafka_topic, p) for p in sorted(consumer.partitions_for_topic(settings.kafka_topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        t0 = time.perf_counter()
        done = batches = 0
        while done < rows_expected:
            polled = consumer.poll(timeout_ms=2000, max_records=poll_records)
            if not polled:
                continue
            buf = io.StringIO()
            ends = []
            for tp, messages in polled.items():
                for m in messages:
                    r = json.loads(m.value)
                    buf.write(f"{r['store']},{r['date']},{r['day_of_week']},{r['sales']},{r['customers']},{r['open']},"
                              f"{r['promo']},{r['state_holiday']},{r['school_holiday']}\n")
                done += len(messages)
                ends.append((tp.topic, tp.partition, messages[-1].offset + 1))
            buf.seek(0)
            with conn.cursor() as cur:
                cur.copy_expert(f"COPY {stage} ({cols}) FROM STDIN WITH (FORMAT csv)", buf)
                cur.execute(
                    f"""INSERT INTO {sales_table} AS t ({cols}, ingested_at) SELECT DISTINCT ON (store, date) {cols}, now()
                    FROM {stage} ORDER BY store, date
                    ON CONFLICT (store, date) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in data_cols)}
                    WHERE ({', '.join('t.' + c for c in data_cols)}) IS DISTINCT FROM ({', '.join('EXCLUDED.' + c for c in data_cols)})"""
                )
                cur.executemany(
                    f"INSERT INTO {offsets} VALUES (%s, %s, %s) ON CONFLICT (topic, kafka_partition) "
                    "DO UPDATE SET next_offset = EXCLUDED.next_offset", ends,
                )
                cur.execute(f"TRUNCATE {stage}")
            conn.commit()
            batches += 1
        seconds = time.perf_counter() - t0
    finally:
        consumer.close()
        conn.close()
    return {"rows": done, "seconds": seconds, "batches": batches}


def _ledger(settings: Settings) -> list[tuple]:
    from app.db import connect

    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT batch_id, rows_in, started_at, committed_at FROM {settings.table_ledger} ORDER BY batch_id")
            return cur.fetchall()
    finally:
        conn.close()


def _ingest(settings: Settings, workdir: Path, name: str, checkpoint: str, max_offsets: int | None) -> dict:
    """One availableNow run of the job as its own process: summary, ledger rows, peak RSS, process start."""
    from app import ingest

    log = workdir / f"{name}.log"
    peaks: dict = {}
    stop = threading.Event()
    started = time.time()
    proc = ingest.start(settings, log_path=log, trigger="available-now", checkpoint=checkpoint, max_offsets_per_trigger=max_offsets)
    watcher = threading.Thread(target=_watch_rss, args=(proc.pid, peaks, stop), daemon=True)
    watcher.start()
    proc.wait()
    stop.set()
    watcher.join()
    text = log.read_text(errors="replace")
    summary = ingest.parse_summary(text)
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"{name} ingest job failed (exit {proc.returncode}); last log lines:\n{text[-4000:]}")
    return {"summary": summary, "ledger": _ledger(settings), "peaks": peaks, "started": started,
            "batch_lines": [line for line in text.splitlines() if line.startswith("batch ")]}


def _bench_settings(settings: Settings, tag: str, partitions: int | None) -> Settings:
    return settings.model_copy(
        update={
            "kafka_topic": f"sales_bench_{tag}",
            "kafka_partitions": partitions or settings.kafka_partitions,
            "table_sales": f"bench_{tag}_sales",
            "table_stores": f"bench_{tag}_stores",
            "table_dead_letter": f"bench_{tag}_dead",
            "table_ledger": f"bench_{tag}_ledger",
            "table_ingest_staging": f"bench_{tag}_stage",
        }
    )


def run(
    settings: Settings,
    rossmann_dir: Path | None = None,
    max_offsets_per_trigger: int | None = None,
    partitions: int | None = None,
    limit_rows: int | None = None,
    keep: bool = False,
    steady_batches: int = 6,
    peer: bool = True,
    local_checkpoint: bool = False,
) -> dict:
    """Run the benchmark; returns the figures (``sfmlops bench ingest`` prints them as one JSON line).

    Figures, each next to a plain ``COPY`` of the same rows into an identical keyed table in this run:
    ``cold`` (one availableNow run, process start -> last commit, what the daily schedule pays),
    ``steady`` (a second query, on fresh tables, in ``steady_batches`` micro-batches: rows/s after the
    first batch's commit), ``peer`` (a plain kafka-python consumer -> COPY -> upsert, offsets in the
    same transaction) and the producer's replay.

    Args:
        settings: Settings of the running local stack.
        rossmann_dir: Kaggle folder (default: prepared data, else the shared Rossmann files).
        max_offsets_per_trigger: Records per micro-batch of the cold run (default from settings).
        partitions: Partitions of the benchmark topic (default ``kafka_partitions``).
        limit_rows: Use only the first N rows (quick checks).
        keep: Keep the benchmark tables and topic.
        steady_batches: Micro-batches of the steady run (0 skips it).
        peer: Also run the plain consumer.
        local_checkpoint: Checkpoints in a local folder even when the S3 emulator is configured.
    """
    from app.db import apply_migrations, connect
    from app.produce import ProduceConfig, produce

    sales, stores = _dataset(settings, rossmann_dir)
    if limit_rows:
        sales = sales.sort_values(["date", "store"]).head(limit_rows)
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"sfmlops-bench-ingest-{tag}-"))
    bench = _bench_settings(settings, tag, partitions)
    steady = _bench_settings(settings, f"{tag}s", partitions).model_copy(update={"kafka_topic": bench.kafka_topic})
    store_frame = stores.copy()
    for col in ("competition_open_since_month", "competition_open_since_year", "promo2_since_week", "promo2_since_year"):
        store_frame[col] = store_frame[col].astype("Int64")
    for target in (bench, steady):
        apply_migrations(target)
        conn = connect(target)
        try:
            with conn.cursor() as cur:
                cur.copy_expert(
                    f"COPY {target.table_stores} ({', '.join(store_frame.columns)}) FROM STDIN WITH (FORMAT csv)",
                    io.BytesIO(_csv(store_frame)),
                )
            conn.commit()
        finally:
            conn.close()

    rows = len(sales)
    try:
        produced = produce(bench, ProduceConfig(progress=False), sales=sales)
        copy_seconds = _copy_baseline(bench, sales, f"bench_{tag}_copy")

        def checkpoint(name: str) -> str:
            if settings.aws_endpoint_url and not local_checkpoint:
                return f"s3a://{settings.bucket_checkpoints}/bench/{tag}/{name}"
            return str(workdir / name / "checkpoint")

        cold = _ingest(bench, workdir, "cold", checkpoint("cold"), max_offsets_per_trigger)
        summary = cold["summary"]
        first_start = min(r[2] for r in cold["ledger"])
        last_commit = max(r[3] for r in cold["ledger"])
        cold_seconds = last_commit.timestamp() - cold["started"]
        stage_seconds = (last_commit - first_start).total_seconds()
        conn = connect(bench)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*), coalesce(sum(sales), 0) FROM {bench.table_sales}")
                stored, stored_sales = cur.fetchone()
        finally:
            conn.close()

        steady_fig: dict = {}
        if steady_batches:
            per_batch = -(-rows // steady_batches)
            warm = _ingest(steady, workdir, "steady", checkpoint("steady"), per_batch)
            ledger = warm["ledger"]
            after = ledger[1:]
            if after:
                span = (ledger[-1][3] - ledger[0][3]).total_seconds()
                steady_rate = sum(r[1] for r in after) / span
                steady_fig = {
                    "steady_rows_per_s": round(steady_rate),
                    "steady_ratio": round(steady_rate / (rows / copy_seconds), 3),
                    "steady_batches": len(ledger),
                    "steady_batch_rows": per_batch,
                    "steady_first_batch_seconds": round((ledger[0][3].timestamp() - warm["started"]), 3),
                    "steady_stage_seconds_sum": warm["summary"].get("stage_seconds_sum"),
                    "steady_commit_seconds_sum": warm["summary"].get("commit_seconds_sum"),
                }

        peer_fig: dict = {}
        if peer:
            result = _peer(bench, f"bench_{tag}p_sales", rows)
            peer_rate = result["rows"] / result["seconds"]
            peer_fig = {"peer_rows_per_s": round(peer_rate), "peer_seconds": round(result["seconds"], 3),
                        "peer_batches": result["batches"],
                        "cold_vs_peer": round((rows / cold_seconds) / peer_rate, 3)}
            if steady_fig:
                peer_fig["steady_vs_peer"] = round(steady_fig["steady_rows_per_s"] / peer_rate, 3)
    finally:
        if not keep:
            conn = connect(bench)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
                                (f"bench\\_{tag}%",))
                    for (name,) in cur.fetchall():
                        cur.execute(f"DROP TABLE IF EXISTS {name}")
                conn.commit()
            finally:
                conn.close()
            _delete_topic(bench)
            shutil.rmtree(workdir, ignore_errors=True)

    copy_rate = rows / copy_seconds
    spark_rate = rows / stage_seconds
    cold_rate = rows / cold_seconds
    peaks = cold["peaks"]
    return {
        "bench": "ingest",
        "rows": rows,
        "rows_stored": int(stored),
        "sales_sum_matches": int(stored_sales) == int(sales["sales"].sum()),
        "copy_rows_per_s": round(copy_rate),
        "cold_rows_per_s": round(cold_rate),
        "cold_seconds": round(cold_seconds, 3),
        "cold_ratio": round(cold_rate / copy_rate, 3),
        **steady_fig,
        **peer_fig,
        "producer_rows_per_s": round(produced["rate"]),
        "producer_seconds": produced["seconds"],
        "producer_processes": produced.get("processes"),
        "producer_compression": settings.producer_compression,
        # the cold run's stage (first batch start -> last commit) and where its time goes: Kafka read,
        # parse, validate, duplicate window and JDBC staging (executors) vs the partition commits
        "seconds": round(stage_seconds, 3),
        "spark_rows_per_s": round(spark_rate),
        "ratio": round(spark_rate / copy_rate, 3),
        "batches": summary["batches"],
        "job_wall_seconds": summary["wall_seconds"],
        "stage_seconds_sum": summary.get("stage_seconds_sum"),
        "commit_seconds_sum": summary.get("commit_seconds_sum"),
        "commit_connections": settings.ingest_commit_connections,
        "driver_heap_max": settings.spark_driver_memory,
        "driver_peak_rss_mb": round(peaks.get("driver", 0) / 2**20),
        "process_tree_peak_rss_mb": round(peaks.get("tree", 0) / 2**20),
        "partitions": bench.kafka_partitions,
        "max_offsets_per_trigger": max_offsets_per_trigger or settings.ingest_max_offsets_per_trigger,
        "checkpoint": "s3a" if settings.aws_endpoint_url and not local_checkpoint else "local",
        "load_average": [round(x, 2) for x in __import__("os").getloadavg()],
    }


def _delete_topic(settings: Settings) -> None:
    from kafka import KafkaAdminClient

    from app.kafka_client import kafka_client_config

    admin = KafkaAdminClient(**kafka_client_config(settings, "sfmlops-bench-admin", request_timeout_ms=15000))
    try:
        admin.delete_topics([settings.kafka_topic])
    except Exception:  # noqa: BLE001 - best effort cleanup
        pass
    finally:
        admin.close()


def main() -> None:
    """``python -m app.bench.ingest``: run with the environment's settings and print one JSON line."""
    from app.config import get_settings

    print(json.dumps(run(get_settings())))


if __name__ == "__main__":
    main()
