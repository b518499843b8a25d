"""The streaming job's ``SFMLOPS_*`` settings reach each EMR Serverless job run: the DAG setting ``emr_job_environment``
(a JSON object; on MWAA Terraform's configuration option ``sfmlops.emr_job_environment``, which MWAA's components see
as ``AIRFLOW__SFMLOPS__EMR_JOB_ENVIRONMENT``, how these tests set it) becomes ``configurationOverrides`` of the run:
``spark-defaults`` properties ``spark.emr-serverless.driverEnv.<NAME>`` and ``spark.executorEnv.<NAME>`` for every
name. A bad value fails the task naming the setting. The last test runs the daily DAG against a stand-in EMR
Serverless endpoint (loopback) and reads the StartJobRun request the operator really sent."""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

SECTION_ENV = "AIRFLOW__SFMLOPS__EMR_JOB_ENVIRONMENT"
DAG_ENV = "SFMLOPS_DAG_EMR_JOB_ENVIRONMENT"
VARIABLE_ENV = "AIRFLOW_VAR_SFMLOPS_EMR_JOB_ENVIRONMENT"
AWS = {"SFMLOPS_DAG_BACKEND": "aws", "SFMLOPS_DAG_EMR_APPLICATION_ID": "00fabc", "SFMLOPS_DAG_CODE_BUCKET": "my-code",
       "SFMLOPS_DAG_EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/sfmlops-emr"}
# What Terraform puts there (terraform/main.tf local.emr_job_environment), values as on AWS: an empty endpoint means
# real AWS (the app's default is the emulator), a value with Jinja and a percent sign must pass unchanged.
JOB_ENV = {
    "SFMLOPS_PROFILE": "aws",
    "SFMLOPS_AWS_ENDPOINT_URL": "",
    "SFMLOPS_PG_HOST": "sfmlops-prod.abc.eu-west-1.rds.amazonaws.com",
    "SFMLOPS_PG_PORT": "5432",
    "SFMLOPS_PG_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sfmlops-prod/db/spark-AbCdEf",
    "SFMLOPS_KAFKA_BOOTSTRAP_SERVERS": "b-1.msk:9098,b-2.msk:9098",
    "SFMLOPS_KAFKA_AUTH": "aws-msk-iam",
    "SFMLOPS_PUSHGATEWAY_URL": "http://ip-10-40-10-12.eu-west-1.compute.internal:9091",
    "SFMLOPS_TABLE_SALES": "sales_{{ ds }}_100%",
}
SETTING = re.escape("SFMLOPS_DAG_EMR_JOB_ENVIRONMENT (or Variable sfmlops_emr_job_environment, or option emr_job_environment"
                    " of the [sfmlops] section)")


@pytest.fixture(autouse=True)
def _aws_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (SECTION_ENV, DAG_ENV, VARIABLE_ENV, "SFMLOPS_DAG_EMR_SPARK_SUBMIT_PARAMETERS", "SFMLOPS_DAG_PUSHGATEWAY_URL",
                 "AIRFLOW__SFMLOPS__PUSHGATEWAY_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)


def _properties(spec: dict[str, Any]) -> dict[str, str]:
    (configuration,) = spec["configuration_overrides"]["applicationConfiguration"]
    assert set(configuration) == {"classification", "properties"} and configuration["classification"] == "spark-defaults"
    return configuration["properties"]


def test_the_run_gives_every_setting_to_the_driver_and_the_executors(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import run_config

    monkeypatch.setenv(SECTION_ENV, json.dumps(JOB_ENV))
    spec = run_config().emr_job_spec()
    assert set(spec["configuration_overrides"]) == {"applicationConfiguration"}
    assert _properties(spec) == {
        **{f"spark.emr-serverless.driverEnv.{k}": v for k, v in JOB_ENV.items()},
        **{f"spark.executorEnv.{k}": v for k, v in JOB_ENV.items()},
    }
    # the rest of the spec is what it was
    assert spec["entry_point"] == "s3://my-code/spark/sales_stream.py" and spec["application_id"] == "00fabc"
    # an operator's value (environment, then Variable) wins over the deployment's section, as for every setting
    monkeypatch.setenv(VARIABLE_ENV, json.dumps({"SFMLOPS_PG_HOST": "variable"}))
    assert _properties(run_config().emr_job_spec())["spark.executorEnv.SFMLOPS_PG_HOST"] == "variable"
    monkeypatch.setenv(DAG_ENV, json.dumps({"SFMLOPS_PG_HOST": "environment"}))
    assert _properties(run_config().emr_job_spec()) == {"spark.emr-serverless.driverEnv.SFMLOPS_PG_HOST": "environment",
                                                        "spark.executorEnv.SFMLOPS_PG_HOST": "environment"}


def test_no_environment_gives_no_application_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import lookup, run_config

    assert lookup("emr_job_environment") == "{}"
    assert run_config().emr_job_spec()["configuration_overrides"] == {}
    monkeypatch.setenv(SECTION_ENV, " ")  # empty counts as unset
    assert run_config().emr_job_spec()["configuration_overrides"] == {}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("SFMLOPS_PG_HOST=db", "must be a JSON object"),
        ('["SFMLOPS_PG_HOST", "db"]', "must be a JSON object .* got list"),
        ('{"PG_HOST": "db"}', r"every name must be SFMLOPS_ .* \['PG_HOST'\]"),
        ('{"SFMLOPS_PG HOST": "db"}', r"every name must be SFMLOPS_"),
        ('{"SFMLOPS_PG_PORT": 5432}', r"every value must be a JSON string, not for \['SFMLOPS_PG_PORT'\]"),
        ('{"SFMLOPS_PG_HOST": null}', r"every value must be a JSON string"),
        ('{"SFMLOPS_PG_PASSWORD": "hunter2"}', r"must not carry secrets \(\['SFMLOPS_PG_PASSWORD'\]\)"),
        ('{"SFMLOPS_API_KEY_PEPPER": "x"}', r"must not carry secrets"),
        (json.dumps({f"SFMLOPS_X{i}": "v" for i in range(51)}), "holds 51 names; EMR Serverless takes at most 50"),
        (json.dumps({"SFMLOPS_PG_HOST": "h" * 1025}), r"longer than 1024 characters .*\['SFMLOPS_PG_HOST'\]"),
    ],
)
def test_a_bad_value_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch, value: str, says: str) -> None:
    from sfmlops_dag_utils.config import run_config

    monkeypatch.setenv(SECTION_ENV, value)
    with pytest.raises(ValueError, match=f"^{SETTING}.*{says}"):
        run_config()  # at run time, in every task that resolves the configuration (either backend)


