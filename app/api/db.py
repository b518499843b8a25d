"""Postgres access for the API: one lazily created, thread-safe connection pool per process.

Under Lambda a warm container keeps its connection between invocations; under uvicorn sync routes run in
a thread pool, so the pool is shared. Nothing connects at import time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extras

from app.api.errors import ApiError
from app.config import Settings

_lock = threading.Lock()
#: How long a request waits for a free pooled connection before answering 503.
POOL_WAIT_S = 10.0


class _Pool:
    """At most ``size`` connections, opened lazily and kept open for reuse (LIFO).

    (psycopg2's own pools close every connection returned above ``minconn``, which costs a new
    connection - tens of milliseconds - per request, and they fail at once instead of waiting when full.)
    """

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn = dsn
        self.idle: list[psycopg2.extensions.connection] = []
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(size)

    def get(self) -> psycopg2.extensions.connection:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return psycopg2.connect(self.dsn)

    def put(self, conn: psycopg2.extensions.connection, discard: bool) -> None:
        if discard or conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass
            return
        with self.lock:
            self.idle.append(conn)

    def close(self) -> None:
        with self.lock:
            for conn in self.idle:
                conn.close()
            self.idle.clear()


_pools: dict[str, _Pool] = {}


def _pool(settings: Settings) -> _Pool:
    dsn = settings.pg_dsn() + " connect_timeout=5 application_name=sfmlops-api"
    pool = _pools.get(dsn)
    if pool is None:
        with _lock:
            pool = _pools.setdefault(dsn, _Pool(dsn, settings.api_db_pool_max))
    return pool


@contextmanager
def connection(settings: Settings) -> Iterator[psycopg2.extensions.connection]:
    """A pooled connection inside a transaction: committed on success, rolled back on error.

    Raises:
        ApiError: 503 when the database cannot be reached (naming the configured host and port) or every
            pooled connection stays busy for ``POOL_WAIT_S``.
    """
    pool = _pool(settings)
    if not pool.slots.acquire(timeout=POOL_WAIT_S):
        raise ApiError(503, f"All {settings.api_db_pool_max} database connections busy (SFMLOPS_API_DB_POOL_MAX)")
    try:
        conn = pool.get()
    except psycopg2.OperationalError as exc:
        pool.slots.release()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ApiError(
            503,
            f"Database unavailable at {settings.pg_host}:{settings.pg_port} (SFMLOPS_PG_HOST/SFMLOPS_PG_PORT): {first}",
        ) from exc
    broken = False
    try:
        with conn:  # commit / rollback
            yield conn
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        broken = True
        raise ApiError(503, f"Database connection lost: {str(exc).strip() or type(exc).__name__}") from exc
    finally:
        pool.put(conn, discard=broken)
        pool.slots.release()


def cursor(conn: psycopg2.extensions.connection) -> psycopg2.extras.RealDictCursor:
    """A cursor that returns rows as dicts."""
    return conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)


def close_pools() -> None:
    """Close every pool of this process (tests, shutdown)."""
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
