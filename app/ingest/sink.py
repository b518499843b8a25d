"""Exactly-once sink of the streaming job: parallel COPY into staging, one upsert transaction per batch.

Per micro-batch:

1. :func:`begin_batch` (driver) returns ``False`` when the ledger already holds ``(query id, batch id)``
   (Spark replays the last batch after a crash; it then changes nothing); otherwise it empties the
   query's staging table of rows left by a crashed attempt.
2. :func:`stage_partition` (executors, through ``mapInArrow``) renders each Arrow batch as CSV with
   pyarrow and streams it into the query's UNLOGGED staging table with ``COPY`` while Spark produces
   the next batch (one connection per task, so the load runs in parallel), then marks the task's
   in-batch duplicates as rejected.
3. :func:`commit_batch` (driver) in ONE transaction: dead letters (keyed by Kafka coordinates), the
   rows into sales (rows whose values did not change are not touched: an ``UPDATE`` of changed keys
   plus an ``INSERT`` of new ones when no key can repeat across tasks, else ``INSERT ... SELECT
   DISTINCT ON (store, date) ... ON CONFLICT DO UPDATE``), the ledger row, and emptying the staging
   table.

Everything here but :func:`stage_partition` runs on the driver.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

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


def _hex_array(values: "pa.Array | pa.ChunkedArray") -> "pa.Array":
    """Binary values as Postgres ``bytea`` hex text (``\\x...``) for COPY; nulls stay null."""
    import pyarrow as pa

    return pa.array([None if v is None else "\\x" + v.hex() for v in values.to_pylist()], pa.string())


def _mark_duplicates(
    conn,  # noqa: ANN001 - psycopg2 connection of the task (its COPY is not committed yet)
    table: str,
    batch_id: int,
    raw: "pa.Table",
    key: "np.ndarray",
    part: "np.ndarray",
    offs: "np.ndarray",
    row: "np.ndarray",
    order: "np.ndarray",
    last: "np.ndarray",
) -> int:
    """Mark the superseded duplicates of a task as rejected in the staging table; returns how many.

    ``key``/``part``/``offs``/``row`` describe the task's valid records (key = store * 1e6 + epoch day,
    ``row`` = index into ``raw``, which holds their ``value`` and ``kafka_key``); ``order`` sorts them by
    (key, partition, offset) and ``last`` flags the winner of each key in that order. Vectorised, and
    one ``UPDATE ... FROM`` a temporary table, so a topic replayed twice into one batch (every record a
    duplicate) costs seconds, not one statement per record.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    lose_pos = np.flatnonzero(~last)
    win_pos = np.flatnonzero(last)
    lose = order[lose_pos]
    win = order[win_pos[np.searchsorted(win_pos, lose_pos)]]  # the next winner in sorted order has the same key

    def text(values: "np.ndarray") -> "pa.Array":
        return pc.cast(pa.array(values), pa.string())

    value = raw.column("value").take(pa.array(row[lose]))
    day = pc.cast(pc.cast(pa.array((key[lose] % 1_000_000).astype(np.int32)), pa.date32()), pa.string())
    marks = pa.table(
        {
            "kafka_partition": pa.array(part[lose].astype(np.int32)),
            "kafka_offset": pa.array(offs[lose]),
            "reason": pc.binary_join_element_wise(
                "duplicate: (", text(key[lose] // 1_000_000), ", ", day, ") sent again in the same batch (partition ",
                text(part[win]), ", offset ", text(offs[win]), " kept)", "",
            ),
            "kafka_key": _hex_array(raw.column("kafka_key").take(pa.array(row[lose]))),
            "payload": _hex_array(value),
            "payload_bytes": pc.cast(pc.binary_length(value), pa.int32()),
        }
    )
    buf = io.BytesIO()
    pacsv.write_csv(marks, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buf.seek(0)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE sfmlops_dup_marks (kafka_partition integer, kafka_offset bigint, reason text, "
            "kafka_key bytea, payload bytea, payload_bytes integer) ON COMMIT DROP"
        )
        cur.copy_expert("COPY sfmlops_dup_marks FROM STDIN WITH (FORMAT csv)", buf)
        cur.execute("ANALYZE sfmlops_dup_marks")
        cur.execute(
            f"""UPDATE {table} AS s SET reason = m.reason, kafka_key = m.kafka_key, payload = m.payload,
                payload_bytes = m.payload_bytes
            FROM sfmlops_dup_marks AS m
            WHERE s.batch_id = %s AND s.kafka_partition = m.kafka_partition AND s.kafka_offset = m.kafka_offset""",
            (batch_id,),
        )
    return len(lose)


def stage_partition(
    dsn: str, table: str, batch_id: int, topic_col: str = "topic"
) -> Callable[[Iterator["pa.RecordBatch"]], Iterator["pa.RecordBatch"]]:
    """The ``mapInArrow`` function that COPYs one task's rows into the staging table.

    The COPY streams: each Arrow batch is rendered as CSV and written to a pipe that a second thread
    feeds to ``COPY ... FROM STDIN`` while Spark produces the next batch, so the load overlaps the
    parsing. In-batch duplicates of (store, date) within the task are found at the end (the record
    with the highest (partition, offset) wins) and the superseded rows are marked rejected in the
    staging table, with their raw payload, before the task's transaction commits.

    Input batches carry ``topic, kafka_partition, kafka_offset, kafka_timestamp, reason``, the sales
    columns, ``kafka_key`` and ``value`` (raw bytes). Output: one row per task: ``rows``,
    ``rejected`` and the distinct ``stores`` of its valid rows (the driver uses them to tell whether
    duplicates across tasks are possible).

    Args:
        dsn: libpq DSN of the application role.
        table: The query's staging table.
        batch_id: Spark's batch id.
        topic_col: Name of the topic column.
    """

    def stage(batches: Iterator["pa.RecordBatch"]) -> Iterator["pa.RecordBatch"]:
        import os
        import threading

        import numpy as np
        import psycopg2
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        conn = psycopg2.connect(dsn, application_name="sfmlops-ingest-stage")
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []

        def copy() -> None:
            try:
                with os.fdopen(read_fd, "rb") as source, conn.cursor() as cur:
                    cur.copy_expert(
                        f"COPY {table} ({', '.join(STAGING_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", source, size=1 << 20
                    )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the task thread
                failure.append(exc)

        copier = threading.Thread(target=copy, name="sfmlops-copy", daemon=True)
        copier.start()
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        kept: list[pa.RecordBatch] = []  # value/key columns, for the payload of superseded duplicates
        keys: list["np.ndarray"] = []  # per batch: key, partition, offset, row index of valid rows
        rows = rejected = 0
        try:
            with os.fdopen(write_fd, "wb", buffering=1 << 20) as out:
                for batch in batches:
                    n = batch.num_rows
                    if n == 0:
                        continue
                    reason = batch.column("reason")
                    bad = reason.is_valid()
                    n_bad = pc.sum(bad).as_py() or 0
                    payload = pa.nulls(n, pa.string())
                    key_hex = pa.nulls(n, pa.string())
                    if n_bad:
                        none = pa.scalar(None, pa.binary())  # raw bytes are kept for rejected records only
                        payload = _hex_array(pc.if_else(bad, batch.column("value"), none))
                        key_hex = _hex_array(pc.if_else(bad, batch.column("kafka_key"), none))
                    sizes = pc.cast(pc.binary_length(batch.column("value")), pa.int32())
                    frame = pa.RecordBatch.from_pydict(
                        {
                            "batch_id": pa.array(np.full(n, batch_id, dtype=np.int64)),
                            "topic": batch.column(topic_col),
                            "kafka_partition": batch.column("kafka_partition"),
                            "kafka_offset": batch.column("kafka_offset"),
                            "kafka_timestamp": batch.column("kafka_timestamp"),
                            "reason": reason,
                            **{c: batch.column(c) for c in SALES_COLUMNS},
                            "kafka_key": key_hex,
                            "payload": payload,
                            "payload_bytes": pc.if_else(bad, sizes, pa.scalar(None, pa.int32())),
                        }
                    )
                    pacsv.write_csv(frame, out, options)
                    good = np.flatnonzero(~bad.to_numpy(zero_copy_only=False))
                    if len(good):
                        store = batch.column("store").to_numpy(zero_copy_only=False)[good].astype(np.int64)
                        day = pc.cast(batch.column("date"), pa.int32()).to_numpy(zero_copy_only=False)[good].astype(np.int64)
                        part = batch.column("kafka_partition").to_numpy(zero_copy_only=False)[good].astype(np.int64)
                        offs = batch.column("kafka_offset").to_numpy(zero_copy_only=False)[good].astype(np.int64)
                        keys.append(np.stack([store * 1_000_000 + day, part, offs, np.full(len(good), len(kept)), good]))
                    kept.append(batch.select(["value", "kafka_key"]))
                    rows += n
                    rejected += n_bad
        except BrokenPipeError:
            pass  # the COPY thread stopped reading: its error is raised below
        copier.join()
        try:
            if failure:
                raise failure[0]
            stores = np.zeros(0, dtype=np.int64)
            if keys:
                key, part, offs, src, idx = np.concatenate(keys, axis=1)
                order = np.lexsort((offs, part, key))
                last = np.r_[key[order][1:] != key[order][:-1], True]  # the last of each run of equal keys wins
                stores = np.unique(key // 1_000_000)
                if not last.all():
                    starts = np.cumsum([0] + [b.num_rows for b in kept])[:-1]
                    rejected += _mark_duplicates(conn, table, batch_id, pa.Table.from_batches(kept), key, part, offs,
                                                 starts[src] + idx, order, last)
            conn.commit()
        finally:
            conn.close()
        yield pa.RecordBatch.from_pydict(
            {"rows": [rows], "rejected": [rejected], "stores": pa.array([stores.astype(np.int32)], pa.list_(pa.int32()))}
        )

    return stage


def stores_overlap(task_stores: "Iterable[Iterable[int]]") -> bool:
    """Whether any store id appears in the valid rows of more than one task (then duplicates of a
    (store, date) key across tasks are possible and the commit deduplicates)."""
    seen: set[int] = set()
    for stores in task_stores:
        current = set(stores)
        if seen & current:
            return True
        seen |= current
    return False


def commit_batch(
    conn,  # noqa: ANN001 - psycopg2 connection
    settings: "Settings",
    query_id: str,
    batch_id: int,
    topic: str,
    rows_in: int,
    rows_rejected: int,
    started_at: dt.datetime,
    dedupe: bool = True,
) -> dict:
    """Move the staged batch into dead letters and sales and write the ledger row, atomically.

    Args:
        dedupe: Whether valid staged rows may repeat a (store, date) key (duplicates across tasks);
            then the newest record per key is chosen with ``DISTINCT ON`` and upserted with
            ``ON CONFLICT``. Without duplicates, existing keys whose values changed are updated and new
            keys inserted in two plain statements, which is much faster for big batches; should another
            writer insert one of the keys meanwhile, the general upsert runs instead.

    Returns:
        ``{"committed": bool, "upserted": int, "dead_lettered": int}``; ``committed`` is False when
        another attempt committed the same batch first (nothing is changed then).
    """
    import psycopg2.errors

    stage = staging_table(settings, query_id)
    sales = settings.table_sales
    cols = ", ".join(SALES_COLUMNS)
    data_cols = [c for c in SALES_COLUMNS if c not in ("store", "date")]
    valid = f"FROM {stage} s WHERE s.batch_id = {int(batch_id)} AND s.reason IS NULL"
    upsert = f"""INSERT INTO {sales} AS t ({cols}, ingested_at)
        SELECT DISTINCT ON (store, date) {cols}, now() {valid}
        ORDER BY store, date, kafka_partition DESC, kafka_offset DESC
        ON CONFLICT (store, date) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in data_cols)},
            ingested_at = EXCLUDED.ingested_at
        WHERE ({', '.join('t.' + c for c in data_cols)}) IS DISTINCT FROM ({', '.join('EXCLUDED.' + c for c in data_cols)})"""
    update = f"""UPDATE {sales} AS t SET {', '.join(f'{c} = s.{c}' for c in data_cols)}, ingested_at = now()
        {valid} AND t.store = s.store AND t.date = s.date
        AND ({', '.join('t.' + c for c in data_cols)}) IS DISTINCT FROM ({', '.join('s.' + c for c in data_cols)})"""
    insert = f"""INSERT INTO {sales} ({cols}, ingested_at) SELECT {cols}, now() {valid}
        AND NOT EXISTS (SELECT 1 FROM {sales} t WHERE t.store = s.store AND t.date = s.date)
        ORDER BY store, date"""
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (query_id,))
            cur.execute(f"SELECT 1 FROM {settings.table_ledger} WHERE query_id = %s AND batch_id = %s", (query_id, batch_id))
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
            upserted = None
            if not dedupe:
                cur.execute("SAVEPOINT split_upsert")
                try:
                    cur.execute(update)
                    upserted = cur.rowcount
                    cur.execute(insert)
                    upserted += cur.rowcount
                    cur.execute("RELEASE SAVEPOINT split_upsert")
                except psycopg2.errors.UniqueViolation:  # a concurrent writer inserted one of the keys
                    cur.execute("ROLLBACK TO SAVEPOINT split_upsert")
                    upserted = None
            if upserted is None:
                cur.execute(upsert)
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
