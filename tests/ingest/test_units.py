"""Fast checks of the record rules, the command line and the packaging (no services needed)."""

from __future__ import annotations

import datetime as dt
import json
import zipfile

import pytest
from ingest_helpers import record

from app.config import Settings
from app.ingest import build_command, job_arguments, settings_env
from app.ingest.schema import validate_row
from app.ingest.sink import staging_table
from app.produce import encode_record, to_record

TODAY = dt.date(2015, 6, 13)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"sales": -1}, "negative sales"),
        ({"sales": "12"}, "wrong type for sales"),
        ({"open": True}, "wrong type for open"),
        ({"store": 0}, "out of range"),
        ({"schema_version": 2}, "unsupported schema_version"),
        ({"date": "2015-02-30"}, "invalid date"),
        ({"date": "2015-07-01", "day_of_week": 3}, "in the future"),
        ({"day_of_week": 1}, "does not match"),
        ({"promo": 2}, "promo must be 0 or 1"),
        ({"state_holiday": 0}, "wrong type for state_holiday"),
        ({"state_holiday": "x"}, "state_holiday must be one of"),
        ({"customers": None}, "missing field customers"),
    ],
)
def test_validate_row(changes: dict, reason: str | None) -> None:
    row = {**record(1, "2015-06-12"), **changes}
    result = validate_row(row, known_stores={1, 2}, today=TODAY, max_future_days=1)
    assert (result is None) if reason is None else (reason in result)


def test_unknown_store_and_tolerance() -> None:
    assert "unknown store 3" in validate_row(record(3, "2015-06-12"), known_stores={1}, today=TODAY)
    assert validate_row(record(1, "2015-06-14"), today=TODAY, max_future_days=1) is None
    assert "future" in validate_row(record(1, "2015-06-14"), today=TODAY, max_future_days=0)


def test_to_record_matches_schema() -> None:
    import pandas as pd

    row = {"store": 7, "date": pd.Timestamp("2015-06-12"), "day_of_week": 5, "sales": 10, "customers": 2,
           "open": 1, "promo": 0, "state_holiday": "0", "school_holiday": 1}
    rec = to_record(row)
    assert rec["schema_version"] == 1 and rec["date"] == "2015-06-12"
    assert validate_row(rec, today=TODAY) is None
    assert encode_record(rec) == json.dumps(rec, separators=(",", ":")).encode()
    assert json.loads(encode_record({**rec, "state_holiday": "a", "sales": 0})) == {**rec, "state_holiday": "a", "sales": 0}


def test_job_arguments_are_the_emr_arguments() -> None:
    s = Settings(kafka_topic="t", ingest_max_offsets_per_trigger=5)
    assert job_arguments(s) == ["--trigger", "available-now", "--topic", "t", "--starting-offsets", "earliest",
                                "--max-offsets-per-trigger", "5"]
    args = job_arguments(s, trigger="processing-time", interval="5 seconds", run_seconds=9)
    assert args[-4:] == ["--interval", "5 seconds", "--run-seconds", "9"]


def test_build_command_runs_the_job_file_with_cached_jars() -> None:
    s = Settings()
    argv, env = build_command(s, trigger="available-now")
    assert argv[0].endswith("spark-submit") and "spark_jobs/sales_stream.py" in " ".join(argv)
    cp = next(a for a in argv if a.startswith("spark.driver.extraClassPath="))
    assert "spark-sql-kafka-0-10_2.13-4.2.0.jar" in cp and "hadoop-aws-3.5.0.jar" in cp
    assert "postgresql-42.7.8.jar" in cp  # the executors' JDBC staging writer
    assert env["SFMLOPS_PG_PORT"] == str(s.pg_port)
    assert "password" not in " ".join(argv).lower()


def test_settings_env_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(kafka_topic="abc", pg_port=6543, ingest_checkpoint="/tmp/x")
    for key, value in settings_env(s).items():
        monkeypatch.setenv(key, value)
    again = Settings()
    assert (again.kafka_topic, again.pg_port, again.ingest_checkpoint) == ("abc", 6543, "/tmp/x")
    assert again.pg_password.get_secret_value() == s.pg_password.get_secret_value()


def test_staging_table_name_fits_postgres() -> None:
    s = Settings(table_ingest_staging="x" * 80)
    assert len(staging_table(s, "0b5e1c7e-9c1f-4d7e-8a47-3f1c2f6a9a11")) <= 63


def test_package_builds_zip_and_submit_line(tmp_path) -> None:
    import importlib.util

    from app.config import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("package", PROJECT_ROOT / "spark_jobs" / "package.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.build(tmp_path, "4.0.2", "s3://code/spark")
    names = zipfile.ZipFile(out["app_zip"]).namelist()
    assert "app/ingest/job.py" in names and "app/sql/010_ingest.sql" in names
    assert "--packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.0.2,org.postgresql:postgresql:42.7.8" in out["spark_submit"]
    # one definition of the PgJDBC coordinates: Maven gets the version from app/common/spark.py, the pom has none
    from app.common.spark import PGJDBC_VERSION
    from app.ingest import REQUIRED_JARS

    assert PGJDBC_VERSION == "42.7.8" and f"postgresql-{PGJDBC_VERSION}.jar" in REQUIRED_JARS
    assert "42.7.8" not in (PROJECT_ROOT / "spark_jobs" / "pom.xml").read_text()
    assert out["spark_submit"].split("s3://code/spark/sales_stream.py ")[1].startswith("--trigger available-now")


def test_checkpoint_lock_key_is_one_per_folder(tmp_path, monkeypatch) -> None:
    from app.ingest.sink import normalized_checkpoint

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cp").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "cp")
    spellings = ["cp", "cp/", str(tmp_path / "cp"), f"file://{tmp_path}/cp", str(tmp_path / "link")]
    assert len({normalized_checkpoint(x) for x in spellings}) == 1
    assert normalized_checkpoint("s3a://b/x/") == normalized_checkpoint("s3://b//x") == "s3://b/x"
    assert normalized_checkpoint("s3a://b/x") != normalized_checkpoint("s3a://b/y")


def test_batch_record_cap_follows_the_byte_cap() -> None:
    from app.ingest.job import batch_record_cap, staged_record_bytes

    s = Settings(ingest_dead_letter_payload_bytes=1024)
    per = staged_record_bytes(s)
    assert batch_record_cap(s.model_copy(update={"ingest_max_batch_bytes": per * 10 + per - 1}), 1_000) == 10
    assert batch_record_cap(s.model_copy(update={"ingest_max_batch_bytes": 1}), 1_000) == 1
    assert batch_record_cap(s, 1_000) == 1_000  # the record cap when it is the smaller


def test_failure_hint_names_the_unreachable_service() -> None:
    from app.ingest.job import failure_hint, unreachable

    s = Settings()
    assert unreachable("psycopg2.OperationalError: server closed the connection unexpectedly") == "PostgreSQL"
    assert unreachable("org.apache.kafka.common.errors.TimeoutException: Timed out") == "Kafka"
    assert unreachable("[CAST_OVERFLOW] ...") is None
    assert "run `sfmlops ingest` again" in failure_hint(s, "org.apache.kafka.common.errors.TimeoutException")
    assert s.kafka_bootstrap in failure_hint(s, "org.apache.kafka.common.errors.TimeoutException")
