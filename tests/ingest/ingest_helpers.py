"""Helpers shared by the ingestion tests (real Kafka and Postgres; nothing mocked)."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from app.config import Settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def record(store: int, day: str, sales: int = 5000, **changes: Any) -> dict:
    """A valid record for ``store`` on ``day`` (YYYY-MM-DD); ``changes`` override fields."""
    import datetime as dt

    row = {
        "schema_version": 1,
        "store": store,
        "date": day,
        "day_of_week": dt.date.fromisoformat(day).isoweekday(),
        "sales": sales,
        "customers": 500,
        "open": 1,
        "promo": 0,
        "state_holiday": "0",
        "school_holiday": 0,
    }
    row.update(changes)
    return row


def send_raw(settings: Settings, messages: list[tuple[bytes | None, bytes | None]], partitions: int | None = None) -> None:
    """Send (key, value) pairs as they are (no validation), after creating the topic."""
    from app.produce import ensure_topic, make_producer

    ensure_topic(settings, partitions=partitions)
    producer = make_producer(settings, max_request_size=2 * 1024 * 1024)
    try:
        for key, value in messages:
            producer.send(settings.kafka_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def encode(row: dict) -> tuple[bytes, bytes]:
    return str(row.get("store")).encode(), json.dumps(row).encode()


def query(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    """The rows of ``sql`` with its ``{table_*}`` placeholders filled from ``settings``."""
    from app.db import render, transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(render(sql, settings), params)
        return cur.fetchall()


def load_stores(settings: Settings, stores: pd.DataFrame) -> None:
    """Fill the (per-test) stores table."""
    from app.db import transaction

    cols = list(stores.columns)
    frame = stores.copy()
    for col in ("competition_open_since_month", "competition_open_since_year", "promo2_since_week", "promo2_since_year"):
        if col in frame:
            frame[col] = frame[col].astype("Int64")
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    buf.seek(0)
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.copy_expert(f"COPY {settings.table_stores} ({', '.join(cols)}) FROM STDIN WITH (FORMAT csv)", buf)
