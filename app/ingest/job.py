"""The streaming job: Kafka sales topic -> validation -> Postgres, exactly once.

Entry point of ``spark_jobs/sales_stream.py``; the same arguments run it locally (``sfmlops ingest``)
and on EMR (``spark-submit``). Addresses, tables and credentials come from the settings (``SFMLOPS_*``
environment variables), never from the command line.

Validation happens in Spark SQL expressions (JVM, vectorised): every record gets a ``reason`` (NULL
when valid), and a window marks superseded duplicates of a key. The executors stage the batch with
Spark's JDBC writer; the sink (:mod:`app.ingest.sink`) commits each Kafka partition with its ledger row
in a transaction of its own, several at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from app.common.jobs import INGEST_SUMMARY_PREFIX
from app.common.spark import kafka_auth_options
from app.ingest import sink
from app.ingest.schema import FIELDS, FLAG_FIELDS, SCHEMA_VERSION, STATE_HOLIDAYS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

    from app.config import Settings

TRIGGERS = ("available-now", "processing-time")
SUMMARY_PREFIX = INGEST_SUMMARY_PREFIX


def parse_args(argv: Sequence[str], settings: Settings) -> argparse.Namespace:
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
        "--kafka-option", action="append", default=[], metavar="KEY=VALUE", help="Kafka source option (wins over SFMLOPS_KAFKA_AUTH's)"
    )
    args = parser.parse_args(list(argv))
    if args.max_offsets_per_trigger < 1:
        parser.error("--max-offsets-per-trigger must be >= 1")
    for item in args.kafka_option:
        if "=" not in item:
            parser.error(f"--kafka-option {item!r} must be KEY=VALUE")
    return args


def checkpoint_location(settings: Settings, override: str | None) -> str:
    """The checkpoint folder: the override, the ``ingest_checkpoint`` setting or the S3 bucket."""
    return override or settings.ingest_checkpoint or f"s3a://{settings.bucket_checkpoints}/sales_stream"


def ensure_bucket(settings: Settings, location: str) -> None:
    """Create the checkpoint bucket on the emulator (local profile only; on AWS Terraform owns it)."""
    if not location.startswith("s3a://") or settings.profile != "local" or not settings.aws_endpoint_url:
        return
    bucket = location[len("s3a://") :].split("/", 1)[0]
    s3 = settings.boto3_client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - botocore raises ClientError subclasses by code
        s3.create_bucket(Bucket=bucket)


#: Shuffle partitions of the job's SQL (the window over a micro-batch): ``ingest_shuffle_partitions``.
SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"


def build_session(settings: Settings, app_name: str = "sfmlops-sales-stream") -> SparkSession:
    """A SparkSession with s3a pointed at the configured endpoint; jars come from spark-submit.

    ``spark.sql.shuffle.partitions`` is ``settings.ingest_shuffle_partitions`` unless spark-submit's
    ``--conf spark.sql.shuffle.partitions=N`` (or spark-defaults) set it: that one wins.
    """
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "50000")
        # Spark >= 4.1 also cuts Arrow batches by size (4.0 ignores it; the rows are bounded anyway).
        .config("spark.sql.execution.arrow.maxBytesPerBatch", str(64 * 1024 * 1024))
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
    spark = builder.getOrCreate()
    # The setting, unless spark-submit (--conf, spark-defaults: in the context's conf) already chose one.
    if not spark.sparkContext.getConf().contains(SHUFFLE_PARTITIONS):
        spark.conf.set(SHUFFLE_PARTITIONS, str(settings.ingest_shuffle_partitions))
    return spark


def json_schema():  # pyspark type
    """The explicit schema of a record, plus the corrupt-record column."""
    from pyspark.sql import types as T

    kinds = {"int": T.IntegerType(), "str": T.StringType()}
    fields = [T.StructField(name, kinds[kind]) for name, kind in FIELDS.items()]
    return T.StructType([*fields, T.StructField("_corrupt_record", T.StringType())])


#: Up to this store id the known stores are checked with a bitmap literal, above it with IN (...).
BITMAP_MAX_STORE = 100_000


def _known_store(store: Column, known_stores: Sequence[int]) -> Column:
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
) -> tuple[Column, dict[str, Column]]:
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
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt_record", "allowSingleQuotes": "false"}
    j = F.from_json(text, json_schema(), options)
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
    # A reason quotes record content (a date, a state holiday): PostgreSQL text refuses NUL, and a quoted
    # string can be as long as the record, so NULs become U+FFFD and the text is cut at REASON_MAX_CHARS.
    reason = F.regexp_replace(reason, "\\x00", "\uFFFD")
    cut = F.concat(F.substring(reason, 1, REASON_MAX_CHARS), F.lit("…"))
    reason = F.when(F.length(reason) > REASON_MAX_CHARS, cut).otherwise(reason)
    parsed = {name: col for name, col in field.items() if name != "schema_version"}
    parsed["date"] = day
    return reason, parsed


#: Rejection reasons are cut to this many characters (they quote record content).
REASON_MAX_CHARS = 500
#: Columns of a staged row besides payload, key and reason (coordinates, typed fields, CSV framing).
STAGED_ROW_FIXED_BYTES = 256


def staged_record_bytes(settings: Settings) -> int:
    """The most bytes one record can occupy once staged (the window's shuffle and the staging table).

    A valid record keeps its key and value cut to ``ingest_dead_letter_payload_bytes`` (for the dead
    letter of a superseded duplicate) plus a SHA-256; a rejected one the hex text of both (twice the
    bytes), the SHA-256 and a reason of at most :data:`REASON_MAX_CHARS` characters (4 bytes each at most).
    """
    limit = settings.ingest_dead_letter_payload_bytes
    return 2 * (2 * limit + 2) + 2 * 66 + 4 * REASON_MAX_CHARS + STAGED_ROW_FIXED_BYTES


def batch_record_cap(settings: Settings, max_offsets_per_trigger: int) -> int:
    """Records per micro-batch: the record cap, lowered so that a batch holds at most
    ``ingest_max_batch_bytes`` (the Kafka source has no byte limit of its own; see spark_jobs/README.md)."""
    return max(1, min(max_offsets_per_trigger, settings.ingest_max_batch_bytes // staged_record_bytes(settings)))


def staged(batch: DataFrame, known_stores: Sequence[int], settings: Settings, batch_id: int) -> DataFrame:
    """The Kafka batch as staging rows (:data:`app.ingest.sink.STAGING_COLUMNS`), all in Spark SQL.

    Every record gets its coordinates, its rejection reason (NULL = valid) and, if valid, its typed fields.
    Record content can never fail the batch: typed fields are kept for valid rows only (a rejected row's
    values may be beyond the staging column types, e.g. an int beyond SMALLINT or a long state holiday)
    and cast with ``try_cast``; reasons are NUL-free and bounded.

    Duplicates of a (store, date) key in the batch: a window over the key keeps the record with the
    highest (partition, offset) valid and rejects the others (``duplicate: ... kept``), so the staged valid
    rows hold each key once and the Kafka partitions of the batch commit independently.

    A rejected row carries its dead letter: the payload and key bytes cut to
    ``ingest_dead_letter_payload_bytes``, the full length and the SHA-256 of the whole payload.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    reason, parsed = reason_column(
        known_stores, settings.ingest_max_message_bytes, settings.ingest_max_future_days, settings.ingest_min_date
    )
    limit = settings.ingest_dead_letter_payload_bytes
    small = {"day_of_week", "open", "promo", "school_holiday"}
    checked = batch.select(
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        reason.alias("reason"),
        *[col.alias(name) for name, col in parsed.items()],
        F.col("key"),
        F.col("value"),
    )
    ok = F.col("reason").isNull()
    # Only bounded bytes go on through the window's shuffle: the cut key and value, the full length, and
    # the SHA-256 where the cut value is not the whole payload (or the record is already rejected).
    size = F.octet_length("value")
    checked = checked.select(
        *[c for c in checked.columns if c not in ("key", "value")],
        F.substring(F.col("key"), 1, limit).alias("key"),
        F.substring(F.col("value"), 1, limit).alias("value"),
        size.cast("int").alias("payload_bytes"),
        F.when(~ok | (size > limit), F.unhex(F.sha2(F.col("value"), 256))).alias("payload_sha256"),
    )
    # Valid rows group by key; each rejected row is a group of its own (its coordinates).
    key = Window.partitionBy(
        F.when(ok, F.col("store")), F.when(ok, F.col("date")),
        F.when(~ok, F.col("kafka_partition")), F.when(~ok, F.col("kafka_offset")),
    ).orderBy(F.col("kafka_partition").desc(), F.col("kafka_offset").desc())
    ranked = checked.select(
        "*",
        F.row_number().over(key).alias("_rank"),
        F.first("kafka_partition").over(key).alias("_win_partition"),
        F.first("kafka_offset").over(key).alias("_win_offset"),
    )
    duplicate = ok & (F.col("_rank") > 1)
    final_reason = F.when(
        duplicate,
        F.format_string(
            "duplicate: (%d, %s) sent again in the same batch (partition %d, offset %d kept)",
            F.col("store"), F.col("date").cast("string"), F.col("_win_partition"), F.col("_win_offset"),
        ),
    ).otherwise(F.col("reason"))
    keep = ok & ~duplicate
    bad = ~keep
    return ranked.select(
        F.lit(int(batch_id)).cast("long").alias("batch_id"),
        "topic",
        "kafka_partition",
        "kafka_offset",
        "kafka_timestamp",
        final_reason.alias("reason"),
        *[F.when(keep, F.col(name).try_cast("short") if name in small else F.col(name)).alias(name) for name in parsed],
        F.when(bad, F.col("key")).alias("kafka_key"),
        F.when(bad, F.col("value")).alias("payload"),
        F.when(bad, F.col("payload_bytes")).alias("payload_bytes"),
        # a superseded duplicate no longer than the cut: its cut value is the whole payload
        F.when(bad, F.coalesce(F.col("payload_sha256"), F.unhex(F.sha2(F.col("value"), 256)))).alias("payload_sha256"),
    )


class _Batches:
    """The foreachBatch function and what it has done in this run."""

    def __init__(self, settings: Settings, topic: str, lock: sink.DriverLock | None = None) -> None:
        self.settings = settings
        self.topic = topic
        self.lock = lock
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
        from app.monitoring import ingest_metrics

        self.metrics = ingest_metrics(settings, topic)  # pushed to the Pushgateway after each batch

    def conn(self):
        from app.db import connect

        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings)
        return self._conn

    def close(self) -> None:
        """Drop the driver's connection (after a failure it may be broken)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self._conn = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = dt.datetime.now(dt.UTC)
        if not self.ready.wait(120):
            raise RuntimeError("streaming query id not known after 120 s")
        assert self.query_id is not None
        if self.lock is not None:
            self.lock.check()  # still the only driver of this checkpoint (takes the lock again after a restart)
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
        t_stage = time.time()
        sink.write_staging(staged(batch, stores, self.settings, batch_id), self.settings, table)
        t_commit = time.time()
        result = sink.commit_batch(self.settings, self.query_id, batch_id, self.topic, started)
        if not result["committed"]:
            self.stats["skipped_batches"] += 1
            return
        rows, rejected = result["rows"], result["rejected"]
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
        self.metrics.batch(
            rows, rejected, result["upserted"], t_stage - started.timestamp(), t_commit - t_stage, self.stats["last_commit"] - t_commit
        )


def kafka_source_options(settings: Settings, kafka_option: Sequence[str]) -> dict[str, str]:
    """The Kafka connection options of the source and of :class:`GroupOffsets`: the authentication that
    ``SFMLOPS_KAFKA_AUTH`` names (MSK IAM on AWS, :func:`app.common.spark.kafka_auth_options`), then each
    ``--kafka-option KEY=VALUE``, which wins."""
    return {**kafka_auth_options(settings.kafka_auth), **dict(item.split("=", 1) for item in kafka_option)}


class GroupOffsets:
    """Commits the end offsets of each committed micro-batch to Kafka for ``settings.kafka_consumer_group``.

    Monitoring only. Spark's Kafka source keeps its progress in the checkpoint and commits nothing to Kafka, so
    Kafka itself (MSK's per-group ``MaxOffsetLag`` and its alarm, ``kafka-consumer-groups.sh``) would see no
    consumer group. The checkpoint and the database ledger stay the source of truth: the group's offsets are
    never read back, and a commit that fails is printed and never fails the job.

    The commit goes through the driver JVM's Kafka admin client (kafka-clients, which the Kafka source brings)
    with the source's own connection options (``--kafka-option kafka.*``, e.g. MSK's IAM authentication), so it
    needs nothing on EMR that the job lacks. The group has no members (the source's consumers use their own
    generated groups), which is what committing offsets for it needs.
    """

    TIMEOUT_S = 10

    def __init__(self, spark: SparkSession, settings: Settings, kafka_options: dict[str, str]) -> None:
        self.group = settings.kafka_consumer_group
        self._jvm: Any = spark.sparkContext._jvm
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": "sfmlops-ingest-group-offsets",
            **{key.removeprefix("kafka."): value for key, value in kafka_options.items() if key.startswith("kafka.")},
        }
        self._admin: Any = None
        self._lock = threading.Lock()  # the listener's thread and the driver's main thread both commit

    def commit(self, end_offset: object) -> bool:
        """Commit a progress' end offsets (:func:`app.common.spark.kafka_offsets`' input) for the group."""
        from app.common.spark import kafka_offsets

        offsets = kafka_offsets(end_offset)
        if not offsets:
            return False
        with self._lock:
            return self._commit(offsets)

    def _commit(self, offsets: dict[str, dict[str, int]]) -> bool:
        jvm = self._jvm
        try:
            if self._admin is None:
                props = jvm.java.util.Properties()
                for key, value in self._config.items():
                    props.setProperty(key, str(value))
                self._admin = jvm.org.apache.kafka.clients.admin.AdminClient.create(props)
            partitions = jvm.java.util.HashMap()
            for topic, parts in offsets.items():
                for partition, offset in parts.items():
                    partitions.put(jvm.org.apache.kafka.common.TopicPartition(topic, int(partition)),
                                   jvm.org.apache.kafka.clients.consumer.OffsetAndMetadata(int(offset)))
            result = self._admin.alterConsumerGroupOffsets(self.group, partitions)
            result.all().get(self.TIMEOUT_S, jvm.java.util.concurrent.TimeUnit.SECONDS)
            return True
        except Exception as exc:  # noqa: BLE001 - py4j/Kafka errors: monitoring never fails the job
            print(f"consumer group {self.group}: committing {offsets} to Kafka failed (monitoring only): {exc}", flush=True)
            return False

    def close(self) -> None:
        with self._lock:
            if self._admin is not None:
                try:
                    self._admin.close()
                except Exception:  # noqa: BLE001 - the JVM may be stopping
                    pass
                self._admin = None


def progress_listener(metrics: Any, offsets: GroupOffsets) -> Any:  # IngestMetrics or its stand-in
    """A pyspark ``StreamingQueryListener``: after each micro-batch (its progress comes once the batch committed),
    the source's offsets go to the metrics (:meth:`app.monitoring.metrics.IngestMetrics.progress`, pushed) and its
    end offsets to the consumer group (:class:`GroupOffsets`)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class _Progress(StreamingQueryListener):
        def onQueryStarted(self, event: Any) -> None:  # pyspark's names
            pass

        def onQueryProgress(self, event: Any) -> None:
            for source in event.progress.sources:
                metrics.progress(source.endOffset, source.latestOffset)
                offsets.commit(source.endOffset)

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            pass

    return _Progress()


