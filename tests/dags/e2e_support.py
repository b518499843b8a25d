"""Helpers of the end-to-end DAG test that need the ``app`` package (run in ``.venv``, not in Airflow's venv)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
SLICE_STORES = 10
SLICE_DAYS = 3


def produce_slice(settings) -> tuple[str, int]:  # noqa: ANN001 - app.config.Settings
    """Publish the last few days of a few stores to a fresh topic; returns ``(topic, rows)``.

    The rows are those already in ``sales`` (or the shared Kaggle data when the table is empty), so the
    upsert the DAG performs rewrites identical values and leaves the stack's data as it was.
    """
    import pandas as pd
    import psycopg2

    from app.produce import produce

    with contextlib.closing(psycopg2.connect(settings.pg_dsn())) as conn:
        frame = pd.read_sql_query(
            f"SELECT store, date, day_of_week, sales, customers, open, promo, state_holiday, school_holiday "
            f"FROM {settings.table_sales} WHERE store <= %s AND date > (SELECT max(date) FROM {settings.table_sales}) - %s "
            f"ORDER BY date, store",
            conn,
            params=(SLICE_STORES, SLICE_DAYS),
        )
    if frame.empty:
        from app.data.kaggle import load_train

        shared = Path(os.environ.get("SFMLOPS_TEST_ROSSMANN_DIR") or ROOT.parent / "shared" / "data" / "rossmann")
        full = load_train(shared / "train.csv.gz")
        last = full["date"].max()
        frame = full[(full["store"] <= SLICE_STORES) & (full["date"] > last - pd.Timedelta(days=SLICE_DAYS))]
    frame = frame.assign(date=pd.to_datetime(frame["date"])).reset_index(drop=True)
    topic = f"test-airflow-{uuid.uuid4().hex[:8]}"
    summary = produce(settings, "replay", sales=frame, topic=topic, progress=False)
    print(f"produced {summary} to {topic}")
    return topic, len(frame)


@contextlib.contextmanager
def api_server(settings) -> Iterator[tuple[str, str]]:  # noqa: ANN001
    """The real API under uvicorn on the stack's API port, and a fresh key; yields ``(base_url, key)``."""
    from app.api.auth import issue_key
    from app.stack.airflow import settings_env

    key = issue_key(settings, f"airflow-e2e-{uuid.uuid4().hex[:8]}")
    url = settings.api_base_url
    env = {**os.environ, **settings_env(settings), **settings.aws_env()}
    proc = subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "uvicorn", "app.api.main:create_app", "--factory", "--host", settings.bind_host,
         "--port", str(settings.api_port), "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 - loopback
                    break
            except Exception:  # noqa: BLE001 - booting
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not come up on {url}") from None
                time.sleep(0.5)
        yield url, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
