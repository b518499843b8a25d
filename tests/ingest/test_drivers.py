"""One driver per checkpoint, and no driver outlives its command (issue 13, items 3 and 4).

* A second driver on a checkpoint that a running driver holds refuses at start, with a message saying
  why and what to do, and changes nothing; the first one goes on and its rows are exact.
* ``sfmlops ingest`` killed with SIGKILL, or its whole process group killed as an Airflow task timeout
  does, takes its spark-submit driver (JVM and Python driver) with it; a rerun completes exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from ingest_helpers import PacedReplay, query

from app import ingest
from app.config import PROJECT_ROOT, settings_env
from app.produce import ProduceConfig, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STORES, DAYS = 20, 24


def _committed(settings) -> int:
    return query(settings, "SELECT count(*) FROM {table_ledger}")[0][0]


def _wait_for_batch(settings, proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    before = _committed(settings)
    deadline = time.monotonic() + timeout
    while _committed(settings) == before and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert proc.poll() is None, f"driver exited by itself (rc {proc.returncode}); see {log}"
    assert _committed(settings) > before, f"no batch committed; see {log}"


def _job_processes(settings) -> list[psutil.Process]:
    """Processes of this test's job (spark-submit JVM, Python driver, Python workers): they carry its tables."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("SFMLOPS_TABLE_SALES") == settings.table_sales and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _none_left(settings, grace: float = 60) -> list[str]:
    """The job's processes still alive once ``grace`` seconds passed (empty as soon as none is left)."""
    deadline = time.monotonic() + grace
    while True:
        left = _job_processes(settings)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    described = []
    for proc in left:
        try:
            described.append(f"{proc.pid} {' '.join(proc.cmdline())[:150]}")
            proc.kill()  # do not leave them running after the test
        except psutil.Error:
            continue
    return described


def _data(rossmann):
    sales = rossmann[0]
    stores = sorted(sales["store"].unique())[:STORES]
    days = sorted(sales["date"].unique())[-DAYS:]
    return sales[sales["store"].isin(stores) & sales["date"].isin(days)], str(days[0])[:10], str(days[-1])[:10]


def _assert_exact(settings, part, records: int) -> None:
    keys = part.drop_duplicates(["store", "date"])
    (rows, distinct, total), = query(settings, "SELECT count(*), count(DISTINCT (store, date)), coalesce(sum(sales), 0) FROM {table_sales}")
    assert rows == distinct == len(keys)
    assert total == int(keys["sales"].sum())
    ledger = query(settings, "SELECT count(*), count(DISTINCT batch_id), sum(rows_in) FROM {table_ledger}")[0]
    assert ledger[0] == ledger[1] and ledger[2] == records


def test_second_driver_on_a_checkpoint_refuses_and_the_first_stays_exact(ingest_settings, rossmann, tmp_path) -> None:
    s = ingest_settings
    part, start, end = _data(rossmann)
    sent = produce(s, ProduceConfig("replay", start, end, progress=False), sales=part)
    log = tmp_path / "first.log"
    first = ingest.start(s, log_path=log, trigger="processing-time", interval="1 second", max_offsets_per_trigger=40)
    try:
        _wait_for_batch(s, first, log)
        # The same checkpoint, spelled differently (trailing slash): refused before its query starts.
        with pytest.raises(RuntimeError) as refused:
            ingest.run(s, "available-now", timeout_s=600, checkpoint=str(s.ingest_checkpoint) + "/", log_path=tmp_path / "second.log")
        text = str(refused.value)
        assert "exit 2" in text and "another ingest driver holds" in text and "sfmlops-ingest driver pid" in text
        assert first.poll() is None
        # The first driver drains the topic undisturbed.
        deadline = time.monotonic() + 600
        while (query(s, "SELECT coalesce(sum(rows_in), 0) FROM {table_ledger}")[0][0] < sent["sent"]
               and first.poll() is None and time.monotonic() < deadline):
            time.sleep(0.5)
        assert first.poll() is None, f"the first driver stopped (rc {first.returncode}); see {log}"
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(timeout=300)
    _assert_exact(s, part, sent["sent"])
    # Once the first driver is gone, its lock is too: the next driver on the checkpoint runs (a no-op).
    again = ingest.run(s, "available-now", timeout_s=600, log_path=tmp_path / "third.log")
    assert again["error"] is None and again["rows"] == 0
    _assert_exact(s, part, sent["sent"])


def _start_command(settings, log: Path, new_session: bool) -> subprocess.Popen:
    env = {**os.environ, **settings_env(settings), "SFMLOPS_INGEST_TRIGGER_INTERVAL": "1 second"}
    argv = [str(Path(sys.executable).with_name("sfmlops")), "ingest", "--trigger", "processing-time", "--max-offsets-per-trigger", "40"]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, start_new_session=new_session)


def test_killing_the_command_ends_its_driver(ingest_settings, rossmann, tmp_path) -> None:
    s = ingest_settings
    part, start, end = _data(rossmann)
    replay = PacedReplay(s, part, [(start, end)], pace_s=2.0)  # still sending while the commands are killed
    log = tmp_path / "ingest.log"
    for how in ("SIGKILL of the command", "SIGKILL of its process group (Airflow timeout)"):
        group = how.startswith("SIGKILL of its process group")
        command = _start_command(s, log, new_session=group)
        try:
            _wait_for_batch(s, command, log)
            assert len(_job_processes(s)) >= 2  # the JVM and the Python driver (at least) run
        finally:
            if group:
                os.killpg(command.pid, signal.SIGKILL)
            else:
                command.kill()
            command.wait()
        left = _none_left(s)
        assert not left, f"{how} left the driver running: {left}"
    sent = replay.finish()
    assert sent[0]["failed"] == 0

    summary = ingest.run(s, "available-now", timeout_s=900, log_path=log)
    assert summary["error"] is None
    _assert_exact(s, part, sent[0]["sent"])
