"""The DAG settings' third source, the ``[sfmlops]`` section of Airflow's configuration: how Terraform's MWAA
environment delivers ``pushgateway_url`` (its configuration option ``sfmlops.pushgateway_url`` becomes the
environment variable ``AIRFLOW__SFMLOPS__PUSHGATEWAY_URL`` of MWAA's components, which is how these tests set it).
Precedence: ``SFMLOPS_DAG_<NAME>``, then the Variable ``sfmlops_<name>`` (here through Airflow's environment
secrets backend, ``AIRFLOW_VAR_*``), then the section, then the default; an empty value counts as unset. A task's
push then reaches the Pushgateway the section names (a stand-in HTTP server on a free loopback port)."""

from __future__ import annotations

import base64
from http.server import BaseHTTPRequestHandler

import pytest

SECTION_ENV = "AIRFLOW__SFMLOPS__PUSHGATEWAY_URL"
DAG_ENV = "SFMLOPS_DAG_PUSHGATEWAY_URL"
VARIABLE_ENV = "AIRFLOW_VAR_SFMLOPS_PUSHGATEWAY_URL"


@pytest.fixture(autouse=True)
def _no_other_source(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (SECTION_ENV, DAG_ENV, VARIABLE_ENV, "AIRFLOW__SFMLOPS__BACKEND", "SFMLOPS_DAG_BACKEND"):
        monkeypatch.delenv(name, raising=False)


def test_the_sfmlops_config_section_sets_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import lookup, run_config

    assert lookup("pushgateway_url") == ""  # the default: no pushing
    monkeypatch.setenv(SECTION_ENV, " http://ip-10-40-10-12.eu-west-1.compute.internal:9091 ")
    assert lookup("pushgateway_url") == "http://ip-10-40-10-12.eu-west-1.compute.internal:9091"
    assert run_config()["pushgateway_url"] == "http://ip-10-40-10-12.eu-west-1.compute.internal:9091"
    # any setting, not only this one; validated like the others
    monkeypatch.setenv("AIRFLOW__SFMLOPS__BACKEND", "aws")
    assert run_config().backend == "aws"
    monkeypatch.setenv("AIRFLOW__SFMLOPS__BACKEND", "gcp")
    with pytest.raises(ValueError, match="must be 'local' or 'aws'"):
        run_config()


def test_environment_then_variable_then_section_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import lookup

    monkeypatch.setenv(SECTION_ENV, "http://section:9091")
    monkeypatch.setenv(VARIABLE_ENV, "http://variable:9091")
    monkeypatch.setenv(DAG_ENV, "http://environment:9091")
    assert lookup("pushgateway_url") == "http://environment:9091"
    monkeypatch.setenv(DAG_ENV, "  ")  # empty counts as unset
    assert lookup("pushgateway_url") == "http://variable:9091"
    monkeypatch.delenv(DAG_ENV)
    monkeypatch.setenv(VARIABLE_ENV, "")
    assert lookup("pushgateway_url") == "http://section:9091"
    monkeypatch.setenv(SECTION_ENV, "")
    assert lookup("pushgateway_url") == ""
    # an operator's Variable turns off what the deployment configured
    monkeypatch.setenv(SECTION_ENV, "http://section:9091")
    monkeypatch.setenv(VARIABLE_ENV, "off")
    assert lookup("pushgateway_url") == "off"


class _Recorder(BaseHTTPRequestHandler):
    puts: list[tuple[str, str]] = []

    def do_PUT(self) -> None:  # http.server's handler name for PUT
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).puts.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: no request log on stderr
        pass


@pytest.fixture
def pushgateway(loopback_server) -> tuple[str, list[tuple[str, str]]]:
    """A stand-in Pushgateway (answers every PUT with 200 and records it) on a free loopback port."""
    _Recorder.puts = []
    return loopback_server(_Recorder), _Recorder.puts


def test_a_task_pushes_where_the_section_says(monkeypatch: pytest.MonkeyPatch, pushgateway: tuple[str, list[tuple[str, str]]]) -> None:
    from sfmlops_dag_utils.metrics import push

    url, puts = pushgateway
    monkeypatch.setenv(SECTION_ENV, url)
    assert push("sales_ingest_daily", "ingest_aws", "ingest", "failed", 12.5) is True
    assert len(puts) == 1
    path, body = puts[0]
    groups = {"job": "sfmlops_dag", "dag": "sales_ingest_daily", "task": "ingest_aws"}
    assert path == "/metrics" + "".join(f"/{k}@base64/{base64.urlsafe_b64encode(v.encode()).decode()}" for k, v in groups.items())
    assert 'sfmlops_dag_task_last_run_timestamp_seconds{dag="sales_ingest_daily",task="ingest_aws",kind="ingest",outcome="failed"} ' in body
    assert 'sfmlops_dag_task_seconds{dag="sales_ingest_daily",task="ingest_aws",kind="ingest"} 12.5\n' in body
    # off in the section: nothing is pushed, and the task is not failed by it
    monkeypatch.setenv(SECTION_ENV, "off")
    assert push("sales_ingest_daily", "ingest_aws", "ingest", "succeeded", 1.0) is False
    assert len(puts) == 1


def test_a_task_sdk_without_conf_falls_back_to_airflow_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the Task SDK has no ``airflow.sdk.conf`` (older than this venv's), airflow-core's parser, which reads
    the same file and environment, stands in."""
    import sys
    import types

    import airflow.configuration  # noqa: F401 - imported before airflow.sdk is replaced below

    from sfmlops_dag_utils.config import lookup

    monkeypatch.setitem(sys.modules, "airflow.sdk", types.ModuleType("airflow.sdk"))  # no conf, no Variable
    monkeypatch.setenv(SECTION_ENV, "http://section:9091")
    assert lookup("pushgateway_url") == "http://section:9091"
