"""The streaming job: Kafka sales topic -> validation -> Postgres, exactly once.

Entry point of ``spark_jobs/sales_stream.py``; the same arguments run it locally (``sfmlops ingest``)
and on EMR (``spark-submit``). Addresses, tables and credentials come from the settings (``SFMLOPS_*``
environment variables), never from the command line.

Validation happens in Spark SQL expressions (JVM, vectorised): every record gets a ``reason`` (NULL
when valid). The sink (:mod:`app.ingest.sink`) stages the batch with parallel COPY and commits it
with the ledger row in one transaction.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

from app.ingest import sink
from app.ingest.schema import FIELDS, FLAG_FIELDS, SCHEMA_VERSION, STATE_HOLIDAYS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

    from app.config import Settings

TRIGGERS = ("available-now", "processing-time")
SUMMARY_PREFIX = "SFMLOPS_INGEST_SUMMARY "


def parse_args(argv: Sequence[str], settings: "Settings") -> argparse.Namespace:
    """Command-line arguments of the job (the same on EMR and locally)."""
    parser = argparse.ArgumentParser(prog="sales_stream.py", description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", choices=TRIGGERS, default="available-now", help="availableNow or processing-time")
    parser.add_argument("--interval", default=settings.ingest_trigger_interval, help="processing-time interval")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default from settings)")
    parser.add_argument("--topic", default=settings.kafka_topic, help="Kafka topic")
    parser.add_argument("--starting-offsets", default="earliest", help="earliest | latest | JSON offsets")
    parser.add_argument(
        "--max-offsets-per-trigger", type=int, default=settings.ingest_max_offsets_per_trigger, help="records per batch"
    )
    parser.add_argument("--min-partitions", type=int, default=0, help="split Kafka partitions into more tasks")
    parser.add_argument("--run-seconds", type=float, default=0, help="processing-time: stop after this (0 = never)")
    parser.add_argument(
        "--kafka-option", action="append", default=[], metavar="KEY=VALUE", help="extra Kafka source option (MSK auth)"
    )
    args = parser.parse_args(list(argv))
    if args.max_offsets_per_trigger < 1:
        parser.error("--max-offsets-per-trigger must be >= 1")
    for item in args.kafka_option:
        if "=" not in item:
            parser.error(f"--kafka-option {item!r} must be KEY=VALUE")
    return args


def checkpoint_location(settings: "Settings", override: str | None) -> str:
    """The checkpoint folder: the override, the ``ingest_checkpoint`` setting or the S3 bucket."""
    return override or settings.ingest_checkpoint or f"s3a://{settings.bucket_checkpoints}/sales_stream"


def ensure_bucket(settings: "Settings", location: str) -> None:
    """Create the checkpoint bucket on the emulator (local profile only; on AWS Terraform owns it)."""
    if not location.startswith("s3a://") or settings.profile != "local" or not settings.aws_endpoint_url:
        return
    bucket = location[len("s3a://") :].split("/", 1)[0]
    s3 = settings.boto3_client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - botocore raises ClientError subclasses by code
        s3.create_bucket(Bucket=bucket)


def build_session(settings: "Settings", app_name: str = "sfmlops-sales-stream") -> "SparkSession":
    """A SparkSession with s3a pointed at the configured endpoint; jars come from spark-submit."""
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "50000")
        .config("spark.hadoop.fs.s3a.endpoint.region", settings.aws_region)
    )
    if settings.explicit_aws_keys:  # else (EMR) s3a's default chain uses the cluster's role
        builder = (
            builder.config("spark.hadoop.fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider")
            .config("spark.hadoop.fs.s3a.access.key", settings.aws_access_key_id)
            .config("spark.hadoop.fs.s3a.secret.key", settings.aws_secret_access_key.get_secret_value())
        )
    if settings.aws_endpoint_url:
        builder = (
            builder.config("spark.hadoop.fs.s3a.endpoint", settings.aws_endpoint_url)
            .config("spark.hadoop.fs.s3a.path.style.access", "true")
            .config("spark.hadoop.fs.s3a.connection.ssl.enabled", str(settings.aws_endpoint_url.startswith("https")).lower())
            .config("spark.hadoop.fs.s3a.change.detection.mode", "none")
        )
    return builder.getOrCreate()


def json_schema():  # noqa: ANN201 - pyspark type
    """The explicit schema of a record, plus the corrupt-record column."""
    from pyspark.sql import types as T

    kinds = {"int": T.IntegerType(), "str": T.StringType()}
    fields = [T.StructField(name, kinds[kind]) for name, kind in FIELDS.items()]
    return T.StructType([*fields, T.StructField("_corrupt_record", T.StringType())])


#: Up to this store id the known stores are checked with a bitmap literal, above it with IN (...).
BITMAP_MAX_STORE = 100_000


def _known_store(store: "Column", known_stores: Sequence[int]) -> "Column":
    """Whether ``store`` is one of ``known_stores``.

    A string literal with '1' at (1-based) position id for each known id, tested with ``substr``: one
    literal instead of an ``IN`` list of ~1,115 literals, which costs Catalyst ~0.35 s per micro-batch to
    analyse. Store ids are positive (checked before this test).
    """
    from pyspark.sql import functions as F

    ids = sorted({int(s) for s in known_stores if int(s) > 0})
    if not ids:
        return F.lit(False)
    if ids[-1] > BITMAP_MAX_STORE:
        return store.isin(ids)
    present = set(ids)
    bitmap = "".join("1" if i in present else "0" for i in range(1, ids[-1] + 1))
    return F.lit(bitmap).substr(store, F.lit(1)) == F.lit("1")


def reason_column(
    known_stores: Sequence[int], max_bytes: int, max_future_days: int, min_date: str
) -> tuple["Column", dict[str, "Column"]]:
    """Spark expressions over the Kafka columns: the rejection reason (NULL = valid) and the parsed fields.

    Args:
        known_stores: Ids in the stores table.
        max_bytes: Larger payloads are rejected without parsing.
        max_future_days: Days after today (UTC) still accepted.
        min_date: Earliest accepted day (YYYY-MM-DD).
    """
    from pyspark.sql import functions as F

    size = F.octet_length("value")
    text = F.when(size <= max_bytes, F.col("value").cast("string"))
    j = F.from_json(text, json_schema(), {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record"})
    field = {name: j.getField(name) for name in FIELDS}
    # A cast is much cheaper than a pattern parser; the round trip keeps only canonical YYYY-MM-DD text.
    day = field["date"].try_cast("date")
    iso_dow = ((F.dayofweek(day) + 5) % 7) + 1
    all_null = F.lit(True)
    for col in field.values():
        all_null = all_null & col.isNull()
    wrong = F.concat_ws(
        ", ",
        *[F.when(col.isNull() & F.get_json_object(text, f"$.{name}").isNotNull(), F.lit(name)) for name, col in field.items()],
    )
    missing = F.concat_ws(", ", *[F.when(col.isNull(), F.lit(name)) for name, col in field.items()])
    any_null = F.lit(False)
    for col in field.values():
        any_null = any_null | col.isNull()
    corrupt = j.getField("_corrupt_record").isNotNull()
    known = _known_store(field["store"], known_stores)
    checks = [
        (F.col("value").isNull(), F.lit("empty payload")),
        (size > max_bytes, F.format_string(f"oversized: %d bytes > {max_bytes}", size)),
        (corrupt & all_null, F.lit("malformed JSON (or not a JSON object)")),
        (corrupt & (wrong != ""), F.concat(F.lit("wrong type for field(s): "), wrong)),
        (corrupt, F.lit("malformed JSON")),
        (any_null, F.concat(F.lit("missing field(s): "), missing)),
        (
            field["schema_version"] != SCHEMA_VERSION,
            F.format_string(f"unsupported schema_version %d (expected {SCHEMA_VERSION})", field["schema_version"]),
        ),
        (field["store"] <= 0, F.format_string("store %d out of range (must be > 0)", field["store"])),
        (~known, F.format_string("unknown store %d", field["store"])),
        (
            day.isNull() | (day.cast("string") != field["date"]),
            F.format_string("invalid date '%s' (expected YYYY-MM-DD)", field["date"]),
        ),
        (
            day > F.date_add(F.current_date(), max_future_days),
            F.format_string("date %s is in the future", field["date"]),
        ),
        (day < F.lit(min_date).cast("date"), F.format_string(f"date %s is before {min_date}", field["date"])),
        (
            field["day_of_week"] != iso_dow,
            F.format_string("day_of_week %d does not match date %s (%d)", field["day_of_week"], field["date"], iso_dow),
        ),
        (field["sales"] < 0, F.format_string("negative sales %d", field["sales"])),
        (field["customers"] < 0, F.format_string("negative customers %d", field["customers"])),
        *[
            (~field[name].isin(0, 1), F.format_string(f"{name} must be 0 or 1, got %d", field[name]))
            for name in FLAG_FIELDS
        ],
        (
            ~field["state_holiday"].isin(*STATE_HOLIDAYS),
            F.format_string(f"state_holiday must be one of {','.join(STATE_HOLIDAYS)}, got '%s'", field["state_holiday"]),
        ),
    ]
    reason = F.when(checks[0][0], checks[0][1])
    for cond, text_ in checks[1:]:
        reason = reason.when(cond, text_)
    parsed = {name: col for name, col in field.items() if name != "schema_version"}
    parsed["date"] = day
    return reason, parsed


def validated(batch: "DataFrame", known_stores: Sequence[int], settings: "Settings") -> "DataFrame":
    """The Kafka batch as staging rows: coordinates, reason, typed fields, key and raw value."""
    from pyspark.sql import functions as F

    reason, parsed = reason_column(
        known_stores, settings.ingest_max_message_bytes, settings.ingest_max_future_days, settings.ingest_min_date
    )
    small = {"day_of_week", "open", "promo", "school_holiday"}
    return batch.select(
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        reason.alias("reason"),
        *[(col.cast("short") if name in small else col).alias(name) for name, col in parsed.items()],
        F.col("key").alias("kafka_key"),
        F.col("value"),
    )


class _Batches:
    """The foreachBatch function and what it has done in this run."""

    def __init__(self, settings: "Settings", topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.query_id: str | None = None
        self.ready = threading.Event()
        self.stats: dict[str, Any] = {
            "batches": 0,
            "skipped_batches": 0,
            "rows": 0,
            "rejected": 0,
            "upserted": 0,
            "stage_seconds_sum": 0.0,
            "commit_seconds_sum": 0.0,
            "first_batch_start": None,
            "last_commit": None,
        }
        self._conn = None

    def conn(self):  # noqa: ANN201
        from app.db import connect

        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings)
        return self._conn

    def __call__(self, batch: "DataFrame", batch_id: int) -> None:
        started = dt.datetime.now(dt.timezone.utc)
        if not self.ready.wait(120):
            raise RuntimeError("streaming query id not known after 120 s")
        assert self.query_id is not None
        conn = self.conn()
        if not sink.begin_batch(conn, self.settings, self.query_id, batch_id):
            self.stats["skipped_batches"] += 1
            print(f"batch {batch_id}: already committed by an earlier attempt, skipped", flush=True)
            return
        if self.stats["first_batch_start"] is None:
            self.stats["first_batch_start"] = started.timestamp()
        stores = sink.known_stores(conn, self.settings)
        conn.commit()
        table = sink.staging_table(self.settings, self.query_id)
        stager = sink.stage_partition(self.settings.pg_dsn(), table, batch_id)
        t_stage = time.time()
        schema = "rows long, rejected long, stores array<int>"
        counts = validated(batch, stores, self.settings).mapInArrow(stager, schema).collect()
        t_commit = time.time()
        rows = sum(r["rows"] for r in counts)
        rejected = sum(r["rejected"] for r in counts)
        dedupe = sink.stores_overlap(r["stores"] for r in counts)
        result = sink.commit_batch(
            conn, self.settings, self.query_id, batch_id, self.topic, rows, rejected, started, dedupe=dedupe
        )
        if not result["committed"]:
            self.stats["skipped_batches"] += 1
            return
        self.stats["batches"] += 1
        self.stats["rows"] += rows
        self.stats["rejected"] += rejected
        self.stats["upserted"] += result["upserted"]
        self.stats["last_commit"] = time.time()
        self.stats["stage_seconds_sum"] = round(self.stats["stage_seconds_sum"] + t_commit - t_stage, 3)
        self.stats["commit_seconds_sum"] = round(self.stats["commit_seconds_sum"] + self.stats["last_commit"] - t_commit, 3)
        print(
            f"batch {batch_id}: {rows} records, {rejected} rejected, {result['upserted']} upserted "
            f"in {time.time() - started.timestamp():.2f}s (prepare {t_stage - started.timestamp():.2f}s, "
            f"stage {t_commit - t_stage:.2f}s, commit {time.time() - t_commit:.2f}s)",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the streaming query until availableNow is drained (or ``--run-seconds`` / SIGTERM)."""
    from app.config import get_settings
    from app.db import transaction

    settings = get_settings()
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    location = checkpoint_location(settings, args.checkpoint)
    ensure_bucket(settings, location)
    spark = build_session(settings)
    spark.sparkContext.setLogLevel("WARN")
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", args.topic)
        .option("startingOffsets", args.starting_offsets)
        .option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
        .option("kafka.max.partition.fetch.bytes", str(8 * 1024 * 1024))
    )
    if args.min_partitions:
        reader = reader.option("minPartitions", str(args.min_partitions))
    for item in args.kafka_option:
        key, value = item.split("=", 1)
        reader = reader.option(key, value)
    handler = _Batches(settings, args.topic)
    writer = reader.load().writeStream.foreachBatch(handler).option("checkpointLocation", location)
    writer = writer.trigger(availableNow=True) if args.trigger == "available-now" else writer.trigger(processingTime=args.interval)
    started = time.time()
    query = writer.start()
    handler.query_id = str(query.id)
    with transaction(settings) as conn:
        sink.ensure_staging(conn, settings, handler.query_id)
    handler.ready.set()

    def _stop(signum: int, _frame: object) -> None:  # graceful stop on SIGTERM/SIGINT
        print(f"signal {signum}: stopping the query after the current batch", flush=True)
        threading.Thread(target=query.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.trigger == "processing-time" and args.run_seconds > 0:
        query.awaitTermination(args.run_seconds)
        query.stop()
    else:
        query.awaitTermination()
    error = query.exception()
    if error is None and args.trigger == "available-now":
        with transaction(settings) as conn:
            sink.drop_staging(conn, settings, handler.query_id)
    stats = handler.stats
    first, last = stats.pop("first_batch_start"), stats.pop("last_commit")
    summary = {
        "query_id": handler.query_id,
        "topic": args.topic,
        "trigger": args.trigger,
        "checkpoint": location,
        **stats,
        "stage_seconds": round(last - first, 3) if first and last else 0.0,
        "wall_seconds": round(time.time() - started, 3),
        "error": None if error is None else str(error)[:2000],
    }
    print(SUMMARY_PREFIX + json.dumps(summary), flush=True)
    spark.stop()
    if error is not None:
        raise SystemExit(1)
    return summary
