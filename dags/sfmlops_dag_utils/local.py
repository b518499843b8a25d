"""The local backend: commands run on the Airflow worker against the embedded stack.

The streaming job is started with ``spark-submit`` exactly as ``sfmlops ingest`` / ``make spark-package``
start it (local master, connector jars on the driver class path, ``spark_jobs/sales_stream.py`` with the
EMR step's arguments); the batch forecast with ``sfmlops forecast --days N``. Both read their settings
from the ``SFMLOPS_*`` variables of the worker's environment, which ``sfmlops up --with-airflow`` sets.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable

from airflow.sdk.exceptions import AirflowException

INGEST_SUMMARY_PREFIX = "SFMLOPS_INGEST_SUMMARY "


def spark_submit_command(project_dir: Path, extra_args: str = "") -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of the local availableNow run of ``spark_jobs/sales_stream.py``."""
    venv = project_dir / ".venv" / "bin"
    spark_submit = venv / "spark-submit"
    job = project_dir / "spark_jobs" / "sales_stream.py"
    cache_dir = Path(os.environ.get("SFMLOPS_CACHE_DIR") or project_dir / ".cache")
    jars = cache_dir / "jars" / "spark"
    for path, hint in ((spark_submit, "run `make setup`"), (job, "check SFMLOPS_DAG_PROJECT_DIR"), (jars, "run `make setup` (connector jars)")):
        if not path.exists():
            raise AirflowException(f"local ingest: {path} is missing ({hint})")
    host = os.environ.get("SFMLOPS_BIND_HOST", "127.0.0.1")
    argv = [
        str(spark_submit),
        "--master", os.environ.get("SFMLOPS_SPARK_MASTER", "local[*]"),
        "--driver-memory", os.environ.get("SFMLOPS_SPARK_DRIVER_MEMORY", "1536m"),
        "--conf", f"spark.driver.extraClassPath={jars}/*",
        "--conf", "spark.log.level=WARN",
        "--conf", "spark.ui.enabled=false",
        "--conf", f"spark.driver.host={host}",
        "--conf", f"spark.driver.bindAddress={host}",
        "--conf", "spark.sql.streaming.stopGracefullyOnShutdown=true",
        str(job),
        "--trigger", "available-now",
        *shlex.split(extra_args),
    ]
    python = str(venv / "python")
    env = {
        **os.environ,
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        "PYTHONPATH": os.pathsep.join(p for p in (str(project_dir), os.environ.get("PYTHONPATH", "")) if p),
    }
    env.pop("SPARK_HOME", None)  # the venv's spark-submit finds pyspark's own
    return argv, env


def forecast_command(project_dir: Path, days: int, stores: list[int] | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of the local batch forecast (``sfmlops forecast --days N [--stores 1,2]``)."""
    cli = project_dir / ".venv" / "bin" / "sfmlops"
    if not cli.exists():
        raise AirflowException(f"local forecast: {cli} is missing (run `make setup` in {project_dir})")
    argv = [str(cli), "forecast", "--days", str(days)]
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
    proc = subprocess.Popen(  # noqa: S603 - argv built from configuration
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
    """The streaming job's summary (its ``SFMLOPS_INGEST_SUMMARY {...}`` line), if printed."""
    for line in reversed(lines):
        if line.startswith(INGEST_SUMMARY_PREFIX):
            return json.loads(line[len(INGEST_SUMMARY_PREFIX):])
    return None


def last_json(lines: list[str]) -> dict[str, Any] | None:
    """The last line that parses as a JSON object (commands print their summary last)."""
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
