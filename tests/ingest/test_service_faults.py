"""Faults beyond a driver kill (issue 13, item 5): the Kafka broker, and PostgreSQL, restarted by the
stack's own stop/start while a continuous driver replays. Afterwards rows = distinct keys sent, no
duplicates, equal sums, and the query resumed on its own (or, if it gave up, it said what to do and a
rerun completes).

These restart services, so they run on a PRIVATE Kafka and PostgreSQL (own state folder under the
test's tmp folder, free ports); the user's running stack is not touched.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from ingest_helpers import load_stores, query

from app import ingest
from app.config import Settings
from app.produce import ProduceConfig, produce
from app.stack.base import PortInUseError, free_ports
from app.stack.kafka import Kafka
from app.stack.postgres import Postgres

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES, DAYS = 20, 30


@pytest.fixture
def private_stack(ingest_base: Settings, tmp_path: Path, rossmann):
    """Settings of a private Kafka + PostgreSQL (started here, stopped afterwards) with the stores loaded."""
    for attempt in range(3):  # a free port can be taken by another process before the service binds it
        kafka_port, controller_port, pg_port = free_ports(3)
        settings = ingest_base.model_copy(
            update={
                "state_dir": tmp_path / f"state{attempt}",
                "kafka_port": kafka_port,
                "kafka_controller_port": controller_port,
                "kafka_bootstrap_servers": None,
                "kafka_heap_mb": 256,
                "pg_port": pg_port,
                "pg_host": "127.0.0.1",
                "kafka_topic": "sales_fault",
                "kafka_partitions": 4,
                "ingest_checkpoint": str(tmp_path / "checkpoint"),
            }
        )
        for folder in (settings.state_dir, settings.logs_dir, settings.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        services = [Postgres(settings), Kafka(settings)]
        try:
            for svc in services:
                svc.start()
            break
        except PortInUseError:
            for svc in reversed(services):
                svc.stop()
            if attempt == 2:
                raise
    try:
        load_stores(settings, rossmann[1])
        yield settings
    finally:
        for svc in reversed(services):
            svc.stop()


def _data(rossmann):
    sales = rossmann[0]
    stores = sorted(sales["store"].unique())[:STORES]
    days = sorted(sales["date"].unique())[-DAYS:]
    return sales[sales["store"].isin(stores) & sales["date"].isin(days)], [str(d)[:10] for d in days]


def _ledger_rows(settings) -> int:
    try:
        return query(settings, "SELECT coalesce(sum(rows_in), 0) FROM {table_ledger}")[0][0]
    except Exception:  # noqa: BLE001 - PostgreSQL may be restarting
        return -1


def _restart_during_replay(settings: Settings, rossmann, tmp_path: Path, service_cls) -> None:
    s = settings
    part, days = _data(rossmann)
    half = len(days) // 2
    sent = [produce(s, ProduceConfig("replay", days[0], days[half - 1], progress=False), sales=part)]
    log = tmp_path / "ingest.log"
    driver = ingest.start(s, log_path=log, trigger="processing-time", interval="1 second", max_offsets_per_trigger=50)
    try:
        deadline = time.monotonic() + 600
        while _ledger_rows(s) <= 0 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert driver.poll() is None and _ledger_rows(s) > 0, f"no batch committed; see {log}"
        service = service_cls(s)
        assert service.stop()
        time.sleep(3)  # the driver meets the service down (a batch or an offset fetch fails)
        assert service.start() == "started"
        # The rest of the replay, and its last days again (duplicates across batches).
        sent.append(produce(s, ProduceConfig("replay", days[half], days[-1], progress=False), sales=part))
        sent.append(produce(s, ProduceConfig("replay", days[-5], days[-1], progress=False), sales=part))
        records = sum(r["sent"] for r in sent)
        assert all(r["failed"] == 0 for r in sent)
        deadline = time.monotonic() + 600
        while _ledger_rows(s) < records and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        resumed = driver.poll() is None and _ledger_rows(s) == records
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(timeout=300)
    text = log.read_text(errors="replace")
    if resumed:  # the running driver committed every record sent, after the restart too
        print("resumed on its own;", "restarted the query" if "restarting it from the checkpoint" in text else "no restart needed")
    else:
        assert driver.returncode not in (0, None, -signal.SIGTERM, 128 + signal.SIGTERM), f"neither resumed nor failed; see {log}"
        # It gave up: the message says what happened and what to do; then a rerun completes.
        assert "ingest failed:" in text and "run `sfmlops ingest` again" in text, text[-3000:]
    summary = ingest.run(s, "available-now", timeout_s=900, log_path=log)
    assert summary["error"] is None

    keys = part.drop_duplicates(["store", "date"])
    (rows, distinct, total), = query(s, "SELECT count(*), count(DISTINCT (store, date)), coalesce(sum(sales), 0) FROM {table_sales}")
    assert rows == distinct == len(keys)
    assert total == int(keys["sales"].sum())
    assert query(s, "SELECT count(*) FROM {table_dead_letter} WHERE reason NOT LIKE 'duplicate%%'") == [(0,)]
    ledger = query(s, "SELECT count(*), count(DISTINCT (query_id, batch_id)), sum(rows_in) FROM {table_ledger}")[0]
    assert ledger[0] == ledger[1] and ledger[2] == records


def test_kafka_restarted_during_replay(private_stack, rossmann, tmp_path) -> None:
    _restart_during_replay(private_stack, rossmann, tmp_path, Kafka)


def test_postgres_restarted_during_replay(private_stack, rossmann, tmp_path) -> None:
    _restart_during_replay(private_stack, rossmann, tmp_path, Postgres)
