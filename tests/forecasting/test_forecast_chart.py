"""The demo's forecast chart (app.forecasting.chart) from real Postgres tables of its own, without pandas' DBAPI warning."""

from __future__ import annotations

import uuid
import warnings
from datetime import date, timedelta
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT, Settings
from app.db import connect
from app.forecasting.chart import forecast_chart, store_frames

pytestmark = pytest.mark.integration
SQL_DIR = PROJECT_ROOT / "app" / "sql"


def test_chart_of_a_store_reads_its_rows_and_the_latest_version(stack: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    s = stack.model_copy(update={"table_sales": f"chart_{tag}_sales", "table_stores": f"chart_{tag}_stores",
                                 "table_forecasts": f"chart_{tag}_forecasts"})
    last = date(2015, 7, 31)
    conn = connect(s)
    try:
        with conn, conn.cursor() as cur:
            for name in ("001_core.sql", "020_forecasts.sql"):
                cur.execute((SQL_DIR / name).read_text().format(**s.model_dump()))
            cur.executemany(
                f"INSERT INTO {s.table_sales} (store, date, day_of_week, sales, customers, open, promo, state_holiday,"
                " school_holiday) VALUES (1, %s, %s, %s, 10, 1, 0, '0', 0)",
                [(last - timedelta(days=k), (last - timedelta(days=k)).isoweekday(), 1000 + k) for k in range(100)],
            )
            for version, created in (("1", "2015-08-01"), ("2", "2015-08-02")):
                cur.executemany(
                    f"INSERT INTO {s.table_forecasts} (model_name, model_version, store, date, value, lower, upper, run_id,"
                    " created_at) VALUES ('m', %s, 1, %s, 900, 800, 1000, 'r', %s)",
                    [(version, last + timedelta(days=k), created) for k in range(1, 8)],
                )
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pandas' "only supports SQLAlchemy connectable" UserWarning included
            actual, fc = store_frames(s, 1, days=30)
            out = forecast_chart(s, 1, tmp_path / "store_1.png", days=30)
        assert len(actual) == 30 and actual["date"].is_monotonic_increasing and actual["date"].max().date() == last
        assert set(fc["model_version"]) == {"2"} and len(fc) == 7
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {s.table_forecasts}, {s.table_sales}, {s.table_stores} CASCADE")
            cur.execute(f"SELECT tablename FROM pg_tables WHERE tablename LIKE 'chart_{tag}_%'")
            for (left,) in cur.fetchall():
                cur.execute(f"DROP TABLE IF EXISTS {left} CASCADE")
        conn.close()