def test_secret_arns_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import run_config

    monkeypatch.setenv(DAG_ENV, json.dumps({"SFMLOPS_PG_SECRET_ARN": JOB_ENV["SFMLOPS_PG_SECRET_ARN"]}))
    assert _properties(run_config().emr_job_spec())["spark.executorEnv.SFMLOPS_PG_SECRET_ARN"] == JOB_ENV["SFMLOPS_PG_SECRET_ARN"]


class _EmrServerless(BaseHTTPRequestHandler):
    """A stand-in for the EMR Serverless API: the application is STARTED; StartJobRun is recorded and refused (400),
    so the task ends at once, with the request the operator sent."""

    start_job_runs: list[dict[str, Any]] = []

    def _answer(self, status: int, body: dict[str, Any], error: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server's handler name: GetApplication
        self._answer(200, {"application": {"applicationId": "00fabc", "state": "STARTED", "type": "SPARK"}})

    def do_POST(self) -> None:  # StartJobRun
        type(self).start_job_runs.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self._answer(400, {"message": "stand-in: not started"}, "ValidationException")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def emr_serverless(loopback_server) -> tuple[str, list[dict[str, Any]]]:
    """A stand-in EMR Serverless endpoint that records every StartJobRun request."""
    _EmrServerless.start_job_runs = []
    return loopback_server(_EmrServerless), _EmrServerless.start_job_runs


def test_the_operator_sends_the_environment_with_start_job_run(
    airflow_db, dagbag, emr_serverless: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = emr_serverless
    monkeypatch.setenv(SECTION_ENV, json.dumps(JOB_ENV))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": "test", "password": "test",
                                                               "extra": {"region_name": "eu-west-1", "endpoint_url": url}}))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    dag = dagbag.dags["sales_ingest_daily"]
    monkeypatch.setattr(dag.get_task("ingest_aws"), "retries", 0)  # the DAG's retries, minutes apart, are not under test
    states = {ti.task_id: ti.state for ti in dag.test().get_task_instances()}
    assert states["emr_job_spec"] == "success" and states["ingest_aws"] == "failed", states

    (request,) = requests
    assert request["executionRoleArn"] == AWS["SFMLOPS_DAG_EMR_EXECUTION_ROLE_ARN"]
    assert request["jobDriver"]["sparkSubmit"]["entryPoint"] == "s3://my-code/spark/sales_stream.py"
    assert request["configurationOverrides"] == {"applicationConfiguration": [{"classification": "spark-defaults", "properties": {
        **{f"spark.emr-serverless.driverEnv.{k}": v for k, v in JOB_ENV.items()},
        **{f"spark.executorEnv.{k}": v for k, v in JOB_ENV.items()},
    }}]}  # a dict, not its rendering as a string; values unrendered (no Jinja in them)

