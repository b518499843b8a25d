"""Exactly-once sink of the streaming job: JDBC staging from the executors, one transaction per Kafka partition.

Per micro-batch:

1. :func:`begin_batch` (driver) returns ``False`` when the ledger already holds ``(query id, batch id)``
   (Spark replays the last batch after a crash; it then changes nothing); otherwise it empties the
   query's staging table of rows left by a crashed attempt.
2. :func:`write_staging` (executors, Spark's JDBC writer, no Python worker) appends the validated rows
   into the query's UNLOGGED staging table, every task on its own connection in one transaction. The
   rows come from :func:`app.ingest.job.staged`, which has already marked superseded duplicates of a
   (store, date) key as rejected in Spark SQL (a window over the batch).
3. :func:`commit_batch` (driver): every Kafka partition of the batch in ONE transaction of its own
   (:func:`commit_partition`: its dead letters keyed by Kafka coordinates, its rows into sales, where
   unchanged rows are not touched, and its ledger row ``(query, batch, topic, partition)``), several
   partitions at once on their own connections; then the batch's ledger row and an empty staging table.
   A partition committed by a crashed attempt is skipped, so a retried batch changes nothing twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.ingest.schema import SALES_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from psycopg2.extensions import connection
    from pyspark.sql import DataFrame

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


def staging_table(settings: Settings, query_id: str) -> str:
    """The per-query staging table name (Postgres identifiers are limited to 63 bytes)."""
    digest = hashlib.sha1(query_id.encode()).hexdigest()[:12]
    return f"{settings.table_ingest_staging[:50]}_{digest}"


def ensure_staging(conn, settings: Settings, query_id: str) -> str:  # psycopg2 connection
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


def drop_staging(conn, settings: Settings, query_id: str) -> None:
    """Drop the query's staging table (at a clean end of the query)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {staging_table(settings, query_id)}")
    conn.commit()


def known_stores(conn, settings: Settings) -> list[int]:
    """Store ids in the stores table."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT store FROM {settings.table_stores} ORDER BY store")
        return [row[0] for row in cur.fetchall()]


def begin_batch(conn, settings: Settings, query_id: str, batch_id: int) -> bool:
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


def ledger_partitions_table(settings: Settings) -> str:
    """The per-partition ledger: one row per (query, batch, topic, Kafka partition) committed."""
    return f"{settings.table_ledger}_partitions"


def jdbc_target(settings: Settings) -> tuple[str, dict[str, str]]:
    """``(url, properties)`` of Spark's JDBC writer into the staging table (PgJDBC on the executors).

    ``reWriteBatchedInserts`` turns each JDBC batch into multi-row ``INSERT`` statements; the password
    travels as a property, never in the URL (which Spark may log).
    """
    url = f"jdbc:postgresql://{settings.pg_host}:{settings.pg_port}/{settings.pg_database}"
    props = {
        "user": settings.pg_user,
        "password": settings.pg_password.get_secret_value(),
        "driver": "org.postgresql.Driver",
        "reWriteBatchedInserts": "true",
        "batchsize": str(settings.ingest_jdbc_batch_rows),
        "ApplicationName": "sfmlops-ingest-stage",
        "connectTimeout": "10",
    }
    return url, props


def write_staging(frame: DataFrame, settings: Settings, table: str) -> None:
    """Append the staged rows (columns :data:`STAGING_COLUMNS`) from the executors with Spark's JDBC writer.

    Each task writes its rows in one transaction (Spark commits a partition at its end), so a failed task
    leaves nothing; a batch that fails after some tasks committed is staged again from an empty table
    (:func:`begin_batch`).
    """
    url, props = jdbc_target(settings)
    frame.select(*STAGING_COLUMNS).write.jdbc(url, table, mode="append", properties=props)


def _partition_sql(settings: Settings, stage: str, batch_id: int, partition: int) -> dict[str, str]:
    """The statements of one Kafka partition's commit (dead letters, split upsert, general upsert)."""
    sales = settings.table_sales
    cols = ", ".join(SALES_COLUMNS)
    data_cols = [c for c in SALES_COLUMNS if c not in ("store", "date")]
    where = f"s.batch_id = {int(batch_id)} AND s.kafka_partition = {int(partition)}"
    valid = f"FROM {stage} s WHERE {where} AND s.reason IS NULL"
    changed = f"({', '.join('t.' + c for c in data_cols)}) IS DISTINCT FROM"
    return {
        "dead": f"""INSERT INTO {settings.table_dead_letter}
                (topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                 payload_sha256, reason, query_id, batch_id)
            SELECT DISTINCT ON (topic, kafka_partition, kafka_offset)
                topic, kafka_partition, kafka_offset, kafka_key, kafka_timestamp, payload, payload_bytes,
                payload_sha256, reason, %s, batch_id
            FROM {stage} s WHERE {where} AND s.reason IS NOT NULL
            ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING""",
        "merge": f"""INSERT INTO {sales} AS t ({cols}, ingested_at)
            SELECT {cols}, now() {valid} ORDER BY store, date
            ON CONFLICT (store, date) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in data_cols)},
                ingested_at = EXCLUDED.ingested_at
            WHERE {changed} ({', '.join('EXCLUDED.' + c for c in data_cols)})""",
        "upsert": f"""INSERT INTO {sales} AS t ({cols}, ingested_at)
            SELECT DISTINCT ON (store, date) {cols}, now() {valid}
            ORDER BY store, date, kafka_partition DESC, kafka_offset DESC
            ON CONFLICT (store, date) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in data_cols)},
                ingested_at = EXCLUDED.ingested_at
            WHERE {changed} ({', '.join('EXCLUDED.' + c for c in data_cols)})""",
    }


