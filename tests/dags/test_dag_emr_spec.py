"""The daily DAG's EMR Serverless job run (``emr_job_spec``): its sparkSubmitParameters carry the packages of
``make spark-package``'s spark-submit line (Kafka source and PgJDBC: one definition, ``app/common/spark.py``), and
its configuration overrides the job's settings (``emr_job_environment``), which the job's ``Settings`` read."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
from pathlib import Path

import pytest

from sfmlops_dag_utils.config import run_config

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("airflow") is not None, reason="main suite only (imports app)")

AWS = {"SFMLOPS_DAG_BACKEND": "aws", "SFMLOPS_DAG_EMR_APPLICATION_ID": "00fabc", "SFMLOPS_DAG_CODE_BUCKET": "my-code",
       "SFMLOPS_DAG_EMR_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/sfmlops-emr"}


def _package_line(tmp_path: Path) -> list[str]:
    spec = importlib.util.spec_from_file_location("package", ROOT / "spark_jobs" / "package.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return shlex.split(mod.build(tmp_path, "4.0.2", "s3://my-code/spark")["spark_submit"])


def test_emr_submit_parameters_have_the_packages_of_the_spark_submit_line(monkeypatch, tmp_path: Path) -> None:
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SFMLOPS_DAG_EMR_SPARK_SUBMIT_PARAMETERS", raising=False)
    spec = run_config().emr_job_spec()
    assert spec["entry_point"] == "s3://my-code/spark/sales_stream.py"
    params = shlex.split(spec["spark_submit_parameters"])
    assert params == ["--packages", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.2,org.postgresql:postgresql:42.7.8,"
                      "software.amazon.msk:aws-msk-iam-auth:2.3.5", "--py-files", "s3://my-code/spark/app.zip"]
    line = _package_line(tmp_path)
    assert line[line.index("--packages") + 1] == params[1] and line[line.index("--py-files") + 1] == params[3]

    monkeypatch.setenv("SFMLOPS_DAG_EMR_SPARK_SUBMIT_PARAMETERS", "--py-files s3://x/app.zip")  # an explicit value wins
    assert run_config().emr_job_spec()["spark_submit_parameters"] == "--py-files s3://x/app.zip"


def test_emr_spec_names_the_missing_settings(monkeypatch) -> None:
    monkeypatch.setenv("SFMLOPS_DAG_BACKEND", "aws")
    monkeypatch.delenv("SFMLOPS_DAG_EMR_APPLICATION_ID", raising=False)
    monkeypatch.setenv("SFMLOPS_DAG_EMR_EXECUTION_ROLE_ARN", AWS["SFMLOPS_DAG_EMR_EXECUTION_ROLE_ARN"])
    with pytest.raises(ValueError, match=r"^backend=aws needs SFMLOPS_DAG_EMR_APPLICATION_ID \(or Variable sfmlops_emr_application_id\)"):
        run_config().emr_job_spec()


def test_the_job_environment_becomes_the_jobs_settings(monkeypatch) -> None:
    """What ``emr_job_environment`` puts into the run's ``spark-defaults`` (driver and executor environment) is what
    the job's ``Settings`` read: an empty endpoint is real AWS (the app's default would be the emulator)."""
    from app.config import Settings

    env = {"SFMLOPS_PROFILE": "aws", "SFMLOPS_AWS_ENDPOINT_URL": "", "SFMLOPS_AWS_REGION": "eu-west-1",
           "SFMLOPS_PG_HOST": "db.internal", "SFMLOPS_PG_PORT": "6432", "SFMLOPS_BUCKET_CHECKPOINTS": "t-checkpoints",
           "SFMLOPS_KAFKA_BOOTSTRAP_SERVERS": "b-1.msk:9098", "SFMLOPS_KAFKA_AUTH": "aws-msk-iam", "SFMLOPS_PUSHGATEWAY_URL": "off"}
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SFMLOPS_DAG_EMR_JOB_ENVIRONMENT", json.dumps(env))
    (configuration,) = run_config().emr_job_spec()["configuration_overrides"]["applicationConfiguration"]
    assert configuration["classification"] == "spark-defaults"
    props = configuration["properties"]
    driver = {k.removeprefix("spark.emr-serverless.driverEnv."): v for k, v in props.items() if k.startswith("spark.emr-serverless.driverEnv.")}
    executors = {k.removeprefix("spark.executorEnv."): v for k, v in props.items() if k.startswith("spark.executorEnv.")}
    assert driver == executors == env and len(props) == 2 * len(env)

    for name in [n for n in os.environ if n.startswith("SFMLOPS_")]:  # the job's process: only what the run gives it
        monkeypatch.delenv(name)
    for name, value in driver.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SFMLOPS_PG_PASSWORD", "Xk2-long-real-secret")  # stands in for the spark role's secret (its ARN)
    s = Settings(_env_file=None)
    assert (s.profile, s.aws_endpoint_url, s.aws_region, s.pg_host, s.pg_port) == ("aws", None, "eu-west-1", "db.internal", 6432)
    assert (s.kafka_bootstrap, s.kafka_auth, s.pushgateway_base_url, s.bucket_checkpoints) == ("b-1.msk:9098", "aws-msk-iam", None, "t-checkpoints")
