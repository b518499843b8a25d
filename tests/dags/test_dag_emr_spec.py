"""The daily DAG's EMR Serverless job run (``emr_job_spec``): its sparkSubmitParameters carry the packages of
``make spark-package``'s spark-submit line (Kafka source and PgJDBC: one definition, ``app/common/spark.py``)."""

from __future__ import annotations

import importlib.util
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
    assert params == ["--packages", "org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.2,org.postgresql:postgresql:42.7.8",
                      "--py-files", "s3://my-code/spark/app.zip"]
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
