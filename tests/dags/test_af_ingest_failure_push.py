"""A failed EMR ingest run pushes its outcome: ``sales_ingest_daily`` with ``backend = aws`` whose EMR Serverless
endpoint does not answer (a closed loopback port) fails ``ingest_aws``, and its failure callback pushes
``sfmlops_dag_task_last_run_timestamp_seconds{task="ingest_aws",kind="ingest",outcome="failed"}`` to a real
Pushgateway (Debian's ``prometheus-pushgateway`` on a free loopback port, in memory, stopped afterwards), which is what the
``IngestionFailed`` alert reads."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from app.stack.base import free_port

PUSHGATEWAY = shutil.which("prometheus-pushgateway")


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    if PUSHGATEWAY is None:
        pytest.skip("prometheus-pushgateway is not installed (make system-deps)")
    url = f"http://127.0.0.1:{free_port()}"
    # in memory only: Debian's binary defaults to persisting in /var/lib/prometheus (and loading what is there)
    proc = subprocess.Popen([PUSHGATEWAY, f"--web.listen-address={url.removeprefix('http://')}", "--persistence.file="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()  # loopback
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_failed_emr_ingest_run_pushes_failed(airflow_db, dagbag, pushgateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the EMR Serverless call fails at once
    for name, value in {
        "SFMLOPS_DAG_BACKEND": "aws", "SFMLOPS_DAG_EMR_APPLICATION_ID": "00fabc", "SFMLOPS_DAG_CODE_BUCKET": "my-code",
        "SFMLOPS_DAG_EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/sfmlops-emr",
        "SFMLOPS_DAG_PUSHGATEWAY_URL": pushgateway,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "test", "password": "test",
                                                "extra": {"region_name": "eu-west-1", "endpoint_url": closed}}),
        "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard",
    }.items():
        monkeypatch.setenv(name, value)
    dag = dagbag.dags["sales_ingest_daily"]
    task = dag.get_task("ingest_aws")
    monkeypatch.setattr(task, "retries", 0)  # the DAG's 2 retries, 5 minutes apart, are not what is under test
    dag_run = dag.test()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states["emr_job_spec"] == "success" and states["ingest_aws"] == "failed", states
    assert states["data_quality"] == "upstream_failed", states

    text = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5).read().decode()  # loopback
    pushed = {_label(line, "task"): line for line in text.splitlines() if line.startswith("sfmlops_dag_task_last_run_timestamp_seconds{")}
    assert set(pushed) == {"emr_job_spec", "ingest_aws"}, pushed  # the spec resolved; the job run failed
    assert all(f'{k}="{v}"' in pushed["ingest_aws"] for k, v in {"dag": "sales_ingest_daily", "kind": "ingest", "outcome": "failed",
                                                               "job": "sfmlops_dag"}.items()), pushed
    assert 'outcome="succeeded"' in pushed["emr_job_spec"], pushed
    assert float(pushed["ingest_aws"].rsplit(" ", 1)[1]) > time.time() - 600


def _label(line: str, name: str) -> str:
    return line.split(f'{name}="', 1)[1].split('"', 1)[0]
