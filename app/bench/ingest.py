"""``sfmlops bench ingest``: the full history through Kafka -> Spark -> Postgres, against plain COPY.

Measured in one run, on the same database, into fresh tables of the same shape as ``sales``:

* producer rows/s (kafka-python, acks=all, idempotent) for the replay of every row;
* Spark stage rows/s: rows / (first micro-batch start -> last commit), from the job's own ledger;
* baseline: a plain ``COPY`` of the same rows into an identical keyed table (rows/s), and the ratio;
* peak resident memory of the Spark driver (JVM, which runs the executors in local mode) and of its
  whole process tree (Python workers included); the driver heap is capped by ``spark_driver_memory``.
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


def _dataset(settings: "Settings", rossmann_dir: Path | None) -> tuple["pd.DataFrame", "pd.DataFrame"]:
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


def _csv(frame: "pd.DataFrame") -> bytes:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False, date_format="%Y-%m-%d")
    return buf.getvalue().encode()


def _copy_baseline(settings: "Settings", sales: "pd.DataFrame", table: str) -> float:
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


def run(
    settings: "Settings",
    rossmann_dir: Path | None = None,
    max_offsets_per_trigger: int | None = None,
    partitions: int | None = None,
    limit_rows: int | None = None,
    keep: bool = False,
) -> dict:
    """Run the benchmark; returns the figures (``sfmlops bench ingest`` prints them as one JSON line).

    Args:
        settings: Settings of the running local stack.
        rossmann_dir: Kaggle folder (default: prepared data, else the shared Rossmann files).
        max_offsets_per_trigger: Records per micro-batch (default from settings).
        partitions: Partitions of the benchmark topic (default ``kafka_partitions``).
        limit_rows: Use only the first N rows (quick checks).
        keep: Keep the benchmark tables and topic.
    """
    from app import ingest
    from app.db import apply_migrations, connect
    from app.produce import produce

    sales, stores = _dataset(settings, rossmann_dir)
    if limit_rows:
        sales = sales.sort_values(["date", "store"]).head(limit_rows)
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"sfmlops-bench-ingest-{tag}-"))
    bench = settings.model_copy(
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
    apply_migrations(bench)
    store_frame = stores.copy()
    for col in ("competition_open_since_month", "competition_open_since_year", "promo2_since_week", "promo2_since_year"):
        store_frame[col] = store_frame[col].astype("Int64")
    conn = connect(bench)
    try:
        with conn.cursor() as cur:
            cur.copy_expert(
                f"COPY {bench.table_stores} ({', '.join(store_frame.columns)}) FROM STDIN WITH (FORMAT csv)",
                io.BytesIO(_csv(store_frame)),
            )
        conn.commit()
    finally:
        conn.close()

    produced = produce(bench, "replay", sales=sales, progress=False)
    copy_seconds = _copy_baseline(bench, sales, f"bench_{tag}_copy")

    checkpoint = (
        f"s3a://{settings.bucket_checkpoints}/bench/{tag}" if settings.aws_endpoint_url else str(workdir / "checkpoint")
    )
    log = workdir / "ingest.log"
    opts = {"checkpoint": checkpoint, "max_offsets_per_trigger": max_offsets_per_trigger}
    peaks: dict = {}
    stop = threading.Event()
    proc = ingest.start(bench, log_path=log, trigger="available-now", **opts)
    watcher = threading.Thread(target=_watch_rss, args=(proc.pid, peaks, stop), daemon=True)
    watcher.start()
    proc.wait()
    stop.set()
    watcher.join()
    text = log.read_text(errors="replace")
    summary = ingest.parse_summary(text)
    if proc.returncode != 0 or summary is None:
        raise RuntimeError(f"ingest job failed (exit {proc.returncode}); last log lines:\n{text[-4000:]}")

    conn = connect(bench)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*), coalesce(sum(sales), 0) FROM {bench.table_sales}")
            stored, stored_sales = cur.fetchone()
            cur.execute(f"SELECT min(started_at), max(committed_at) FROM {bench.table_ledger}")
            first, last = cur.fetchone()
            if not keep:
                for table in ("table_sales", "table_stores", "table_dead_letter", "table_ledger", "table_ingest_staging"):
                    cur.execute(f"DROP TABLE IF EXISTS {getattr(bench, table)}")
        conn.commit()
    finally:
        conn.close()
    if not keep:
        _delete_topic(bench)
        shutil.rmtree(workdir, ignore_errors=True)

    rows = len(sales)
    stage_seconds = (last - first).total_seconds()
    spark_rate = rows / stage_seconds
    copy_rate = rows / copy_seconds
    return {
        "bench": "ingest",
        "rows": rows,
        "rows_stored": int(stored),
        "sales_sum_matches": int(stored_sales) == int(sales["sales"].sum()),
        "seconds": round(stage_seconds, 3),
        "spark_rows_per_s": round(spark_rate),
        "batches": summary["batches"],
        "producer_rows_per_s": round(produced["rate"]),
        "producer_seconds": produced["seconds"],
        "copy_rows_per_s": round(copy_rate),
        "ratio": round(spark_rate / copy_rate, 3),
        "job_wall_seconds": summary["wall_seconds"],
        # where the Spark stage's time goes: Kafka read + parse + validate + parallel COPY into staging
        # (executors), and the driver's one-transaction commit into sales (summed over batches)
        "stage_seconds_sum": summary.get("stage_seconds_sum"),
        "commit_seconds_sum": summary.get("commit_seconds_sum"),
        "driver_heap_max": settings.spark_driver_memory,
        "driver_peak_rss_mb": round(peaks.get("driver", 0) / 2**20),
        "process_tree_peak_rss_mb": round(peaks.get("tree", 0) / 2**20),
        "partitions": bench.kafka_partitions,
        "max_offsets_per_trigger": max_offsets_per_trigger or settings.ingest_max_offsets_per_trigger,
        "checkpoint": checkpoint.split("/bench/")[0] if checkpoint.startswith("s3a://") else "local",
    }


def _delete_topic(settings: "Settings") -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
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
