"""Exactly-once sink of the streaming job: parallel COPY into staging, one upsert transaction per batch.

Per micro-batch:

1. :func:`begin_batch` (driver) returns ``False`` when the ledger already holds ``(query id, batch id)``
   (Spark replays the last batch after a crash; it then changes nothing); otherwise it empties the
   query's staging table of rows left by a crashed attempt.
2. :func:`stage_partition` (executors, through ``mapInArrow``) marks in-batch duplicates, renders the
   rows as CSV with pyarrow and ``COPY``s them into the query's UNLOGGED staging table, one connection
   per task, so the load runs in parallel.
3. :func:`commit_batch` (driver) in ONE transaction: dead letters (keyed by Kafka coordinates),
   ``INSERT ... SELECT DISTINCT ON (store, date) ... ON CONFLICT DO UPDATE`` into sales (rows whose
   values did not change are not touched), the ledger row, and emptying the staging table.

Everything here but :func:`stage_partition` runs on the driver.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from typing import TYPE_CHECKING, Callable, Iterator

from app.ingest.schema import SALES_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from app.config import Settings

#: columns the executors send, in the staging table's order (see app/sql/010_ingest.sql).
STAGING_COLUMNS = [
    "batch_id",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "reason",
    *SALES_COLUMNS,
    "kafka_key",
    "payload",
    "payload_bytes",
]


def staging_table(settings: "Settings", query_id: str) -> str:
    """The per-query staging table name (Postgres identifiers are limited to 63 bytes)."""
    digest = hashlib.sha1(query_id.encode()).hexdigest()[:12]
    return f"{settings.table_ingest_staging[:50]}_{digest}"


def ensure_staging(conn, settings: "Settings", query_id: str) -> str:  # noqa: ANN001 - psycopg2 connection
    """Create the query's staging table from the template if needed; returns its name."""
    name = staging_table(settings, query_id)
    with conn.cursor() as cur:
        cur.execute(f"CREATE UNLOGGED TABLE IF NOT EXISTS {name} (LIKE {settings.table_ingest_staging})")
    conn.commit()
    return name


def drop_staging(conn, settings: "Settings", query_id: str) -> None:  # noqa: ANN001
    """Drop the query's staging table (at a clean end of the query)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {staging_table(settings, query_id)}")
    conn.commit()


def known_stores(conn, settings: "Settings") -> list[int]:  # noqa: ANN001
    """Store ids in the stores table."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT store FROM {settings.table_stores} ORDER BY store")
        return [row[0] for row in cur.fetchall()]


