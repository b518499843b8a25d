"""The key-set version is re-read in the background: no request waits for it while it is fresh, and a
revoked key is refused at most ``SFMLOPS_API_AUTH_RECHECK_S`` after the revoking commit (issue 15).

On the real Postgres, with key tables of this test's own (so locking the version table blocks nobody
else). "Time passes" for the version cache by moving the stamp of the last read back (``_age``): no sleeps,
no timing thresholds; the database is made slow by holding an ACCESS EXCLUSIVE lock on the version table,
so a re-read in flight is visible in ``pg_stat_activity`` while requests are answered.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from apitest_support import assert_error_shape, h
from fastapi.testclient import TestClient

from app.api import auth
from app.api.main import create_app
from app.config import Settings

pytestmark = pytest.mark.integration
RECHECK_S = 30.0  # long: only the moved stamps make the cached version due
HANG_GUARD_S = 60.0  # bounds a request that waits for the locked table (the old code): not a timing figure


@pytest.fixture
def own_keys(api_settings: Settings, isolated_tables) -> Settings:  # the factory fixture
    """Settings with every table (keys, clients, jobs, ...) of this test only (migrated), dropped afterwards."""
    return isolated_tables(api_settings, "key", api_auth_recheck_s=RECHECK_S)


def _age(settings: Settings, seconds: float) -> None:
    """Make this process's last read of the key-set version ``seconds`` older."""
    ident = auth._db_ident(settings)
    started, version = auth._versions[ident]
    auth._versions[ident] = (started - seconds, version)


def _blocked_rereads(settings: Settings) -> int:
    """Reads of the version table waiting for a lock, from any process."""
    with psycopg2.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f"SELECT version FROM {auth.version_table(settings)}%",),
        )
        n = cur.fetchone()[0]
    conn.close()
    return n


def _wait(predicate, what: str) -> None:
    import time

    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_requests_are_served_while_the_key_set_version_is_re_read_and_a_revoked_key_is_refused_within_the_interval(
    own_keys: Settings,
) -> None:
    settings = own_keys
    key = auth.issue_key(settings, f"test-refresh-{uuid.uuid4().hex[:8]}")
    reading = lambda: auth._db_ident(settings) in auth._version_reads  # noqa: E731
    with TestClient(create_app(settings)) as api:
        locker = psycopg2.connect(settings.pg_dsn())
        pool = ThreadPoolExecutor(1)
        try:
            get = lambda: api.get("/v1/training-jobs", headers=h(key))  # noqa: E731 - auth + one query, no version table
            assert get().status_code == 200  # the key validated and cached, the version read
            # A slow database: the version table is locked, so a re-read of it waits.
            with locker.cursor() as cur:
                cur.execute(f"LOCK TABLE {auth.version_table(settings)} IN ACCESS EXCLUSIVE MODE")
            _age(settings, 0.6 * RECHECK_S)  # past half the interval: due for a background re-read
            first = pool.submit(get).result(timeout=HANG_GUARD_S)  # the old code waits here for the lock
            assert first.status_code == 200
            _wait(lambda: _blocked_rereads(settings) == 1, "the background re-read reached Postgres")
            # The re-read is still blocked, and requests keep being answered meanwhile; no second re-read.
            assert [pool.submit(get).result(timeout=HANG_GUARD_S).status_code for _ in range(3)] == [200] * 3
            assert _blocked_rereads(settings) == 1
            locker.commit()  # the database answers again: the re-read completes
            _wait(lambda: not reading(), "the re-read finished")

            # Revoked by another process's transaction (the trigger bumps the version).
            with psycopg2.connect(settings.pg_dsn()) as other, other.cursor() as cur:
                cur.execute(f"UPDATE {settings.table_api_keys} SET revoked_at = now()")
            other.close()
            # Under half the interval the known version is trusted (documented: at most the interval).
            assert get().status_code == 200
            # Past half: served once more while the re-read runs, then refused.
            _age(settings, 0.6 * RECHECK_S)
            assert get().status_code in (200, 401)
            _wait(lambda: not reading(), "the re-read finished")
            refused = get()
            assert refused.status_code == 401 and "revoked" in assert_error_shape(refused.json(), 401)["message"]

            # A key revoked while the process was idle for the whole interval is refused by the first request:
            # it waits for the re-read instead of trusting the old version.
            key2 = auth.issue_key(settings, f"test-refresh-{uuid.uuid4().hex[:8]}")
            assert api.get("/v1/training-jobs", headers=h(key2)).status_code == 200
            with psycopg2.connect(settings.pg_dsn()) as other, other.cursor() as cur:
                cur.execute(f"UPDATE {settings.table_api_keys} SET revoked_at = now() WHERE revoked_at IS NULL")
            other.close()
            _age(settings, RECHECK_S)
            assert api.get("/v1/training-jobs", headers=h(key2)).status_code == 401
        finally:  # before the client closes: a request the old code left waiting on the lock ends first
            locker.rollback()
            locker.close()
            pool.shutdown(wait=True)
