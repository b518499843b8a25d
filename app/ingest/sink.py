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
    "payload_sha256",
]


def staging_table(settings: "Settings", query_id: str) -> str:
    """The per-query staging table name (Postgres identifiers are limited to 63 bytes)."""
    digest = hashlib.sha1(query_id.encode()).hexdigest()[:12]
    return f"{settings.table_ingest_staging[:50]}_{digest}"


def ensure_staging(conn, settings: "Settings", query_id: str) -> str:  # noqa: ANN001 - psycopg2 connection
    """(Re)create the query's staging table from the template; returns its name.

    Only the driver holding the query's :class:`DriverLock` calls this, at its start: nothing staged
    before is needed then (every batch empties the table before staging), and a table left by an older
    version gets the template's current columns.
    """
    name = staging_table(settings, query_id)
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(f"CREATE UNLOGGED TABLE {name} (LIKE {settings.table_ingest_staging})")
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
    """Returns False if the batch is already committed; otherwise clears leftovers of a crashed attempt.

    The caller holds the query's :class:`DriverLock` (the only driver of this staging table)."""
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


def _sha256_array(values: "pa.Array | pa.ChunkedArray", known: "pa.Array | pa.ChunkedArray") -> "pa.Array":
    """``known`` (the JVM's SHA-256 hex text, set where the value was cut) or the SHA-256 of the value."""
    import pyarrow as pa

    return pa.array(
        [k if k is not None else (None if v is None else "\\x" + hashlib.sha256(v).hexdigest())
         for v, k in zip(values.to_pylist(), known.to_pylist())],
        pa.string(),
    )


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
    ``row`` = index into ``raw``, which holds their ``value`` and ``kafka_key`` (both cut to the dead-letter
    size), ``payload_bytes`` and ``payload_sha256_hex``); ``order`` sorts them by
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

    taken = pa.array(row[lose])
    value = raw.column("value").take(taken)
    day = pc.cast(pc.cast(pa.array((key[lose] % 1_000_000).astype(np.int32)), pa.date32()), pa.string())
    marks = pa.table(
        {
            "kafka_partition": pa.array(part[lose].astype(np.int32)),
            "kafka_offset": pa.array(offs[lose]),
            "reason": pc.binary_join_element_wise(
                "duplicate: (", text(key[lose] // 1_000_000), ", ", day, ") sent again in the same batch (partition ",
                text(part[win]), ", offset ", text(offs[win]), " kept)", "",
            ),
            "kafka_key": _hex_array(raw.column("kafka_key").take(taken)),
            "payload": _hex_array(value),
            "payload_bytes": raw.column("payload_bytes").take(taken),
            "payload_sha256": _sha256_array(value, raw.column("payload_sha256_hex").take(taken)),
        }
    )
    buf = io.BytesIO()
    pacsv.write_csv(marks, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    buf.seek(0)
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE sfmlops_dup_marks (kafka_partition integer, kafka_offset bigint, reason text, "
            "kafka_key bytea, payload bytea, payload_bytes integer, payload_sha256 bytea) ON COMMIT DROP"
        )
        cur.copy_expert("COPY sfmlops_dup_marks FROM STDIN WITH (FORMAT csv)", buf)
        cur.execute("ANALYZE sfmlops_dup_marks")
        cur.execute(
            f"""UPDATE {table} AS s SET reason = m.reason, kafka_key = m.kafka_key, payload = m.payload,
                payload_bytes = m.payload_bytes, payload_sha256 = m.payload_sha256
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

    Input batches carry the columns of :func:`app.ingest.job.validated`: ``topic, kafka_partition,
    kafka_offset, kafka_timestamp, reason``, the sales columns (NULL in rejected rows), the dead letter's
    ``kafka_key_hex, payload_hex, payload_sha256_hex`` (rejected rows), ``payload_bytes``, and the cut
    ``kafka_key``/``value`` bytes of valid rows. Output: one row per task: ``rows``,
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
        kept: list[pa.RecordBatch] = []  # cut value/key of valid rows, for the dead letter of a superseded duplicate
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
                    no_int = pa.scalar(None, pa.int32())
                    frame = pa.RecordBatch.from_pydict(
                        {
                            "batch_id": pa.array(np.full(n, batch_id, dtype=np.int64)),
                            "topic": batch.column(topic_col),
                            "kafka_partition": batch.column("kafka_partition"),
                            "kafka_offset": batch.column("kafka_offset"),
                            "kafka_timestamp": batch.column("kafka_timestamp"),
                            "reason": reason,
                            **{c: batch.column(c) for c in SALES_COLUMNS},
                            # hex text, cut and hashed in the JVM, for rejected records only
                            "kafka_key": batch.column("kafka_key_hex"),
                            "payload": batch.column("payload_hex"),
                            "payload_bytes": pc.if_else(bad, batch.column("payload_bytes"), no_int),
                            "payload_sha256": pc.if_else(bad, batch.column("payload_sha256_hex"), pa.scalar(None, pa.string())),
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
                    kept.append(batch.select(["value", "kafka_key", "payload_bytes", "payload_sha256_hex"]))
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
        ``{"committed": bool, "upserted": int, "dead_lettered": int, "rejected": int}`` (``rejected``: the
        tasks' rejections plus duplicates across tasks); ``committed`` is False when
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
                     payload_sha256, reason, query_id, batch_id)
                SELECT DISTINCT ON (topic, kafka_partition, kafka_offset)
                    topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                    payload_sha256, reason, %s, batch_id
                FROM {stage} WHERE batch_id = %s AND reason IS NOT NULL
                ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING""",
                (query_id, batch_id),
            )
            dead = cur.rowcount
            if dedupe:
                # Valid duplicates of a key from different tasks: the newest (partition, offset) goes to sales,
                # each other one becomes a dead letter (by its coordinates; valid rows are staged without their
                # payload), so every record still ends in exactly one place.
                cur.execute(
                    f"""INSERT INTO {settings.table_dead_letter}
                        (topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                         payload_sha256, reason, query_id, batch_id)
                    SELECT topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                        payload_sha256,
                        format('duplicate: (%%s, %%s) sent again in the same batch (partition %%s, offset %%s kept)',
                               store, date, win_partition, win_offset),
                        %s, batch_id
                    FROM (SELECT s.*, row_number() OVER w AS rn, first_value(kafka_partition) OVER w AS win_partition,
                                 first_value(kafka_offset) OVER w AS win_offset
                          FROM {stage} s WHERE batch_id = %s AND reason IS NULL
                          WINDOW w AS (PARTITION BY store, date ORDER BY kafka_partition DESC, kafka_offset DESC)) d
                    WHERE rn > 1
                    ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING""",
                    (query_id, batch_id),
                )
                dead += cur.rowcount
                rows_rejected += cur.rowcount
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
    return {"committed": True, "upserted": upserted, "dead_lettered": dead, "rejected": rows_rejected}


class DriverBusy(RuntimeError):
    """Another driver holds the checkpoint (or streaming query) this driver was asked to run."""


def normalized_checkpoint(location: str) -> str:
    """One spelling per checkpoint folder, for its lock: absolute real path for local folders, the
    ``s3`` scheme for ``s3``/``s3a``/``s3n`` and no trailing slash."""
    import os
    import re

    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", location)
    if match is None or match.group(1).lower() == "file":
        path = match.group(2) if match else location
        return "file://" + os.path.realpath(os.path.abspath(path))
    scheme, rest = match.group(1).lower(), re.sub("/+", "/", match.group(2)).rstrip("/")
    return f"{'s3' if scheme in ('s3', 's3a', 's3n') else scheme}://{rest}"


class DriverLock:
    """Session-level advisory locks that a driver holds for its lifetime: one per checkpoint folder,
    taken before the streaming query starts, and one per query id, taken before its staging table is
    touched. A second driver on the same checkpoint refuses to start (:class:`DriverBusy`) instead of
    truncating the first one's staged rows; the locks go when the driver's connection does (process
    exit, kill). :meth:`check` runs before every batch: after a PostgreSQL restart it takes the locks
    again, or stops the batch if another driver took them meanwhile.
    """

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        self.names: list[str] = []
        self._conn = None

    def _connect(self):  # noqa: ANN202 - psycopg2 connection
        import os
        import socket

        from app.db import connect

        conn = connect(self.settings, application_name=f"sfmlops-ingest driver pid {os.getpid()} on {socket.gethostname()}"[:63])
        conn.autocommit = True
        return conn

    def _try(self, name: str) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0)), hashtextextended(%s, 0)", (name, name))
            got, key = cur.fetchone()
            if got:
                return
            cur.execute(
                """SELECT a.pid, a.application_name, coalesce(host(a.client_addr), 'local'), a.backend_start
                FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                  AND l.classid::bigint = %s AND l.objid::bigint = %s""",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            )
            row = cur.fetchone()
        holder = (
            f"'{row[1]}' (PostgreSQL backend {row[0]}, client {row[2]}, connected since {row[3]:%Y-%m-%d %H:%M:%S %Z})"
            if row
            else "another session"
        )
        raise DriverBusy(
            f"another ingest driver holds {name}: {holder}. Two drivers on one checkpoint would lose rows, so this "
            "one does not start: wait until that run ends (or stop it), then run `sfmlops ingest` again."
        )

    def acquire(self, name: str) -> None:
        """Take the lock ``name`` for the driver's lifetime; raises :class:`DriverBusy` if another holds it."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        self._try(name)
        self.names.append(name)

    def check(self) -> None:
        """Make sure the locks are still held (reconnecting and taking them again after a server restart)."""
        import psycopg2

        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT 1")
            return
        except (psycopg2.Error, AttributeError):
            pass
        try:
            self._conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        self._conn = self._connect()
        for name in self.names:
            self._try(name)

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