def begin_batch(conn, settings: "Settings", query_id: str, batch_id: int) -> bool:  # noqa: ANN001
    """Returns False if the batch is already committed; otherwise clears leftovers of a crashed attempt."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT 1 FROM {settings.table_ledger} WHERE query_id = %s AND batch_id = %s", (query_id, batch_id)
        )
        if cur.fetchone():
            conn.commit()
            return False
        cur.execute(f"TRUNCATE {staging_table(settings, query_id)}")
    conn.commit()
    return True


def _hex_bytea(values: "pa.Array", rows: "list[int]") -> list[str | None]:
    out: list[str | None] = []
    for i in rows:
        value = values[i].as_py()
        out.append(None if value is None else "\\x" + value.hex())
    return out


def stage_partition(
    dsn: str, table: str, batch_id: int, topic_col: str = "topic"
) -> Callable[[Iterator["pa.RecordBatch"]], Iterator["pa.RecordBatch"]]:
    """The ``mapInArrow`` function that COPYs one task's rows into the staging table.

    Input batches carry ``topic, kafka_partition, kafka_offset, kafka_timestamp, reason``, the sales
    columns, ``kafka_key`` and ``value`` (raw bytes). Output: one row ``(rows, rejected)`` per task.

    Args:
        dsn: libpq DSN of the application role.
        table: The query's staging table.
        batch_id: Spark's batch id.
        topic_col: Name of the topic column.
    """

    def stage(batches: Iterator["pa.RecordBatch"]) -> Iterator["pa.RecordBatch"]:
        import numpy as np
        import psycopg2
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        data = pa.Table.from_batches(list(batches))
        n = data.num_rows
        if n == 0:
            yield pa.RecordBatch.from_pydict({"rows": [0], "rejected": [0]})
            return
        data = data.combine_chunks()
        reason = data.column("reason").to_pylist()
        valid = np.array([r is None for r in reason])
        # In-batch duplicates of (store, date): the record with the highest (partition, offset) wins.
        if valid.any():
            idx = np.nonzero(valid)[0]
            store = data.column("store").to_numpy(zero_copy_only=False)[idx].astype(np.int64)
            day = pc.cast(data.column("date"), pa.int32()).to_numpy(zero_copy_only=False)[idx].astype(np.int64)
            part = data.column("kafka_partition").to_numpy(zero_copy_only=False)[idx].astype(np.int64)
            offs = data.column("kafka_offset").to_numpy(zero_copy_only=False)[idx].astype(np.int64)
            order = np.lexsort((offs, part, day, store))
            key = store[order] * 1_000_000 + day[order]
            last = np.r_[key[1:] != key[:-1], True]  # the last of each run of equal keys wins
            last_pos = np.nonzero(last)[0]
            for pos in np.nonzero(~last)[0]:
                winner = order[last_pos[np.searchsorted(last_pos, pos)]]
                day_text = dt.date(1970, 1, 1) + dt.timedelta(days=int(day[order[pos]]))
                reason[idx[order[pos]]] = (
                    f"duplicate: ({store[order[pos]]}, {day_text}) sent again in the same batch "
                    f"(partition {part[winner]}, offset {offs[winner]} kept)"
                )
        rejected = [i for i, r in enumerate(reason) if r is not None]
        payload: list[str | None] = [None] * n
        key_hex: list[str | None] = [None] * n
        if rejected:
            values = _hex_bytea(data.column("value"), rejected)
            keys = _hex_bytea(data.column("kafka_key"), rejected)
            for i, value, kafka_key in zip(rejected, values, keys):
                payload[i], key_hex[i] = value, kafka_key
        sizes = pc.binary_length(data.column("value"))
        out = pa.table(
            {
                "batch_id": pa.array(np.full(n, batch_id, dtype=np.int64)),
                "topic": data.column(topic_col),
                "kafka_partition": data.column("kafka_partition"),
                "kafka_offset": data.column("kafka_offset"),
                "kafka_timestamp": data.column("kafka_timestamp"),
                "reason": pa.array(reason, pa.string()),
                **{c: data.column(c) for c in SALES_COLUMNS},
                "kafka_key": pa.array(key_hex, pa.string()),
                "payload": pa.array(payload, pa.string()),
                "payload_bytes": pc.if_else(
                    pa.array([r is None for r in reason]), pa.scalar(None, pa.int32()), pc.cast(sizes, pa.int32())
                ),
            }
        )
        buf = io.BytesIO()
        pacsv.write_csv(out, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        buf.seek(0)
        conn = psycopg2.connect(dsn, application_name="sfmlops-ingest-stage")
        try:
            with conn.cursor() as cur:
                cur.copy_expert(f"COPY {table} ({', '.join(STAGING_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buf)
            conn.commit()
        finally:
            conn.close()
        yield pa.RecordBatch.from_pydict({"rows": [n], "rejected": [len(rejected)]})

    return stage


def commit_batch(
    conn,  # noqa: ANN001 - psycopg2 connection
    settings: "Settings",
    query_id: str,
    batch_id: int,
    topic: str,
    rows_in: int,
    rows_rejected: int,
    started_at: dt.datetime,
) -> dict:
    """Move the staged batch into dead letters and sales and write the ledger row, atomically.

    Returns:
        ``{"committed": bool, "upserted": int, "dead_lettered": int}``; ``committed`` is False when
        another attempt committed the same batch first (nothing is changed then).
    """
    stage = staging_table(settings, query_id)
    cols = ", ".join(SALES_COLUMNS)
    data_cols = [c for c in SALES_COLUMNS if c not in ("store", "date")]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in data_cols)
    changed = f"({', '.join('t.' + c for c in data_cols)}) IS DISTINCT FROM ({', '.join('EXCLUDED.' + c for c in data_cols)})"
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (query_id,))
            cur.execute(
                f"SELECT 1 FROM {settings.table_ledger} WHERE query_id = %s AND batch_id = %s", (query_id, batch_id)
            )
            if cur.fetchone():
                conn.rollback()
                return {"committed": False, "upserted": 0, "dead_lettered": 0}
            cur.execute(
                f"""INSERT INTO {settings.table_dead_letter}
                    (topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                     reason, query_id, batch_id)
                SELECT DISTINCT ON (topic, kafka_partition, kafka_offset)
                    topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                    reason, %s, batch_id
                FROM {stage} WHERE batch_id = %s AND reason IS NOT NULL
                ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING""",
                (query_id, batch_id),
            )
            dead = cur.rowcount
            cur.execute(
                f"""INSERT INTO {settings.table_sales} AS t ({cols}, ingested_at)
                SELECT DISTINCT ON (store, date) {cols}, now()
                FROM {stage} WHERE batch_id = %s AND reason IS NULL
                ORDER BY store, date, kafka_partition DESC, kafka_offset DESC
                ON CONFLICT (store, date) DO UPDATE SET {updates}, ingested_at = EXCLUDED.ingested_at
                WHERE {changed}""",
                (batch_id,),
            )
            upserted = cur.rowcount
            cur.execute(
                f"""INSERT INTO {settings.table_ledger}
                    (query_id, batch_id, topic, rows_in, rows_valid, rows_rejected, rows_upserted, started_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (query_id, batch_id, topic, rows_in, rows_in - rows_rejected, rows_rejected, upserted, started_at),
            )
            cur.execute(f"TRUNCATE {stage}")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return {"committed": True, "upserted": upserted, "dead_lettered": dead}
