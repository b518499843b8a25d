"""The streaming job's JVM packages and Kafka connection options (app/common/spark.py, vendored into the DAG bundle)."""

from __future__ import annotations

import pytest

from app.common import spark
from app.config import Settings
from app.ingest.job import kafka_source_options


def test_plaintext_adds_no_option_and_msk_iam_is_sasl_ssl_with_the_iam_login_module() -> None:
    assert spark.kafka_auth_options("none") == {}
    iam = spark.kafka_auth_options("aws-msk-iam")
    assert iam["kafka.security.protocol"] == "SASL_SSL" and iam["kafka.sasl.mechanism"] == "AWS_MSK_IAM"
    assert iam["kafka.sasl.jaas.config"] == "software.amazon.msk.auth.iam.IAMLoginModule required;"
    assert iam["kafka.sasl.client.callback.handler.class"] == "software.amazon.msk.auth.iam.IAMClientCallbackHandler"
    with pytest.raises(ValueError, match="unknown Kafka authentication 'kerberos'"):
        spark.kafka_auth_options("kerberos")


def test_the_emr_packages_carry_the_iam_login_module() -> None:
    packages = spark.spark_packages().split(",")
    assert spark.MSK_IAM_AUTH_PACKAGE in packages and spark.MSK_IAM_AUTH_PACKAGE.startswith("software.amazon.msk:aws-msk-iam-auth:")
    assert len(packages) == 3


def test_the_job_uses_the_settings_auth_and_a_kafka_option_wins() -> None:
    on_aws = Settings(kafka_auth="aws-msk-iam")
    options = kafka_source_options(on_aws, ["kafka.security.protocol=SSL", "kafka.client.id=x=y"])
    assert options["kafka.security.protocol"] == "SSL" and options["kafka.sasl.mechanism"] == "AWS_MSK_IAM"
    assert options["kafka.client.id"] == "x=y"
    assert kafka_source_options(Settings(kafka_auth="none"), []) == {}
