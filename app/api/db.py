"""Postgres access for the API: lazily created connection pools, one per process (nothing connects at import).

* :func:`connection` - a thread-safe psycopg2 pool for the sync routes (jobs, keys, models), which run in
  uvicorn's thread pool;
* :func:`read_one` - a small psycopg 3 async pool for the hot read route
  ``GET /v1/stores/{id}/forecast``: no thread hop, statements prepared by the server after a few uses.
  It belongs to the event loop that opened it: under uvicorn that is the server's loop, under Lambda the
  one loop Mangum keeps per container (so a warm container reuses its connections between invocations);
  a pool found bound to another loop (a test's finished ``TestClient``) is dropped and a new one opened.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extras

from app import db as app_db
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

    def __init__(self, settings: Settings, size: int) -> None:
        self.settings = settings
        self.idle: list[psycopg2.extensions.connection] = []
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(size)

    def get(self) -> psycopg2.extensions.connection:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return app_db.connect(self.settings, application_name="sfmlops-api")  # re-reads a rotated secret

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


def unavailable(settings: Settings, exc: BaseException) -> ApiError:
    """The 503 for a connection that could not be made (either driver): where, and the driver's first line."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ApiError(
        503, f"Database unavailable at {settings.pg_host}:{settings.pg_port} (SFMLOPS_PG_HOST/SFMLOPS_PG_PORT): {first}"
    )


def _pool(settings: Settings) -> _Pool:
    key = f"{settings.pg_host}:{settings.pg_port}/{settings.pg_database}"
    pool = _pools.get(key)
    if pool is None:
        with _lock:
            pool = _pools.setdefault(key, _Pool(settings, settings.api_db_pool_max))
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
        raise unavailable(settings, exc) from exc
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
        for _, apool in _async_pools.values():
            apool.close()
        _async_pools.clear()


# --- psycopg 3 async pool (hot read route) ---------------------------------------------------------------
class _AsyncPool:
    """At most ``size`` psycopg 3 async connections of one event loop, opened on demand, reused LIFO.

    No background tasks (``psycopg_pool``'s workers keep a finished loop from closing: a test's
    ``TestClient``, and nothing of the kind is needed under Mangum, whose loop only runs during an invocation).
    """

    def __init__(self, params: dict[str, Any], size: int) -> None:
        self.params = {**params, "connect_timeout": 5, "application_name": "sfmlops-api", "autocommit": True}
        self.idle: list[Any] = []
        self.slots = asyncio.Semaphore(size)

    async def get(self) -> Any:
        import psycopg

        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        return await psycopg.AsyncConnection.connect(**self.params)

    def put(self, conn: Any, discard: bool) -> None:
        if discard or conn.closed or conn.info.transaction_status != 0:  # 0: idle
            self.drop(conn)
        else:
            self.idle.append(conn)

    @staticmethod
    def drop(conn: Any) -> None:
        try:
            conn.pgconn.finish()  # closes the socket without awaiting (works when the loop is gone too)
        except Exception:  # noqa: BLE001 - best effort
            pass

    def close(self) -> None:
        for conn in self.idle:
            self.drop(conn)
        self.idle.clear()


_async_pools: dict[tuple[Any, ...], tuple[asyncio.AbstractEventLoop, _AsyncPool]] = {}


def _async_pool(settings: Settings) -> _AsyncPool:
    params = settings.pg_params()
    key = tuple(sorted(params.items())) + (settings.api_db_pool_max,)
    loop = asyncio.get_running_loop()
    hit = _async_pools.get(key)
    if hit is not None and hit[0] is loop:
        return hit[1]
    if hit is not None:
        hit[1].close()  # bound to a loop that is gone
    pool = _AsyncPool(params, settings.api_db_pool_max)
    _async_pools[key] = (loop, pool)
    return pool


async def read_one(settings: Settings, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of one read statement, on a pooled psycopg 3 async connection (autocommit; the server
    prepares the statement after a few uses on a connection).

    A pooled connection found broken (the server restarted since) is dropped and the statement is tried
    once more on a new one.

    Raises:
        ApiError: 503 when the database cannot be reached or every pooled connection stays busy for
            ``POOL_WAIT_S``.
        psycopg.Error: SQL errors (an undefined table...) for the caller to translate.
    """
    import psycopg

    pool = _async_pool(settings)
    if pool.slots.locked():  # wait_for runs the acquire as a task: two more loop turns, only when it must wait
        try:
            await asyncio.wait_for(pool.slots.acquire(), POOL_WAIT_S)
        except TimeoutError as exc:
            raise ApiError(503, f"All {settings.api_db_pool_max} database connections busy (SFMLOPS_API_DB_POOL_MAX)") from exc
    else:
        await pool.slots.acquire()  # a free slot: taken at once
    try:
        for attempt in (1, 2):
            reused = bool(pool.idle)
            try:
                conn = await pool.get()
            except psycopg.OperationalError as exc:
                raise unavailable(settings, exc) from exc
            broken = True
            try:
                cur = await conn.execute(sql, params)
                row = await cur.fetchone()
                broken = False
                return row
            except psycopg.OperationalError as exc:
                if attempt == 1 and reused:
                    continue  # a stale pooled connection: once more on a fresh one
                raise ApiError(503, f"Database connection lost: {str(exc).strip() or type(exc).__name__}") from exc
            except psycopg.Error:
                broken = conn.closed
                raise
            finally:
                pool.put(conn, discard=broken)
    finally:
        pool.slots.release()
    return None  # pragma: no cover - the loop returns or raises
