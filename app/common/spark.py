"""The JVM packages of the streaming job: the one definition of their Maven coordinates.

Used by the local path (``app.ingest.resolve_jars`` passes :data:`PGJDBC_VERSION` to Maven as
``-Dpgjdbc.version`` for ``spark_jobs/pom.xml``), by ``spark_jobs/package.py`` (the EMR ``spark-submit`` line)
and by the daily DAG's EMR Serverless job (``sparkSubmitParameters``; this file is vendored into the DAG
bundle by ``make dags-vendor``). Also the parser of the Kafka source's offsets in query progress (the driver's
metrics and its consumer-group commits). Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

#: PgJDBC, the executors' staging writer and the driver's commits.
PGJDBC_VERSION = "42.7.8"
PGJDBC_PACKAGE = f"org.postgresql:postgresql:{PGJDBC_VERSION}"
#: The EMR release of the EMR Serverless application (Terraform's spark module defaults to it; a test keeps the two
#: equal) and its Spark, whose Kafka source the job runs with there; locally pyspark's own (``pom.xml``).
EMR_RELEASE_LABEL = "emr-spark-8.0.0"
EMR_SPARK_VERSION = "4.0.2"
#: AWS's SASL mechanism ``AWS_MSK_IAM`` for the JVM's Kafka clients (the Kafka source's consumers, the driver's
#: admin client), on EMR next to the Kafka source: MSK's IAM listener, signed with the job role's credentials.
MSK_IAM_AUTH_PACKAGE = "software.amazon.msk:aws-msk-iam-auth:2.3.5"
#: Scala binary version of Spark 4.
SCALA_BINARY_VERSION = "2.13"


def kafka_package(spark_version: str = EMR_SPARK_VERSION) -> str:
    """Spark's Kafka source for ``spark_version``."""
    return f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY_VERSION}:{spark_version}"


def spark_packages(spark_version: str = EMR_SPARK_VERSION) -> str:
    """The ``--packages`` value of an EMR run: the Kafka source, PgJDBC and MSK's IAM authentication."""
    return f"{kafka_package(spark_version)},{PGJDBC_PACKAGE},{MSK_IAM_AUTH_PACKAGE}"


def kafka_auth_options(auth: str) -> dict[str, str]:
    """The Kafka source's ``kafka.*`` options for ``Settings.kafka_auth`` (what the kafka-python clients get from
    ``app.kafka_client``, for the JVM's clients): ``none`` adds nothing; ``aws-msk-iam`` is ``SASL_SSL`` with
    ``AWS_MSK_IAM`` (:data:`MSK_IAM_AUTH_PACKAGE`'s login module and callback handler, the default credential
    chain: the EMR job role)."""
    if auth == "none":
        return {}
    if auth == "aws-msk-iam":
        return {
            "kafka.security.protocol": "SASL_SSL",
            "kafka.sasl.mechanism": "AWS_MSK_IAM",
            "kafka.sasl.jaas.config": "software.amazon.msk.auth.iam.IAMLoginModule required;",
            "kafka.sasl.client.callback.handler.class": "software.amazon.msk.auth.iam.IAMClientCallbackHandler",
        }
    raise ValueError(f"unknown Kafka authentication {auth!r} (none or aws-msk-iam)")


def emr_submit_parameters(code_uri: str, spark_version: str = EMR_SPARK_VERSION) -> str:
    """``sparkSubmitParameters`` of the EMR Serverless job run whose job file and ``app.zip`` are under ``code_uri``."""
    return f"--packages {spark_packages(spark_version)} --py-files {code_uri.rstrip('/')}/app.zip"


def kafka_offsets(value: object) -> dict[str, dict[str, int]]:
    """The Kafka source's offsets of a query progress (``startOffset`` / ``endOffset`` / ``latestOffset``: the JSON
    text ``{"topic": {"partition": offset}}``, or that JSON already parsed, as pyspark versions differ) as
    ``{topic: {partition: offset}}``; empty for null or anything unparsable."""
    try:
        data: Any = json.loads(value) if isinstance(value, str) else value
        return {str(t): {str(p): int(o) for p, o in parts.items()} for t, parts in (data or {}).items()}
    except (ValueError, TypeError, AttributeError):
        return {}
