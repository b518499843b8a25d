"""The API's psycopg_pool pools (``app/api/db.py``) keep what the hand-made pools guaranteed (issue 19).

On the real Postgres of the stack (the refused-connection test needs none): connections are kept for reuse,
a full pool makes a request wait for a returned connection and answers 503 after ``POOL_WAIT_S``, a database
that refuses connections is a 503 at once naming where, an async pool belongs to its event loop (a new loop
gets a new pool, a warm Lambda container keeps its connection between invocations), ``close_pools`` closes
everything. Counts and backend pids, no timings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from apitest_support import h, invoke, make_event

from app.api import auth, db
from app.api.errors import ApiError
from app.config import Settings
from app.stack.base import free_port

HANG_GUARD_S = 60.0  # bounds waits for a condition (liveness only, not a timing figure)


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def _pid(settings: Settings) -> int:
    """The backend pid of a connection of the sync pool."""
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


async def _apids(settings: Settings, n: int) -> list[int]:
    """Backend pids of ``n`` reads on the async pool, one after the other."""
    return [int((await db.read_one(settings, "SELECT pg_backend_pid()", {}) or (0,))[0]) for _ in range(n)]


def _alive(settings: Settings, pid: int) -> bool:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        return bool(cur.fetchone()[0])


@pytest.fixture
def fresh_pools() -> Iterator[None]:
    db.close_pools()
    yield
    db.close_pools()


@pytest.mark.integration
def test_a_full_pool_keeps_its_connection_lends_it_to_the_waiting_request_and_answers_503_after_the_wait(
    api_settings: Settings, fresh_pools: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = api_settings.model_copy(update={"api_db_pool_max": 1})
    pid = _pid(s)
    assert _pid(s) == pid  # kept for reuse: no new connection per request
    # The one connection is out: the next request waits for it and gets it when it comes back.
    held = db.connection(s)
    held.__enter__()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_pid, s)
        _wait(lambda: db._pool(s).get_stats().get("requests_waiting") == 1, "a request waits for the connection")
        held.__exit__(None, None, None)
        assert waiting.result(timeout=HANG_GUARD_S) == pid
    # Busy for the whole wait: 503 naming the setting.
    monkeypatch.setattr(db, "POOL_WAIT_S", 0.2)
    with db.connection(s), pytest.raises(ApiError) as busy:
        _pid(s)
    assert busy.value.status == 503 and busy.value.message == "All 1 database connections busy (SFMLOPS_API_DB_POOL_MAX)"
    assert _pid(s) == pid  # nothing was lost meanwhile


def test_a_database_that_refuses_connections_is_a_503_at_once_naming_the_address(fresh_pools: None) -> None:
    """psycopg_pool alone would let the request wait ``POOL_WAIT_S`` and answer "busy": the refusal is
    passed to the waiting requests instead (both pools)."""
    port = free_port()
    s = Settings(_env_file=None, pg_port=port, api_db_pool_max=2)
    expected = f"Database unavailable at {s.pg_host}:{port} (SFMLOPS_PG_HOST/SFMLOPS_PG_PORT): "
    with pytest.raises(ApiError) as sync_err:
        _pid(s)
    with pytest.raises(ApiError) as async_err:
        asyncio.run(_apids(s, 1))
    for err in (sync_err.value, async_err.value):
        assert err.status == 503 and err.message.startswith(expected), err.message
        assert str(port) in err.message.removeprefix(expected)  # the driver's own first line names the port too


@pytest.mark.integration
def test_an_async_pool_belongs_to_its_loop_and_close_pools_closes_every_connection(api_settings: Settings, fresh_pools: None) -> None:
    s = api_settings
    first = asyncio.run(_apids(s, 3))
    assert len(set(first)) == 1  # one connection, reused
    second = asyncio.run(_apids(s, 3))  # a new loop (the first is closed): a new pool, the old one's connection closed
    assert len(set(second)) == 1 and second[0] != first[0]
    _wait(lambda: not _alive(s, first[0]), "the connection of the pool of the finished loop is closed")
    # close_pools: the sync pool's connection, the finished loop's pool, and a pool whose loop still runs
    # in another thread (a TestClient's) are all closed.
    from fastapi.testclient import TestClient

    from app.api.main import create_app

    key = auth.issue_key(s, f"test-pools-{uuid.uuid4().hex[:8]}")
    sync_pid = _pid(s)
    with TestClient(create_app(s.model_copy(update={"api_auth_recheck_s": 1e-6}))) as api:
        assert api.get("/v1/training-jobs", headers=h(key)).status_code == 200  # reads the key-set version on the async pool
        [(loop, live)] = [v for k, v in db._async_pools.items() if k == db._key(s)]
        [conn] = list(live._pool)  # its one idle connection
        live_pid = conn.info.backend_pid
        assert loop.is_running()
        _wait(lambda: not _alive(s, second[0]), "the pool of the finished loop was dropped")
        db.close_pools()
        assert live.closed
    _wait(lambda: not _alive(s, sync_pid) and not _alive(s, live_pid), "close_pools closed every connection")


@pytest.mark.integration
def test_a_warm_lambda_container_reuses_its_async_connection_between_invocations(api_settings: Settings, fresh_pools: None) -> None:
    """Mangum keeps one event loop per container and runs it once per invocation: the async pool opened by
    the first invocation serves the next ones with the same connection."""
    from mangum import Mangum

    from app.api.main import create_app

    s = api_settings.model_copy(update={"api_auth_recheck_s": 1e-6})  # every request reads the key-set version
    key = auth.issue_key(s, f"test-pools-{uuid.uuid4().hex[:8]}")
    handler = Mangum(create_app(s), lifespan="off")
    for _ in range(3):
        status, _, body = invoke(handler, make_event("healthz", path="/v1/training-jobs", headers={"X-API-Key": key}))
        assert status == 200, body
    [(loop, pool)] = [v for k, v in db._async_pools.items() if k == db._key(s)]
    assert not loop.is_closed() and not loop.is_running()  # Mangum's loop, idle between invocations
    stats = pool.get_stats()
    assert stats["connections_num"] == 1 and stats["requests_num"] >= 3, stats
    [conn] = list(pool._pool)
    pid = conn.info.backend_pid
    db.close_pools()  # closed on Mangum's idle loop: the pool's tasks end, its connection is closed
    assert pool.closed
    _wait(lambda: not _alive(s, pid), "close_pools closed the warm container's connection")


@pytest.mark.integration
def test_routes_moved_to_psycopg_3_adapt_json_and_empty_arrays(api_settings: Settings, fresh_pools: None) -> None:
    """The alert webhook stores its labels as JSON (``Jsonb``), and scoring live accuracy with no stored
    forecasts passes empty arrays (``unnest(%s::text[], ...)``): both on this session's own tables."""
    from fastapi.testclient import TestClient

    from app.api.main import create_app

    s = api_settings
    key = auth.issue_key(s, f"test-pools-{uuid.uuid4().hex[:8]}")
    token = {"Authorization": f"Bearer {s.alert_webhook_token.get_secret_value()}"}
    alert = {"status": "firing", "labels": {"alertname": "PoolTest", "severity": "warning", "quote": "it's \"x\""},
             "annotations": {"summary": "a pool test"}, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "ab12"}
    with TestClient(create_app(s)) as api:
        sent = api.post("/v1/alerts/webhook", json={"version": "4", "status": "firing", "receiver": "t", "alerts": [alert]},
                        headers=token)
        assert sent.status_code == 200 and sent.json() == {"recorded": 1}, sent.text
        listed = api.get("/v1/alerts", headers=h(key)).json()
        assert listed["firing"] == 1 and listed["alerts"][0]["labels"] == alert["labels"]
        assert listed["alerts"][0]["summary"] == "a pool test"
        scored = api.post("/v1/accuracy/score", json={}, headers=h(key))
        assert scored.status_code == 200, scored.text
        assert scored.json()["scored_rows"] == 0 and scored.json()["versions"] == []


@pytest.mark.integration
def test_the_apps_shutdown_closes_the_async_pool_of_its_loop(api_settings: Settings, fresh_pools: None) -> None:
    """psycopg_pool's tasks swallow a cancellation while they work, so a loop ending with an open pool could hang
    while cancelling them (seen: a TestClient's exit): the app's lifespan closes the pool first."""
    from fastapi.testclient import TestClient

    from app.api.main import create_app

    s = api_settings.model_copy(update={"api_auth_recheck_s": 1e-6})
    key = auth.issue_key(s, f"test-pools-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(s)) as api:
        assert api.get("/v1/training-jobs", headers=h(key)).status_code == 200
        [(_, pool)] = [v for k, v in db._async_pools.items() if k == db._key(s)]
        assert not pool.closed
    assert pool.closed and db._key(s) not in db._async_pools