def die_with_parent() -> None:
    """End this process when its parent does (Linux ``PR_SET_PDEATHSIG``): the driver's parent is the
    spark-submit JVM, and a driver outliving it would keep its checkpoint lock and Postgres sessions."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import os

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


#: Error text of a query failure that says Kafka or PostgreSQL was unreachable (worth a restart).
UNREACHABLE = {
    "Kafka": (
        "org.apache.kafka.common.errors.TimeoutException",
        "Timed out waiting for a node assignment",
        "Cannot fetch record",
        "DisconnectException",
        "Failed to get offsets by times",
        "Timeout of",
    ),
    "PostgreSQL": (
        "psycopg2.OperationalError",
        "psycopg2.InterfaceError",
        "server closed the connection unexpectedly",
        "terminating connection due to administrator command",
        "the database system is starting up",
        "the database system is shutting down",
        "connection already closed",
    ),
}


def unreachable(error: str) -> str | None:
    """``"Kafka"`` or ``"PostgreSQL"`` when the query failed because that service was unreachable."""
    for service, markers in UNREACHABLE.items():
        if any(m in error for m in markers):
            return service
    return None


def failure_hint(settings: Settings, error: str) -> str:
    """What the operator should do about a failed query (printed after the summary)."""
    service = unreachable(error)
    rerun = "then run `sfmlops ingest` again: the checkpoint and the batch ledger make the rerun exactly-once"
    if service == "Kafka":
        return f"Kafka at {settings.kafka_bootstrap} was unreachable; check it (`sfmlops status`), {rerun}."
    if service == "PostgreSQL":
        return f"PostgreSQL at {settings.pg_host}:{settings.pg_port} was unreachable; check it (`sfmlops status`), {rerun}."
    return f"the streaming query failed (see the error above); fix the cause, {rerun}."


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the streaming query until availableNow is drained (or ``--run-seconds`` / SIGTERM).

    A second driver on the same checkpoint refuses to start (exit 2); a query that failed because Kafka
    or PostgreSQL was unreachable is restarted from its checkpoint up to ``ingest_query_restarts`` times.
    """
    from app.config import get_settings
    from app.db import transaction

    die_with_parent()
    settings = get_settings()
    args = parse_args(sys.argv[1:] if argv is None else argv, settings)
    location = checkpoint_location(settings, args.checkpoint)
    lock = sink.DriverLock(settings)
    try:
        lock.acquire(f"sfmlops-ingest checkpoint {sink.normalized_checkpoint(location)}")
    except sink.DriverBusy as exc:
        print(f"ingest refused: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    ensure_bucket(settings, location)
    spark = build_session(settings)
    spark.sparkContext.setLogLevel("WARN")
    max_offsets = batch_record_cap(settings, args.max_offsets_per_trigger)
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap)
        .option("subscribe", args.topic)
        .option("startingOffsets", args.starting_offsets)
        .option("maxOffsetsPerTrigger", str(max_offsets))
        .option("kafka.max.partition.fetch.bytes", str(8 * 1024 * 1024))
    )
    if args.min_partitions:
        reader = reader.option("minPartitions", str(args.min_partitions))
    kafka_options = kafka_source_options(settings, args.kafka_option)
    for key, value in kafka_options.items():
        reader = reader.option(key, value)
    handler = _Batches(settings, args.topic, lock)
    # after each micro-batch: per-partition offsets / lag to the Pushgateway, end offsets to the consumer group
    group = GroupOffsets(spark, settings, kafka_options)
    spark.streams.addListener(progress_listener(handler.metrics, group))
    writer = reader.load().writeStream.foreachBatch(handler).option("checkpointLocation", location)
    writer = writer.trigger(availableNow=True) if args.trigger == "available-now" else writer.trigger(processingTime=args.interval)
    started = time.time()
    stopping = threading.Event()
    current: list[Any] = []

    def _stop(signum: int, _frame: object) -> None:  # graceful stop on SIGTERM/SIGINT
        print(f"signal {signum}: stopping the query after the current batch", flush=True)
        stopping.set()
        if current:
            threading.Thread(target=current[-1].stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    restarts = 0
    deadline = started + args.run_seconds if args.trigger == "processing-time" and args.run_seconds > 0 else None
    while True:
        handler.ready.clear()
        query = writer.start()
        current.append(query)
        handler.query_id = str(query.id)
        query_lock = f"sfmlops-ingest query {handler.query_id}"
        try:
            if query_lock not in lock.names:
                lock.acquire(query_lock)
        except sink.DriverBusy as exc:
            query.stop()
            print(f"ingest refused: {exc}", file=sys.stderr, flush=True)
            spark.stop()
            raise SystemExit(2) from None
        if restarts == 0:
            with transaction(settings) as conn:
                sink.ensure_staging(conn, settings, handler.query_id)
        handler.ready.set()
        if stopping.is_set():
            query.stop()
        try:  # awaitTermination raises the query's exception; query.exception() below reports it
            if deadline is not None:
                query.awaitTermination(max(0.0, deadline - time.time()))
                query.stop()
            else:
                query.awaitTermination()
        except Exception:  # noqa: BLE001 - StreamingQueryException (pyspark's class moved between versions)
            pass
        error = query.exception()
        service = None if error is None else unreachable(str(error))
        if service is None or stopping.is_set() or restarts >= settings.ingest_query_restarts:
            break
        if deadline is not None and time.time() >= deadline:
            break
        restarts += 1
        delay = min(60, 5 * 2 ** (restarts - 1))
        print(
            f"query failed: {service} was unreachable ({str(error).splitlines()[0][:300]}); restarting it from the "
            f"checkpoint in {delay}s (restart {restarts} of {settings.ingest_query_restarts})",
            flush=True,
        )
        handler.close()
        time.sleep(delay)
    # The last progress' end offsets once more, now: its listener event may still be queued when the query ends.
    last_progress = current[-1].lastProgress if current else None
    for source in last_progress.sources if last_progress is not None else []:
        group.commit(source.endOffset)
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
        "max_offsets_per_trigger": max_offsets,
        "restarts": restarts,
        "stage_seconds": round(last - first, 3) if first and last else 0.0,
        "wall_seconds": round(time.time() - started, 3),
        "error": None if error is None else str(error)[:2000],
    }
    print(SUMMARY_PREFIX + json.dumps(summary), flush=True)
    if error is not None:
        print(f"ingest failed: {failure_hint(settings, str(error))}", file=sys.stderr, flush=True)
    spark.stop()
    group.close()
    lock.close()
    if error is not None:
        raise SystemExit(1)
    return summary
