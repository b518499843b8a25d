"""Fixtures for the UI tests (helpers and seeded values live in ``uitest_support``)."""

from __future__ import annotations

import io
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from isolated_support import drop_isolated, isolated_settings
from uitest_support import (
    HORIZON,
    STORES,
    TRAIN_STORE_JOB,
    StreamlitServer,
    UiEnv,
    _forecast_rows,
    _plan_rows,
    _sales_rows,
    _seed_registry,
)

from app.config import Settings
from app.db import connect
from app.stack.base import free_port


@pytest.fixture(scope="session")
def ui_api(stack: Settings) -> Iterator[UiEnv]:
    """Seed tables and registry, then serve the real API with uvicorn in a thread on a free loopback port."""
    import uvicorn

    from app.api import db as api_db
    from app.api.auth import issue_key
    from app.api.main import create_app
    from app.api.routes import stores_ui
    from app.forecasting import planning

    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="sfmlops-ui-"))
    job_zip = workdir / "job.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # Ray strips a single top-level folder when it unpacks a working_dir zip.
        zf.writestr("job/ray_cluster/jobs/train_store.py", TRAIN_STORE_JOB)
        zf.writestr("job/ray_cluster/jobs/train_all.py", TRAIN_STORE_JOB.replace('type=int)', 'type=int, default=0)'))
    job_zip.write_bytes(buf.getvalue())
    settings = isolated_settings(
        stack,
        "ui",
        model_name=f"test-ui-{tag}",
        horizon_days=HORIZON,
        job_working_dir=job_zip.as_uri(),
        api_test_jobs=True,
        api_max_concurrent_jobs=2,
        api_max_jobs_per_hour=50,
    )
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {settings.table_stores} (store, store_type, assortment, competition_distance, promo2)"
                " VALUES (%s, %s, %s, 500, 0)",
                STORES,
            )
            cur.executemany(
                f"INSERT INTO {settings.table_sales} (store, date, day_of_week, sales, customers, open, promo,"
                " state_holiday, school_holiday) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [r for s, _, _ in STORES for r in _sales_rows(s)],
            )
        runs = _seed_registry(settings)
        with conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {settings.table_forecasts} (model_name, model_version, store, date, value, lower, upper,"
                " run_id, inputs) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                _forecast_rows(settings.model_name, "2", runs["2"]),
            )
        with conn:
            planning.upload(conn, settings, planning.json_entries(_plan_rows()), f"ui-test-{tag}")
        key = issue_key(settings, f"ui-test-{tag}")
        other = issue_key(settings, f"ui-test-{tag}-b")

        app = create_app(settings)
        if not any(getattr(r, "path", "") == "/v1/stores" for r in app.routes):
            app.include_router(stores_ui.router)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail(f"uvicorn did not start on {url}")
            time.sleep(0.05)
        yield UiEnv(settings=settings, api_url=url, key=key, other_key=other, run_id=runs["2"])
        server.should_exit = True
        thread.join(timeout=10)
    finally:
        api_db.close_pools()
        conn.close()
        drop_isolated(settings)


@pytest.fixture
def ui_settings_env(ui_api: UiEnv, monkeypatch: pytest.MonkeyPatch) -> UiEnv:
    """Environment for AppTest runs in this process: the UI reads Settings() from SFMLOPS_* variables."""
    for name, value in ui_api.ui_env().items():
        monkeypatch.setenv(name, value)
    return ui_api


@pytest.fixture
def streamlit_server(tmp_path: Path) -> Iterator:
    """Factory: start UI servers with given SFMLOPS_* variables; all are stopped after the test."""
    started: list[StreamlitServer] = []

    def start(env: dict[str, str]) -> StreamlitServer:
        server = StreamlitServer(env, tmp_path / f"streamlit-{len(started)}.log")
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()

