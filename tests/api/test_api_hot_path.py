"""The hot route's per-request work (issue 15): what caches hold costs no query, no task and no thread, and
the real app does not call much more Python per request than the lean FastAPI + psycopg 3 service.

Both apps are driven straight through ASGI (``app.bench.api.asgi_get``, as ``sfmlops bench api`` measures
their CPU per request) on the real Postgres and MLflow, with a forecasts table and a registered model of
this test's own. Counts, not timings: tasks created, Python calls made, queries waiting on a lock.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2
import pytest
from apitest_support import h
from fastapi.testclient import TestClient
from test_api_auth_refresh import HANG_GUARD_S, _wait, own_keys  # noqa: F401 - own key tables (fixture)
from test_api_forecasts_models import START, _write_run, serving  # noqa: F401 - own forecasts table (fixture)

from app.api import auth
from app.api.main import create_app
from app.api.routes import forecasts
from app.bench.api import asgi_get, lean_app
from app.config import Settings

pytestmark = pytest.mark.integration
STORES = (1, 2)


def _headers(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"127.0.0.1:8000"), (b"x-api-key", key.encode()), (b"accept", b"application/json")]


def _paths(n: int) -> list[str]:
    return [f"/v1/stores/{STORES[i % len(STORES)]}/forecast" for i in range(n)]


@pytest.fixture
def warm(serving: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:  # noqa: F811
    """The champion (v2) has a run for stores 1 and 2; caches that expire are held for the whole test (the
    champion's version, the key-set version), so every request after the first is a warm one."""
    _write_run(serving, "2", START, 7, 0.0, stores=STORES)
    monkeypatch.setattr(forecasts, "CHAMPION_TTL_S", 3600.0)
    return serving.model_copy(update={"api_auth_recheck_s": 3600.0, "api_rate_limit_per_minute": 10**6})


def _run(coro_fn: Any) -> Any:
    """Run ``coro_fn(created)`` on a fresh event loop whose task factory counts the tasks created."""
    created: list[Any] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task:
        created.append(getattr(coro, "__qualname__", coro))
        return asyncio.Task(coro, loop=loop, **kw)

    async def main() -> Any:
        asyncio.get_running_loop().set_task_factory(factory)
        return await coro_fn(created)

    return asyncio.run(main())


def test_a_warm_forecast_request_schedules_no_task(warm: Settings, keys: dict[str, str]) -> None:
    app = create_app(warm)
    headers = _headers(keys["alice"])

    async def go(created: list[Any]) -> tuple[list[int], list[Any]]:
        async with app.router.lifespan_context(app):
            first = await asgi_get(app, _paths(1)[0], headers)  # validates the key, reads the versions
            assert first[0] == 200, first
            await asyncio.sleep(0)  # let the first request's background reads finish
            created.clear()
            statuses = [(await asgi_get(app, path, headers))[0] for path in _paths(20)]
            return statuses, list(created)

    statuses, tasks = _run(go)
    assert statuses == [200] * 20
    assert tasks == [], f"warm requests created tasks: {tasks}"


def test_a_cached_key_costs_no_query_a_new_one_does(own_keys: Settings) -> None:  # noqa: F811
    """With the key tables locked, requests with a validated key are answered; a new key's lookup waits."""
    settings = own_keys
    known = auth.issue_key(settings, f"test-hot-{uuid.uuid4().hex[:8]}")
    new = auth.issue_key(settings, f"test-hot-{uuid.uuid4().hex[:8]}")
    waiting_on_keys = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
        (f"%FROM {settings.table_api_keys} k JOIN {settings.table_api_clients}%",),
    )

    def blocked() -> int:
        with psycopg2.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
            cur.execute(*waiting_on_keys)
            n = cur.fetchone()[0]
        conn.close()
        return n

    with TestClient(create_app(settings)) as api:
        get = lambda key: api.get("/v1/training-jobs", headers=h(key))  # noqa: E731 - auth + one query of jobs
        assert get(known).status_code == 200  # validated once: cached
        locker = psycopg2.connect(settings.pg_dsn())
        pool = ThreadPoolExecutor(1)
        try:
            with locker.cursor() as cur:
                cur.execute(f"LOCK TABLE {settings.table_api_keys}, {settings.table_api_clients} IN ACCESS EXCLUSIVE MODE")
            lookup = pool.submit(get, new)  # not cached: its lookup waits for the lock
            _wait(lambda: blocked() == 1, "the new key's lookup is waiting on the locked key tables")
            assert [get(known).status_code for _ in range(5)] == [200] * 5
            assert blocked() == 1 and not lookup.done()
            locker.commit()
            assert lookup.result(timeout=HANG_GUARD_S).status_code == 200
        finally:
            locker.rollback()
            locker.close()
            pool.shutdown(wait=True)


def _calls_per_request(app: Any, headers: list[tuple[bytes, bytes]], n: int = 200) -> float:
    """Python function calls (profile 'call' events) per warm request of ``app``."""

    async def go(_created: list[Any]) -> float:
        async with app.router.lifespan_context(app):
            for path in _paths(20):  # warm: keys, versions, prepared statements
                assert (await asgi_get(app, path, headers))[0] == 200
            calls = 0

            def count(frame: Any, event: str, arg: Any) -> None:
                nonlocal calls
                if event == "call":
                    calls += 1

            statuses = []
            sys.setprofile(count)
            try:
                for path in _paths(n):
                    statuses.append((await asgi_get(app, path, headers))[0])
            finally:
                sys.setprofile(None)
            assert statuses == [200] * n
            return calls / n

    return _run(go)


def test_the_real_app_calls_little_more_python_per_request_than_the_lean_service(warm: Settings, keys: dict[str, str]) -> None:
    """Every feature kept (auth with revocation, rate limit, request id, metrics, body limit, champion
    cache), the real app's Python calls per warm request stay within 1.4x of the lean service's."""
    ours = _calls_per_request(create_app(warm), _headers(keys["alice"]))
    lean = _calls_per_request(lean_app(warm, warm.model_name, "2"), _headers(keys["alice"]))
    assert ours <= 1.4 * lean, f"ours {ours:.0f} calls per request, lean {lean:.0f}"
