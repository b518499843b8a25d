"""Drift -> early retraining, end to end on real data (issue 18.4's test).

A deliberately stale model version of the test's own (tests/forecasting/live_accuracy_support.py: forecasts
of 2015-04-26 .. 2015-06-12 from a model fitted on data up to 2013-06-30, stored in the test's own tables)
is scored against the later real actuals through the real API (uvicorn on loopback: ``POST /v1/accuracy/score``,
``GET /v1/accuracy``), which raises the drift flag; then the daily DAG's ``score_accuracy`` and
``retrain_on_drift`` tasks run in ``.venv-airflow`` (``dag.test()`` of that subset) against the same API and
submit a retraining, ``kind=noop`` so that no heavy training starts. Everything is removed afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "forecasting"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is not None, reason="main suite only (starts .venv-airflow itself)"),
]


def test_stale_version_drifts_and_the_daily_dag_submits_a_retraining(stack, rossmann_dir, tmp_path: Path) -> None:
    import live_accuracy_support as support
    from e2e_support import api_server
    from test_airflow_suite import AIRFLOW_PY, _stack_env

    from app.data.kaggle import load_train
    from app.db import transaction

    settings = support.isolated(stack).model_copy(update={"api_test_jobs": True})
    try:
        versions = support.build(settings, load_train(rossmann_dir / "train.csv.gz"))
        stale = versions["stale"]["version"]
        with api_server(settings) as (url, key):
            api = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60)
            before = api.get("/v1/accuracy").json()
            assert before["versions"] == [] and before["drift"] is False
            scored = api.post("/v1/accuracy/score", json={})
            assert scored.status_code == 200, scored.text
            body = scored.json()
            assert body["written"] == 2 * 48 and body["status"]["drift"] is True, body["status"]["reason"]
            read = api.get("/v1/accuracy", params={"days": 10}).json()
            assert read["current_version"] == stale and read["drift"] is True
            assert {v["model_version"]: len(v["days"]) for v in read["versions"]} == {versions["fresh"]["version"]: 10, stale: 10}
            bad = api.post("/v1/accuracy/score", json={"since": "not-a-date"})
            assert bad.status_code == 422 and "since" in bad.text

            env = _stack_env(settings, str(tmp_path / "airflow"))
            env.update({
                "AIRFLOW_CONN_SFMLOPS_API": json.dumps({"conn_type": "http", "host": url, "password": key}),
                "SFMLOPS_DAG_TRAINING_KIND": "noop",
                "SFMLOPS_DRIFTTEST_EXPECT": json.dumps({"stale_version": stale}),
            })
            env.pop("SFMLOPS_DAG_STORES", None)
            argv = [str(AIRFLOW_PY), "-m", "pytest", "tests/dags/test_af_drift.py", "--confcutdir=tests/dags",
                    "-p", "no:cacheprovider", "-q", "-rA", "-s"]
            log = tmp_path / "af_drift.log"
            with log.open("w") as sink:
                try:
                    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=600, check=False)
                except subprocess.TimeoutExpired:
                    pytest.fail(f".venv-airflow pytest timed out:\n{log.read_text()[-6000:]}")
            out = log.read_text()
            assert proc.returncode == 0 and " passed" in out, out[-6000:]
            job_id = re.search(r"SFMLOPS_DRIFTTEST_JOB=(\S+)", out).group(1)
            job = api.get(f"/v1/training-jobs/{job_id}")
            assert job.status_code == 200 and job.json()["kind"] == "noop"
    finally:
        support.cleanup(settings)
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (settings.table_accuracy,))
        assert cur.fetchone()[0] is None
