"""Runs the DAG tests (``test_af_*``) with ``.venv-airflow``'s pytest, so ``make test`` covers them.

Airflow is installed only in ``.venv-airflow``; this module (collected by the main suite in ``.venv``)
starts that interpreter's pytest in a subprocess with the environment the Airflow service gets from
the stack's settings (connections, ``SFMLOPS_DAG_*``), and asserts it passed. Inside ``.venv-airflow``
this module skips itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_PY = ROOT / ".venv-airflow" / "bin" / "python"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("airflow") is not None, reason="already inside .venv-airflow: the test_af_* modules run directly"
)


def _run(marker: str, env: dict[str, str], timeout_s: int) -> str:
    if not AIRFLOW_PY.exists():
        pytest.fail(f"{AIRFLOW_PY} is missing: run `make airflow-setup`")
    argv = [str(AIRFLOW_PY), "-m", "pytest", "tests/dags", "--confcutdir=tests/dags", "-p", "no:cacheprovider",
            "-q", "-rA", "-m", marker]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    out = proc.stdout + proc.stderr
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    print(f"[.venv-airflow pytest -m '{marker}'] {summary} (wall {time.monotonic() - t0:.1f}s)")
    failures = out.find("= FAILURES =")  # -rA prints the passes after the failures: show the failures first
    detail = out[failures:failures + 12000] if failures >= 0 else out[-12000:]
    assert proc.returncode == 0, f".venv-airflow pytest -m '{marker}' failed:\n{detail}\n...\n{summary}"
    assert " passed" in summary, summary
    return out


def _base_env(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env["AIRFLOW_HOME"] = tmp
    return env


def test_dagbag_and_failing_tasks_without_services(tmp_path: Path) -> None:
    """DagBag checks, and runs that fail on API errors (a real HTTP server on loopback)."""
    _run("not integration and not slow", _base_env(str(tmp_path)), timeout_s=900)


def _stack_env(settings, tmp: str) -> dict[str, str]:
    from app.stack.airflow import airflow_env

    Path(tmp).mkdir(parents=True, exist_ok=True)
    env = _base_env(tmp)
    env.update(airflow_env(settings, airflow_home=tmp))
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp}/airflow.db"
    return env


@pytest.mark.integration
def test_failing_checks_on_the_real_postgres(stack, tmp_path: Path) -> None:
    """Too many dead letters fail the daily DAG's data-quality task; a store short of forecasts fails the
    weekly DAG's forecast check (both against the real Postgres of the stack)."""
    _run("integration and not slow", _stack_env(stack, str(tmp_path)), timeout_s=900)


@pytest.mark.integration
@pytest.mark.slow
def test_dags_end_to_end_on_the_stack(stack, tmp_path: Path) -> None:
    """dag.test() of both DAGs against the real local stack on an isolated slice of data.

    The slice (the full history of a few stores) is produced to a fresh Kafka topic; the daily DAG ingests
    it into a fresh sales table with spark-submit; the weekly DAG trains on five of those stores through a
    real API (uvicorn) as a Ray job (LightGBM only), forecasts them with `sfmlops forecast` and checks the
    forecasts. Tables, topic, model name and job code are the test's own (see e2e_support), so neither
    what the stack's `sales` holds nor its champion matters or changes. The run times of both DAG tests
    are printed (`-rA` shows them).
    """
    from e2e_support import api_server, cleanup, isolated_settings, prepare_slice

    settings = isolated_settings(stack, tmp_path)
    try:
        expected = prepare_slice(settings)
        env = _stack_env(settings, str(tmp_path / "airflow"))
        env.update({
            "SFMLOPS_DAGTEST_EXPECT": json.dumps(expected),
            "SFMLOPS_DAG_FORECAST_DAYS": "7",
            "SFMLOPS_DAG_STORES": ",".join(map(str, expected["train_stores"])),
            "SFMLOPS_DAG_TRAINING_NEURAL": "false",
            "SFMLOPS_DAG_TRAINING_LGBM_ROUNDS": "100",
            "SFMLOPS_DAG_MIN_ROWS": str(expected["rows"]),
        })
        with api_server(settings) as (url, key):
            env["AIRFLOW_CONN_SFMLOPS_API"] = json.dumps({"conn_type": "http", "host": url, "password": key})
            out = _run("slow", env, timeout_s=1500)
    finally:
        cleanup(settings)
    times = re.findall(r"^(sales_\w+ dag\.test\(\): [\d.]+s.*)$", out, flags=re.M)
    for line in times:
        print(line)
    assert len(times) == 2, out[-3000:]
