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


class PacedReplay:
    """Replays of ``sales`` in a background thread, so that drivers can be killed while records still arrive.

    The first range is sent one day every ``pace_s`` seconds until :meth:`finish` releases it (its remaining days
    then go as fast as the broker takes them: the test does not wait out a fixed pace once its kills are done);
    the further ranges follow unpaced (records sent twice: duplicates across batches).
    """

    def __init__(self, settings: Settings, sales: pd.DataFrame, ranges: list[tuple[str, str]], pace_s: float) -> None:
        import threading

        from app.produce import ProduceConfig, produce

        self.release = threading.Event()
        self.sent: list[dict] = []
        self.replays = len(ranges)

        def run() -> None:
            first, *rest = ranges
            paced = ProduceConfig("replay", *first, progress=False, on_day=lambda _day, _rows: self.release.wait(pace_s))
            self.sent.append(produce(settings, paced, sales=sales))
            for start, end in rest:
                self.sent.append(produce(settings, ProduceConfig("replay", start, end, progress=False), sales=sales))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self, timeout_s: float = 600) -> list[dict]:
        """Release the pace, wait for every replay; returns their summaries (fails if one did not end)."""
        self.release.set()
        self.thread.join(timeout=timeout_s)
        assert not self.thread.is_alive() and len(self.sent) == self.replays, "a replay did not finish"
        return self.sent
