"""The driver's commit of a staged batch, on the real Postgres (no Spark needed: rows are staged by SQL)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from app.config import Settings
from app.ingest import sink

pytestmark = pytest.mark.integration

QUERY = "test-commit-query"


def _stage(settings: Settings, batch_id: int, rows: list[tuple]) -> None:
    """Stage valid rows ``(partition, offset, store, day, sales)`` and rejected ones ``(partition, offset, reason)``."""
    from app.db import transaction

    with transaction(settings) as conn:
        table = sink.ensure_staging(conn, settings, QUERY)
        with conn.cursor() as cur:
            for row in rows:
                if len(row) == 3:
                    part, offset, reason = row
                    cur.execute(
                        f"INSERT INTO {table} (batch_id, topic, kafka_partition, kafka_offset, reason, payload) "
                        "VALUES (%s, 't', %s, %s, %s, %s)",
                        (batch_id, part, offset, reason, b"{oops"),
                    )
                    continue
                part, offset, store, day, sales = row
                date = dt.date.fromisoformat(day)
                cur.execute(
                    f"INSERT INTO {table} (batch_id, topic, kafka_partition, kafka_offset, store, date, day_of_week, "
                    "sales, customers, open, promo, state_holiday, school_holiday) "
                    "VALUES (%s, 't', %s, %s, %s, %s, %s, %s, 10, 1, 0, '0', 0)",
                    (batch_id, part, offset, store, date, date.isoweekday(), sales),
                )


def _commit(settings: Settings, batch_id: int) -> dict:
    return sink.commit_batch(settings, QUERY, batch_id, "t", dt.datetime.now(dt.UTC))


def _sales(settings: Settings) -> dict[tuple[int, str], int]:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT store, date, sales FROM {settings.table_sales}")
        return {(store, str(day)): sales for store, day, sales in cur.fetchall()}


def test_partitions_commit_inserts_new_updates_changed_and_skips_unchanged(ingest_settings: Settings) -> None:
    s = ingest_settings
    _stage(s, 0, [(0, 0, 1, "2015-06-01", 100), (1, 0, 2, "2015-06-01", 200), (1, 1, "bad")])
    first = _commit(s, 0)
    assert first == {"committed": True, "rows": 3, "rejected": 1, "upserted": 2, "dead_lettered": 1,
                     "partitions": 2, "partitions_skipped": 0}
    # batch 1: store 1 unchanged, store 2 changed, store 3 new, over three partitions
    _stage(s, 1, [(0, 2, 1, "2015-06-01", 100), (1, 3, 2, "2015-06-01", 250), (2, 4, 3, "2015-06-01", 300)])
    second = _commit(s, 1)
    assert second["upserted"] == 2 and second["partitions"] == 3, second  # the unchanged row is not rewritten
    assert _sales(s) == {(1, "2015-06-01"): 100, (2, "2015-06-01"): 250, (3, "2015-06-01"): 300}
    # a replayed batch changes nothing
    assert _commit(s, 1)["committed"] is False
    from ingest_helpers import query

    assert query(s, "SELECT batch_id, rows_in, rows_valid, rows_rejected, rows_upserted FROM {table_ledger} ORDER BY 1") == [
        (0, 3, 2, 1, 2), (1, 3, 3, 0, 2)]
    assert query(s, "SELECT count(*) FROM {table_ledger}_partitions") == [(5,)]


def test_a_partition_committed_by_a_crashed_attempt_is_skipped(ingest_settings: Settings) -> None:
    """The driver died after partition 0 of batch 0 committed: the retry stages the batch again, commits
    partitions 1 and 2 only, and the batch's ledger row counts every record once."""
    from app.db import connect

    s = ingest_settings
    rows = [(0, 0, 1, "2015-06-01", 100), (1, 0, 2, "2015-06-01", 200), (2, 0, 3, "2015-06-01", 300), (2, 1, "bad")]
    _stage(s, 0, rows)
    conn = connect(s)
    try:
        now = dt.datetime.now(dt.UTC)
        assert sink.commit_partition(conn, s, QUERY, 0, "t", 0, 1, 0, now)["committed"]
        # the partition's rows are in sales already; the batch is not complete yet
        assert _sales(s) == {(1, "2015-06-01"): 100}
        assert sink.begin_batch(conn, s, QUERY, 0) is True  # the retry empties the staging table ...
    finally:
        conn.close()
    _stage(s, 0, rows)  # ... and Spark stages the same offsets again
    result = _commit(s, 0)
    assert result["committed"] and result["partitions"] == 3 and result["partitions_skipped"] == 1
    assert result["rows"] == 4 and result["rejected"] == 1 and result["upserted"] == 3
    assert _sales(s) == {(1, "2015-06-01"): 100, (2, "2015-06-01"): 200, (3, "2015-06-01"): 300}
    from ingest_helpers import query

    assert query(s, "SELECT count(*) FROM {table_dead_letter}") == [(1,)]
    assert query(s, "SELECT rows_in, rows_rejected, rows_upserted FROM {table_ledger}") == [(4, 1, 3)]


