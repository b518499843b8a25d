"""Fault test: kill the streaming driver at random moments during a replay; exactly once afterwards."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from ingest_helpers import PacedReplay, query

from app import ingest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES, DAYS, KILLS = 50, 60, 5


def _committed(settings) -> int:
    return query(settings, "SELECT count(*) FROM {table_ledger}")[0][0]


def test_kills_during_replay_then_exactly_once_and_idempotent_rerun(ingest_settings, rossmann, tmp_path) -> None:
    s = ingest_settings
    sales = rossmann[0]
    stores = sorted(sales["store"].unique())[:STORES]
    days = sorted(sales["date"].unique())[-DAYS:]
    part = sales[sales["store"].isin(stores) & sales["date"].isin(days)]
    start, end = str(days[0])[:10], str(days[-1])[:10]

    # Replay in the background, paced so that it is still running while the driver is killed (released once the
    # kills are done); the last days are sent twice (a second replay of the same rows: duplicates across batches).
    replay = PacedReplay(s, part, [(start, end), (str(days[-5])[:10], end)], pace_s=3.0)

    rng = random.Random(4)
    kills = 0
    log = tmp_path / "ingest.log"
    while kills < KILLS:
        before = _committed(s)
        proc = ingest.start(
            s, log_path=log, trigger="processing-time", interval="1 second", max_offsets_per_trigger=60
        )
        # wait until this driver is committing batches, then kill it at a random moment
        deadline = time.monotonic() + 600
        while _committed(s) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, f"driver exited by itself (rc {proc.returncode}); see {log}"
        time.sleep(rng.uniform(0.0, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    sent = replay.finish()
    assert len(sent) == 2 and all(r["failed"] == 0 for r in sent)

    summary = ingest.run(s, "available-now", timeout_s=900, log_path=log)
    assert summary["error"] is None

    keys = part.drop_duplicates(["store", "date"])
    (rows, distinct, total), = query(
        s, "SELECT count(*), count(DISTINCT (store, date)), coalesce(sum(sales), 0) FROM {table_sales}"
    )
    assert rows == len(keys) == STORES * DAYS
    assert distinct == rows
    assert total == int(keys["sales"].sum())
    assert query(s, "SELECT count(*) FROM {table_dead_letter} WHERE reason NOT LIKE 'duplicate%%'") == [(0,)]
    ledger = query(s, "SELECT count(*), count(DISTINCT batch_id), sum(rows_in) FROM {table_ledger}")[0]
    records = sum(r["sent"] for r in sent)
    assert ledger[0] == ledger[1] and ledger[2] == records

    # Re-running over the same offsets with a fresh checkpoint changes no row.
    snapshot = (
        "SELECT store, date, sales, customers, open, promo, state_holiday, school_holiday, ingested_at, xmin::text"
        " FROM {table_sales} ORDER BY store, date"
    )
    before_rows = query(s, snapshot)
    again = ingest.run(s, "available-now", timeout_s=900, checkpoint=str(tmp_path / "fresh-checkpoint"), log_path=log)
    assert again["query_id"] != summary["query_id"]
    assert again["rows"] == records and again["upserted"] == 0
    assert query(s, snapshot) == before_rows
