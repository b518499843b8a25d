"""Postgres access for the API: psycopg_pool pools of psycopg 3 connections, created lazily, one per process
(nothing connects at import), and their errors mapped onto API answers.

* :func:`connection` - a ``psycopg_pool.ConnectionPool`` (thread-safe) for the sync routes (jobs, keys,
  models), which run in uvicorn's thread pool: a connection inside a transaction; :func:`cursor` gives rows
  as dicts;
* :func:`read_one` - an ``AsyncConnectionPool`` (autocommit) for the hot read route
  ``GET /v1/stores/{id}/forecast`` and the key-set version: no thread hop, statements prepared by the server
  after a few uses. It belongs to the event loop that opened it: under uvicorn that is the server's loop,
  under Lambda the one loop Mangum keeps per container (``asyncio.get_event_loop()``, run once per
  invocation), so a warm container reuses its connections between invocations; a pool found bound to another
  loop (a test's finished ``TestClient``) is dropped and a new one opened.

Both pools open connections on demand (``min_size=0``) up to ``SFMLOPS_API_DB_POOL_MAX`` and keep them for
reuse; a request waits at most :data:`POOL_WAIT_S` for a free one (then 503). Every new connection is opened
by :mod:`app.db` (its parameters read from the settings at that moment, a rotated secret re-read on an
authentication failure). When the database refuses connections the requests waiting for one are answered 503
at once with the driver's reason (psycopg_pool itself would let them wait for the whole timeout).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from app import db as app_db
from app.api.errors import ApiError
from app.config import Settings

#: How long a request waits for a free pooled connection before answering 503.
POOL_WAIT_S = 10.0
APPLICATION_NAME = "sfmlops-api"
_lock = threading.Lock()


def unavailable(settings: Settings, exc: BaseException) -> ApiError:
    """The 503 for a connection a request could not get: every pooled one busy for ``POOL_WAIT_S``
    (``PoolTimeout``), or the database refusing new ones (where, and the driver's first line)."""
    if isinstance(exc, PoolTimeout):
        return ApiError(503, f"All {settings.api_db_pool_max} database connections busy (SFMLOPS_API_DB_POOL_MAX)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ApiError(
        503, f"Database unavailable at {settings.pg_host}:{settings.pg_port} (SFMLOPS_PG_HOST/SFMLOPS_PG_PORT): {first}"
    )


def _lost(exc: BaseException) -> ApiError:
    return ApiError(503, f"Database connection lost: {str(exc).strip() or type(exc).__name__}")


class _Refusals:
    """The last failed connect of a pool, and the psycopg_pool hook that answers its waiting requests with it.

    psycopg_pool opens connections in the background and lets a waiting request wait for its whole timeout
    when they fail. With ``reconnect_timeout=0`` it gives up after its immediate second attempt and calls
    ``reconnect_failed``: here the requests waiting then get the connect error at once. (psycopg_pool has no
    public call to fail its waiting clients: this takes them from ``_waiting`` under ``_lock``, as its own
    ``close()`` does; ``tests/api/test_api_db_pools.py`` checks it.)
    """

    def __init__(self) -> None:
        self.error: Exception | None = None

    def failed(self, exc: Exception) -> None:
        self.error = exc

    def error_for_waiters(self) -> Exception:
        """A new exception (each waiting request raises its own) with the last connect error's text."""
        return psycopg.OperationalError(str(self.error) if self.error is not None else "could not connect to the database")

    def answer_waiting(self, pool: ConnectionPool) -> None:
        with pool._lock:
            waiting = list(pool._waiting)
            pool._waiting.clear()
        for pos in waiting:
            pos.fail(self.error_for_waiters())

    async def answer_waiting_async(self, pool: AsyncConnectionPool) -> None:
        async with pool._lock:
            waiting = list(pool._waiting)
            pool._waiting.clear()
        for pos in waiting:
            await pos.fail(self.error_for_waiters())


def _pool_options(settings: Settings) -> dict[str, Any]:
    return {"min_size": 0, "max_size": settings.api_db_pool_max, "timeout": POOL_WAIT_S, "reconnect_timeout": 0,
            "num_workers": 1, "name": APPLICATION_NAME}


def _sync_pool(settings: Settings) -> ConnectionPool:
    refusals = _Refusals()

    class Connection(psycopg.Connection):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Connection:
            base = super().connect
            try:
                return app_db.connect_psycopg(settings, lambda **params: base(conninfo, **{**params, **kwargs}),
                                              application_name=APPLICATION_NAME)
            except psycopg.OperationalError as exc:
                refusals.failed(exc)
                raise

    return ConnectionPool(connection_class=Connection, open=True, reconnect_failed=refusals.answer_waiting,
                          **_pool_options(settings))


def _async_pool_for(settings: Settings) -> AsyncConnectionPool:
    refusals = _Refusals()

    class AsyncConnection(psycopg.AsyncConnection):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> AsyncConnection:
            base = super().connect

            async def open_(**params: Any) -> AsyncConnection:
                return await base(conninfo, **{**params, **kwargs})

            try:
                return await app_db.aconnect_psycopg(settings, open_, application_name=APPLICATION_NAME, autocommit=True)
            except psycopg.OperationalError as exc:
                refusals.failed(exc)
                raise

    return AsyncConnectionPool(connection_class=AsyncConnection, open=False, reconnect_failed=refusals.answer_waiting_async,
                               **_pool_options(settings))


def _key(settings: Settings) -> tuple[Any, ...]:
    return settings.pg_host, settings.pg_port, settings.pg_database, settings.api_db_pool_max


_pools: dict[tuple[Any, ...], ConnectionPool] = {}
_async_pools: dict[tuple[Any, ...], tuple[asyncio.AbstractEventLoop, AsyncConnectionPool]] = {}


def _pool(settings: Settings) -> ConnectionPool:
    key = _key(settings)
    pool = _pools.get(key)
    if pool is None:
        with _lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = _sync_pool(settings)
    return pool


@contextmanager
def connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection inside a transaction: committed on success, rolled back on error.

    Raises:
        ApiError: 503 when the database cannot be reached (naming the configured host and port), every
            pooled connection stays busy for ``POOL_WAIT_S``, or the connection breaks meanwhile.
    """
    pool = _pool(settings)
    try:
        conn = pool.getconn(timeout=POOL_WAIT_S)
    except (PoolTimeout, psycopg.OperationalError) as exc:
        raise unavailable(settings, exc) from exc
    try:
        with conn:  # commit / rollback; a pooled connection is not closed by its block
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise _lost(exc) from exc
    finally:
        pool.putconn(conn)  # a broken one is discarded by the pool


def cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[dict[str, Any]]:
    """A cursor that returns rows as dicts."""
    return conn.cursor(row_factory=dict_row)


def one_row(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    """The row of a statement that always returns one (an aggregate, ``INSERT ... RETURNING``, a row read under
    its lock).

    Raises:
        RuntimeError: when it returned none after all (a bug, not a caller's mistake).
    """
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row


def _drop(pool: AsyncConnectionPool) -> None:
    """Close the idle connections of an async pool whose loop is gone, without awaiting (its tasks died with
    the loop; its lock and queue belong to it)."""
    for conn in list(pool._pool):
        try:
            conn.pgconn.finish()  # closes the socket without awaiting
        except Exception:  # noqa: BLE001 - best effort
            pass
    pool._pool.clear()


def close_pools() -> None:
    """Close every pool of this process (tests, shutdown)."""
    with _lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
        current = _running_loop()
        for loop, apool in _async_pools.values():
            if loop.is_closed() or current is loop:
                _drop(apool)
            elif loop.is_running():  # another thread's loop (a TestClient's)
                asyncio.run_coroutine_threadsafe(apool.close(), loop).result(timeout=30)
            elif current is None:  # an idle loop (Mangum's between invocations): its tasks end too
                loop.run_until_complete(apool.close())
            else:
                _drop(apool)
        _async_pools.clear()


async def close_loop_pools() -> None:
    """Close the async pools of the running loop (waiting for their tasks to finish their work)."""
    loop = asyncio.get_running_loop()
    for key, (owner, pool) in list(_async_pools.items()):
        if owner is loop:
            del _async_pools[key]
            await pool.close()


@asynccontextmanager
async def lifespan(_app: object) -> AsyncIterator[None]:
    """The app's lifespan (uvicorn, a ``TestClient``): at shutdown the async pools of its loop are closed.

    psycopg_pool's async tasks swallow a cancellation that arrives while they work (opening a connection...),
    so a loop that ends with an open pool may never finish cancelling its tasks; closed first, they end.
    """
    yield
    await close_loop_pools()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# --- the async pool (hot read route) --------------------------------------------------------------------
def _async_pool(settings: Settings) -> AsyncConnectionPool:
    key = _key(settings)
    loop = asyncio.get_running_loop()
    hit = _async_pools.get(key)
    if hit is not None and hit[0] is loop:
        return hit[1]
    if hit is not None:
        _drop(hit[1])  # bound to a loop that is gone
    pool = _async_pool_for(settings)
    _async_pools[key] = (loop, pool)
    return pool


async def read_one(settings: Settings, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """The first row of one read statement, on a pooled psycopg 3 async connection (autocommit; the server
    prepares the statement after a few uses on a connection).

    A pooled connection found broken (the server restarted since) is discarded and the statement is tried
    once more on another one.

    Raises:
        ApiError: 503 when the database cannot be reached or every pooled connection stays busy for
            ``POOL_WAIT_S``.
        psycopg.Error: SQL errors (an undefined table...) for the caller to translate.
    """
    pool = _async_pool(settings)
    if pool.closed:
        await pool.open()  # once per pool (concurrent openers wait for the first)
    for attempt in (1, 2):
        try:
            conn = await pool.getconn(timeout=POOL_WAIT_S)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise unavailable(settings, exc) from exc
        try:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()
        except psycopg.OperationalError as exc:
            if attempt == 1 and conn.broken:
                continue  # a stale pooled connection: once more (the finally returns it, the pool discards it)
            raise _lost(exc) from exc
        finally:
            await pool.putconn(conn)
    return None  # pragma: no cover - the loop returns or raises