def test_partition_commit_falls_back_when_keys_repeat(ingest_settings: Settings) -> None:
    """Staged rows that repeat a key (e.g. a JDBC task retried after it committed) cannot take the fast
    path: the unique violation rolls back to the savepoint and the general upsert keeps the newest."""
    s = ingest_settings
    _stage(s, 0, [(0, 0, 1, "2015-06-01", 100), (0, 7, 1, "2015-06-01", 999), (0, 1, 2, "2015-06-01", 200)])
    result = _commit(s, 0)
    assert result["committed"] and result["upserted"] == 2
    assert _sales(s) == {(1, "2015-06-01"): 999, (2, "2015-06-01"): 200}


def test_staged_marks_every_superseded_duplicate_in_spark(ingest_settings: Settings, rossmann) -> None:
    """A topic replayed twice into one batch, over two partitions: every key twice. The record with the
    higher (partition, offset) stays valid; the other is rejected with its payload, length, SHA-256 and a
    reason naming the kept one; a malformed record keeps its own reason."""
    import json

    from ingest_helpers import record
    from pyspark.sql import SparkSession
    from pyspark.sql import types as T

    from app.ingest.job import staged

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").config(
        "spark.sql.session.timeZone", "UTC").config("spark.sql.shuffle.partitions", "2").getOrCreate()
    try:
        rows = []
        for copy in range(2):
            for i in range(200):
                rec = record(i % 100 + 1, f"2015-05-{i // 100 + 1:02d}", sales=copy)
                rows.append(("t", copy, i, dt.datetime(2015, 5, 1), str(rec["store"]).encode(), json.dumps(rec).encode()))
        rows.append(("t", 0, 999, dt.datetime(2015, 5, 1), b"1", b"{oops"))
        schema = T.StructType([T.StructField("topic", T.StringType()), T.StructField("partition", T.IntegerType()),
                               T.StructField("offset", T.LongType()), T.StructField("timestamp", T.TimestampType()),
                               T.StructField("key", T.BinaryType()), T.StructField("value", T.BinaryType())])
        out = staged(spark.createDataFrame(rows, schema), list(range(1, 1116)), ingest_settings, 7).collect()
    finally:
        spark.stop()
    assert list(out[0].asDict()) == sink.STAGING_COLUMNS
    valid = [r for r in out if r["reason"] is None]
    assert len(out) == 401 and len(valid) == 200
    assert {r["kafka_partition"] for r in valid} == {1} and all(r["sales"] == 1 and r["payload"] is None for r in valid)
    lost = {r["kafka_offset"]: r for r in out if r["reason"] and r["reason"].startswith("duplicate")}
    assert len(lost) == 200 and {r["kafka_partition"] for r in lost.values()} == {0}
    loser = lost[5]
    assert loser["reason"] == "duplicate: (6, 2015-05-01) sent again in the same batch (partition 1, offset 5 kept)"
    assert loser["payload"] == json.dumps(record(6, "2015-05-01", sales=0)).encode() and loser["store"] is None
    assert loser["payload_bytes"] == len(loser["payload"])
    assert bytes(loser["payload_sha256"]) == hashlib.sha256(loser["payload"]).digest()
    (bad,) = [r for r in out if r["kafka_offset"] == 999]
    assert bad["reason"].startswith("malformed JSON") and bad["payload"] == b"{oops" and bad["batch_id"] == 7
