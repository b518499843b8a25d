"""`sfmlops up --with-airflow`'s Airflow service: starts healthy against the stack, listens on loopback only."""

from __future__ import annotations

import json
import urllib.request
from base64 import b64encode

import psutil
import pytest

from app.stack.airflow import AIRFLOW_VENV, Airflow
from app.stack.base import port_holder, process_tree
from test_stack import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(not (AIRFLOW_VENV / "bin" / "airflow").exists(), reason="needs `make airflow-setup`")
def test_airflow_service_starts_healthy_on_loopback_and_stops_clean(stack, tmp_path) -> None:  # noqa: ANN001
    settings = stack.model_copy(update={"state_dir": tmp_path / "state", "airflow_port": free_port()})
    service = Airflow(settings)
    assert service.start() == "started"
    try:
        pid = service.pid()
        assert pid is not None and service.healthy()
        listening = {
            (conn.laddr.ip, conn.laddr.port)
            for proc in process_tree(pid)
            for conn in proc.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        assert (settings.bind_host, settings.airflow_port) in listening, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, f"Airflow listens beyond loopback: {listening}"
        # The DAGs folder is the repository's: the admin user created at start sees both DAGs.
        password = (service.airflow_home / "standalone_admin_password.txt").read_text().strip()
        request = urllib.request.Request(
            f"{service.address}/api/v1/dags",
            headers={"Authorization": "Basic " + b64encode(f"admin:{password}".encode()).decode()},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            dag_ids = {d["dag_id"] for d in json.loads(resp.read())["dags"]}
        assert {"sales_ingest_daily", "sales_train_weekly"} <= dag_ids, dag_ids
    finally:
        procs = process_tree(pid) if (pid := service.pid()) else []
        service.stop()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    assert port_holder(settings.bind_host, settings.airflow_port) is None