def commit_partition(
    conn,  # psycopg2 connection
    settings: Settings,
    query_id: str,
    batch_id: int,
    topic: str,
    partition: int,
    rows_in: int,
    rows_rejected: int,
    started_at: dt.datetime,
) -> dict:
    """One Kafka partition of a staged batch, in ONE transaction: its dead letters, its rows into sales
    and its ledger row ``(query, batch, topic, partition)``.

    The staged valid rows hold at most one row per (store, date) key in the whole batch (the job marks
    superseded duplicates in Spark), so the partitions of a batch touch disjoint keys and commit
    concurrently. The rows go in with ``INSERT ... ON CONFLICT DO UPDATE ... WHERE IS DISTINCT FROM``:
    unchanged keys are not rewritten, and every key is found through the primary key's index, so no
    join plan depends on statistics of a table that the other partitions are filling at the same time
    (an anti-join against ``sales`` planned while it looked empty took minutes). Should a key repeat
    anyway (a JDBC task retried after it committed) the cardinality violation rolls back to a savepoint
    and ``DISTINCT ON`` keeps the newest record.

    Returns:
        ``{"committed", "upserted", "dead_lettered"}``; ``committed`` is False (and nothing changes) when
        an earlier attempt committed this partition of the batch.
    """
    import psycopg2.errors

    sql = _partition_sql(settings, staging_table(settings, query_id), batch_id, partition)
    ledger = ledger_partitions_table(settings)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '256MB'")
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{query_id} partition {partition}",))
            cur.execute(
                f"SELECT 1 FROM {ledger} WHERE query_id = %s AND batch_id = %s AND topic = %s AND kafka_partition = %s",
                (query_id, batch_id, topic, partition),
            )
            if cur.fetchone():
                conn.rollback()
                return {"committed": False, "upserted": 0, "dead_lettered": 0}
            cur.execute(sql["dead"], (query_id,))
            dead = cur.rowcount
            cur.execute("SAVEPOINT merge")
            try:
                cur.execute(sql["merge"])
            except psycopg2.errors.CardinalityViolation:  # a key repeats (retried task): keep the newest record
                cur.execute("ROLLBACK TO SAVEPOINT merge")
                cur.execute(sql["upsert"])
            upserted = cur.rowcount
            cur.execute(
                f"""INSERT INTO {ledger} (query_id, batch_id, topic, kafka_partition, rows_in, rows_rejected,
                    rows_upserted, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (query_id, batch_id, topic, partition, rows_in, rows_rejected, upserted, started_at),
            )
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return {"committed": True, "upserted": upserted, "dead_lettered": dead}


def staged_partitions(conn, settings: Settings, query_id: str, batch_id: int) -> dict[tuple[str, int], tuple[int, int]]:
    """``{(topic, partition): (rows, rejected)}`` of the staged batch (one scan of the staging table)."""
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT topic, kafka_partition, count(*), count(reason) FROM {staging_table(settings, query_id)}
            WHERE batch_id = %s GROUP BY topic, kafka_partition ORDER BY topic, kafka_partition""",
            (batch_id,),
        )
        plan = {(topic, part): (rows, rejected) for topic, part, rows, rejected in cur.fetchall()}
    conn.commit()
    return plan


