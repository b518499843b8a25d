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


def _commit(settings: Settings, batch_id: int, rows_in: int, rejected: int, dedupe: bool) -> dict:
    from app.db import connect

    conn = connect(settings)
    try:
        now = dt.datetime.now(dt.timezone.utc)
        return sink.commit_batch(conn, settings, QUERY, batch_id, "t", rows_in, rejected, now, dedupe=dedupe)
    finally:
        conn.close()


def _sales(settings: Settings) -> dict[tuple[int, str], int]:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT store, date, sales FROM {settings.table_sales}")
        return {(store, str(day)): sales for store, day, sales in cur.fetchall()}


def test_stores_overlap() -> None:
    assert not sink.stores_overlap([[1, 2], [3], []])
    assert sink.stores_overlap([[1, 2], [3], [2]])


def test_split_upsert_inserts_new_updates_changed_and_skips_unchanged(ingest_settings: Settings) -> None:
    s = ingest_settings
    _stage(s, 0, [(0, 0, 1, "2015-06-01", 100), (0, 1, 2, "2015-06-01", 200), (1, 0, "bad")])
    first = _commit(s, 0, 3, 1, dedupe=False)
    assert first == {"committed": True, "upserted": 2, "dead_lettered": 1, "rejected": 1}
    # batch 1: store 1 unchanged, store 2 changed, store 3 new
    _stage(s, 1, [(0, 2, 1, "2015-06-01", 100), (0, 3, 2, "2015-06-01", 250), (0, 4, 3, "2015-06-01", 300)])
    second = _commit(s, 1, 3, 0, dedupe=False)
    assert second["upserted"] == 2, second  # the unchanged row is not rewritten
    assert _sales(s) == {(1, "2015-06-01"): 100, (2, "2015-06-01"): 250, (3, "2015-06-01"): 300}
    # a replayed batch changes nothing
    assert _commit(s, 1, 3, 0, dedupe=False)["committed"] is False


def test_split_upsert_falls_back_when_keys_repeat(ingest_settings: Settings) -> None:
    """Staged rows that repeat a key (e.g. a task retried after its COPY committed) cannot take the fast
    path: the unique violation rolls back to the savepoint and the general upsert keeps the newest."""
    s = ingest_settings
    _stage(s, 0, [(0, 0, 1, "2015-06-01", 100), (1, 7, 1, "2015-06-01", 999), (0, 1, 2, "2015-06-01", 200)])
    result = _commit(s, 0, 3, 0, dedupe=False)
    assert result["committed"] and result["upserted"] == 2
    assert _sales(s) == {(1, "2015-06-01"): 999, (2, "2015-06-01"): 200}


def test_dedupe_keeps_the_newest_record_per_key(ingest_settings: Settings) -> None:
    s = ingest_settings
    _stage(s, 0, [(2, 5, 1, "2015-06-01", 500), (3, 1, 1, "2015-06-01", 700), (0, 9, 4, "2015-06-02", 40)])
    result = _commit(s, 0, 3, 0, dedupe=True)
    assert result["upserted"] == 2
    assert _sales(s) == {(1, "2015-06-01"): 700, (4, "2015-06-02"): 40}
    # The superseded record (from another task) is a dead letter, so every record ends in one place.
    assert result["dead_lettered"] == 1 and result["rejected"] == 1
    from app.db import transaction

    with transaction(s) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT kafka_partition, kafka_offset, reason FROM {s.table_dead_letter}")
        assert cur.fetchall() == [(2, 5, "duplicate: (1, 2015-06-01) sent again in the same batch (partition 3, offset 1 kept)")]
        cur.execute(f"SELECT rows_in, rows_valid, rows_rejected FROM {s.table_ledger}")
        assert cur.fetchall() == [(3, 2, 1)]


def _arrow_batch(offsets, stores, days):  # noqa: ANN001, ANN202 - numpy arrays
    import numpy as np
    import pyarrow as pa

    n = len(offsets)
    return pa.RecordBatch.from_pydict({
        "topic": pa.array(["t"] * n),
        "kafka_partition": pa.array(np.zeros(n, np.int32)),
        "kafka_offset": pa.array(offsets.astype(np.int64)),
        "kafka_timestamp": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
        "reason": pa.array([None] * n, pa.string()),
        "store": pa.array(stores.astype(np.int32)),
        "date": pa.array(days.astype(np.int32)).cast(pa.date32()),
        "day_of_week": pa.array(np.ones(n, np.int16)),
        "sales": pa.array(offsets.astype(np.int32)),
        "customers": pa.array(np.ones(n, np.int32)),
        "open": pa.array(np.ones(n, np.int16)),
        "promo": pa.array(np.zeros(n, np.int16)),
        "state_holiday": pa.array(["0"] * n),
        "school_holiday": pa.array(np.zeros(n, np.int16)),
        "kafka_key": pa.array([str(s).encode() for s in stores]),
        "value": pa.array([f'{{"offset":{o}}}'.encode() for o in offsets]),
        "kafka_key_hex": pa.array([None] * n, pa.string()),
        "payload_hex": pa.array([None] * n, pa.string()),
        "payload_sha256_hex": pa.array([None] * n, pa.string()),
        "payload_bytes": pa.array([len(f'{{"offset":{o}}}') for o in offsets], pa.int32()),
    })


def test_stage_partition_marks_every_superseded_duplicate(ingest_settings: Settings) -> None:
    """A topic replayed twice into one batch: every key twice, across Arrow batches of the task. The later
    record of each key stays valid; the earlier one is rejected with its raw payload and a reason."""
    import numpy as np

    from app.db import transaction

    s = ingest_settings
    offsets = np.arange(20_000)
    stores, days = offsets % 100 + 1, 16_000 + (offsets // 100) % 100  # keys repeat every 10,000 records
    batches = [_arrow_batch(offsets[i:i + 3_000], stores[i:i + 3_000], days[i:i + 3_000]) for i in range(0, 20_000, 3_000)]
    with transaction(s) as conn:
        table = sink.ensure_staging(conn, s, QUERY)
    (out,) = list(sink.stage_partition(s.pg_dsn(), table, 3)(iter(batches)))
    assert out.to_pydict()["rows"] == [20_000] and out.to_pydict()["rejected"] == [10_000]
    assert out.to_pydict()["stores"] == [list(range(1, 101))]
    with transaction(s) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT min(kafka_offset), max(kafka_offset), count(*) FROM {table} WHERE reason IS NULL")
        assert cur.fetchone() == (10_000, 19_999, 10_000)
        cur.execute(f"SELECT reason, convert_from(payload, 'UTF8'), payload_bytes, payload_sha256 FROM {table} WHERE kafka_offset = 5")
        reason, payload, size, digest = cur.fetchone()
    assert reason == "duplicate: (6, 2013-10-22) sent again in the same batch (partition 0, offset 10005 kept)"
    assert payload == '{"offset":5}' and size == len(payload)
    assert bytes(digest) == hashlib.sha256(payload.encode()).digest()
