"""`sfmlops up --with-airflow`'s Airflow 3 service: api-server, scheduler, dag-processor and triggerer start
healthy against the stack, listen on loopback only, and the REST API answers with a simple-auth-manager token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import psutil
import pytest

from app.stack.airflow import AIRFLOW_VENV, COMPONENTS, Airflow
from app.stack.base import free_port, port_holder, process_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.mark.skipif(not (AIRFLOW_VENV / "bin" / "airflow").exists(), reason="needs `make airflow-setup`")
def test_airflow_service_starts_healthy_on_loopback_and_stops_clean(stack, tmp_path) -> None:
    settings = stack.model_copy(update={"state_dir": tmp_path / "state", "airflow_port": free_port()})
    service = Airflow(settings)
    assert service.start() == "started"
    try:
        pid = service.pid()
        assert pid is not None and service.healthy()
        with urllib.request.urlopen(f"{service.address}/api/v2/monitor/health", timeout=30) as resp:  # loopback
            health = json.loads(resp.read())
        assert {part: (health.get(part) or {}).get("status") for part in COMPONENTS} == dict.fromkeys(COMPONENTS, "healthy"), health
        commands = [" ".join(_cmdline(proc)) for proc in process_tree(pid)]
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            names = (f"airflow {component}", f"airflow {component.replace('-', '_')}")  # argv, or its process title
            assert any(name in c for c in commands for name in names), f"no `airflow {component}` process: {commands}"
        # the LocalExecutor's worker pool is sized for one machine (AIRFLOW__CORE__PARALLELISM)
        assert sum("LocalExecutor" in c for c in commands) <= int(service.environment()["AIRFLOW__CORE__PARALLELISM"])
        listening = {
            (conn.laddr.ip, conn.laddr.port)
            for proc in process_tree(pid)
            for conn in proc.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        assert (settings.bind_host, settings.airflow_port) in listening, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, f"Airflow listens beyond loopback: {listening}"
        # The REST API (v2) wants a bearer token: without one it refuses, with the admin's it lists the
        # DAG bundle's DAGs (the repository's dags/, parsed by the dag-processor).
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{service.address}/api/v2/dags", timeout=30)  # loopback
        assert refused.value.code == 401
        request = urllib.request.Request(f"{service.address}/api/v2/dags", headers={"Authorization": f"Bearer {service.token()}"})
        deadline = time.monotonic() + 120
        while True:  # the dag-processor parses the bundle shortly after start
            with urllib.request.urlopen(request, timeout=30) as resp:  # loopback
                dag_ids = {d["dag_id"] for d in json.loads(resp.read())["dags"]}
            if {"sales_ingest_daily", "sales_train_weekly"} <= dag_ids or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert {"sales_ingest_daily", "sales_train_weekly"} <= dag_ids, dag_ids
    finally:
        procs = process_tree(pid) if (pid := service.pid()) else []
        service.stop()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    assert port_holder(settings.bind_host, settings.airflow_port) is None
