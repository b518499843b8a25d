"""The local backend: commands run on the Airflow worker against the embedded stack.

The streaming job runs through ``sfmlops ingest`` (one spark-submit line for the CLI and the DAG: local
master, connector jars on the driver class path, ``spark_jobs/sales_stream.py`` with the EMR step's
arguments); the batch forecast through ``sfmlops forecast --days N``. Both read their settings
from the ``SFMLOPS_*`` variables of the worker's environment, which ``sfmlops up --with-airflow`` sets.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowException

from sfmlops_dag_utils.common.jobs import ingest_summary as ingest_summary_line
from sfmlops_dag_utils.common.jobs import last_json_object


def _cli(project_dir: Path, what: str) -> Path:
    cli = project_dir / ".venv" / "bin" / "sfmlops"
    if not cli.exists():
        raise AirflowException(f"local {what}: {cli} is missing (run `make setup` in {project_dir})")
    return cli


def ingest_command(project_dir: Path, extra_args: str = "") -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of the local availableNow run of the streaming job: ``sfmlops ingest``, which builds the
    spark-submit line (``app.ingest.build_command``: master, driver memory, connector jars from the settings)
    and prints the job's summary as its last JSON line."""
    argv = [str(_cli(project_dir, "ingest")), "ingest", "--trigger", "available-now", *shlex.split(extra_args)]
    return argv, dict(os.environ)


def forecast_command(project_dir: Path, days: int, stores: list[int] | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of the local batch forecast (``sfmlops forecast --days N [--stores 1,2]``)."""
    argv = [str(_cli(project_dir, "forecast")), "forecast", "--days", str(days)]
    if stores:
        argv += ["--stores", ",".join(str(s) for s in stores)]
    return argv, dict(os.environ)


def run_logged(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: int, log: Callable[[str], Any], what: str) -> list[str]:
    """Run a command, streaming its output to the task log; raise with its last lines if it fails.

    Returns the output lines that look like summaries (``SFMLOPS_...`` prefixes and JSON objects).
    """
    log(f"running: {shlex.join(argv)}")
    tail: deque[str] = deque(maxlen=40)
    lines: list[str] = []
    proc = subprocess.Popen(  # argv built from configuration
        argv, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(timeout_s, _kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if line.startswith(("SFMLOPS_", "{")):
                lines.append(line)
            log(line)
        proc.wait()
    except BaseException:  # task killed or interrupted: take the child process group with us
        _kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    if timed_out.is_set():
        raise AirflowException(f"{what} ran over {timeout_s}s and was stopped; last output:\n" + "\n".join(tail))
    if proc.returncode != 0:
        raise AirflowException(f"{what} failed with exit code {proc.returncode}; last output:\n" + "\n".join(tail))
    return lines


def ingest_summary(lines: list[str]) -> dict[str, Any] | None:
    """The streaming job's summary: the last JSON line ``sfmlops ingest`` printed (or its job's
    ``SFMLOPS_INGEST_SUMMARY`` line when the output holds the job's own log)."""
    return ingest_summary_line(lines) or last_json_object(lines)


def last_json(lines: list[str]) -> dict[str, Any] | None:
    """The last line that parses as a JSON object (commands print their summary last)."""
    return last_json_object(lines)