def commit_batch(
    settings: Settings,
    query_id: str,
    batch_id: int,
    topic: str,
    started_at: dt.datetime,
    connections: int | None = None,
    connect: Callable[[], Any] | None = None,
) -> dict:
    """Commit a staged batch: every Kafka partition in a transaction of its own, ``connections`` at once,
    then the batch's ledger row (the sum of its partitions' rows) and an empty staging table.

    A batch that failed half-way (some partitions committed) is staged again by Spark's retry; the
    committed partitions are then skipped, the others committed, so every record still lands once.

    Returns:
        ``{"committed", "rows", "rejected", "upserted", "dead_lettered", "partitions", "partitions_skipped"}``;
        ``committed`` is False when the batch's ledger row was already there (nothing changes then).
    """
    from concurrent.futures import ThreadPoolExecutor

    from app.db import connect as db_connect

    connect = connect or (lambda: db_connect(settings, application_name="sfmlops-ingest-commit"))
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT 1 FROM {settings.table_ledger} WHERE query_id = %s AND batch_id = %s", (query_id, batch_id))
            if cur.fetchone():
                conn.rollback()
                return {"committed": False, "rows": 0, "rejected": 0, "upserted": 0, "dead_lettered": 0,
                        "partitions": 0, "partitions_skipped": 0}
        conn.commit()
        plan = staged_partitions(conn, settings, query_id, batch_id)

        def one(item: tuple[tuple[str, int], tuple[int, int]]) -> dict:
            (part_topic, partition), (rows, rejected) = item
            own = connect()
            try:
                return commit_partition(own, settings, query_id, batch_id, part_topic, partition, rows, rejected, started_at)
            finally:
                own.close()

        workers = max(1, min(connections or settings.ingest_commit_connections, len(plan) or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="sfmlops-commit") as pool:
            results = list(pool.map(one, plan.items()))
        ledger = ledger_partitions_table(settings)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (query_id,))
            cur.execute(f"SELECT 1 FROM {settings.table_ledger} WHERE query_id = %s AND batch_id = %s", (query_id, batch_id))
            if cur.fetchone():
                conn.rollback()
                return {"committed": False, "rows": 0, "rejected": 0, "upserted": 0, "dead_lettered": 0,
                        "partitions": 0, "partitions_skipped": 0}
            cur.execute(
                f"""SELECT coalesce(sum(rows_in), 0), coalesce(sum(rows_rejected), 0), coalesce(sum(rows_upserted), 0)
                FROM {ledger} WHERE query_id = %s AND batch_id = %s""",
                (query_id, batch_id),
            )
            rows, rejected, upserted = (int(v) for v in cur.fetchone())
            cur.execute(
                f"""INSERT INTO {settings.table_ledger}
                    (query_id, batch_id, topic, rows_in, rows_valid, rows_rejected, rows_upserted, started_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (query_id, batch_id, topic, rows, rows - rejected, rejected, upserted, started_at),
            )
            cur.execute(f"TRUNCATE {staging_table(settings, query_id)}")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()
    return {
        "committed": True,
        "rows": rows,
        "rejected": rejected,
        "upserted": upserted,
        "dead_lettered": sum(r["dead_lettered"] for r in results),
        "partitions": len(plan),
        "partitions_skipped": sum(not r["committed"] for r in results),
    }


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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names: list[str] = []
        self._conn: connection | None = None

    def _connect(self) -> connection:
        import os
        import socket

        from app.db import connect

        conn = connect(self.settings, application_name=f"sfmlops-ingest driver pid {os.getpid()} on {socket.gethostname()}"[:63])
        conn.autocommit = True
        return conn

    def _try(self, name: str) -> None:
        assert self._conn is not None  # acquire() and check() connect before they call _try
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

        if self._conn is not None:  # None before the first acquire(): connect below
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
