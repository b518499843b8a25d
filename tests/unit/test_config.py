"""Settings: local defaults work, placeholders are refused outside local, nothing connects at import."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys

import pytest
from pydantic import SecretStr, ValidationError

from app.config import PROJECT_ROOT, Settings


def test_local_profile_has_working_defaults(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("SFMLOPS_"):
            monkeypatch.delenv(key)
    s = Settings(_env_file=None)
    assert s.profile == "local"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.mlflow_uri == "http://127.0.0.1:5000"
    assert s.ray_jobs_url == "http://127.0.0.1:8265"
    assert "port=5432" in s.pg_dsn() and "dbname=sfmlops" in s.pg_dsn()


@pytest.mark.parametrize("secret", ["pg_password", "aws_secret_access_key"])
def test_placeholder_secret_refused_outside_local_naming_the_setting(monkeypatch, secret):
    good = {"pg_password": "Xk2-long-real-secret", "api_key_pepper": "pepper-9f8e7d6c",
            "aws_access_key_id": "AKIAREALKEYID", "aws_secret_access_key": "AKreal/secret"}
    good[secret] = "changeme"
    with pytest.raises(ValidationError) as exc:
        Settings(_env_file=None, profile="aws", **good)
    assert f"SFMLOPS_{secret.upper()}" in str(exc.value)


def test_placeholder_pepper_refused_where_keys_are_hashed_not_in_jobs():
    """A Ray job, the exporter or a DAG task runs with the aws profile and no pepper (it never hashes keys); the API
    refuses to start without a real one, naming the setting."""
    from app.api.main import create_app

    job = Settings(_env_file=None, profile="aws", pg_password="Xk2-long-real-secret", api_key_pepper="changeme")
    with pytest.raises(ValueError, match="SFMLOPS_API_KEY_PEPPER must be set to a real secret"):
        job.require_api_key_pepper()
    with pytest.raises(ValueError, match="SFMLOPS_API_KEY_PEPPER must be set to a real secret"):
        create_app(job)
    ok = job.model_copy(update={"api_key_pepper": SecretStr("pepper-9f8e7d6c")})
    assert ok.require_api_key_pepper().get_secret_value() == "pepper-9f8e7d6c"
    assert Settings(_env_file=None).require_api_key_pepper()  # local: the development pepper


def test_real_secrets_accepted_outside_local():
    s = Settings(
        _env_file=None, profile="aws", pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c",
        aws_secret_access_key="AKreal/secret", aws_endpoint_url="",
    )
    assert s.aws_endpoint_url is None
    assert "AWS_ENDPOINT_URL" not in s.aws_env()


def test_outside_local_without_a_key_pair_aws_sdks_use_the_default_chain():
    """On AWS the Lambda/EMR/Ray role provides credentials: no key pair is configured or passed on."""
    s = Settings(_env_file=None, profile="aws", pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c",
                 aws_endpoint_url="")
    assert not s.explicit_aws_keys
    assert "AWS_ACCESS_KEY_ID" not in s.aws_env() and "AWS_SECRET_ACCESS_KEY" not in s.aws_env()
    assert Settings(_env_file=None).explicit_aws_keys  # the local emulator always gets the configured pair


def test_env_variables_override_defaults(monkeypatch):
    monkeypatch.setenv("SFMLOPS_KAFKA_PORT", "19092")
    monkeypatch.setenv("SFMLOPS_PG_PORT", "15432")
    s = Settings(_env_file=None)
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert "port=15432" in s.pg_dsn()


def test_bad_values_name_the_setting(monkeypatch):
    monkeypatch.setenv("SFMLOPS_KAFKA_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="kafka_partitions"):
        Settings(_env_file=None)
    monkeypatch.delenv("SFMLOPS_KAFKA_PARTITIONS")
    with pytest.raises(ValidationError, match="table_sales"):
        Settings(_env_file=None, table_sales="sales; DROP TABLE x")
    monkeypatch.setenv("SFMLOPS_KAFKA_AUTH", "iam")  # only none | aws-msk-iam (app/kafka_client.py)
    with pytest.raises(ValidationError, match="kafka_auth"):
        Settings(_env_file=None)


def test_nothing_connects_or_writes_at_import(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("network access at import/instantiation time")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("SFMLOPS_STATE_DIR", str(tmp_path / "state"))
    import app.config

    importlib.reload(app.config)
    s = app.config.Settings(_env_file=None)
    assert s.state_dir == tmp_path / "state"
    assert not (tmp_path / "state").exists()


def test_cli_fails_at_startup_naming_the_bad_setting():
    env = {"PATH": "/usr/bin:/bin", "SFMLOPS_PROFILE": "aws", "SFMLOPS_PG_PASSWORD": "changeme", "HOME": "/tmp"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "status"], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=60
    )
    assert result.returncode == 2
    assert "SFMLOPS_PG_PASSWORD" in result.stderr


def test_env_example_documents_every_setting():
    from app.config import render_env_example

    text = (PROJECT_ROOT / ".env.example").read_text()
    missing = [n for n in Settings.model_fields if f"SFMLOPS_{n.upper()}=" not in text]
    assert missing == [], f".env.example lacks {missing}: run `make env-example`"
    assert text == render_env_example(), "run `make env-example`"
    assert all(f.description for f in Settings.model_fields.values())


@pytest.mark.parametrize("password", ["p a'ss\\w\"rd", "x=1 host=evil", "", "100%@:/?#[]", "trailing\\"])
def test_connection_parameters_carry_any_password_unchanged(password):
    """RDS-generated passwords contain spaces, quotes and backslashes: the DSN quotes them, the URL encodes
    them, and both decode to the same parameters (nothing can inject another libpq option)."""
    from psycopg2.extensions import parse_dsn
    from sqlalchemy.engine import make_url

    s = Settings(_env_file=None, pg_password=password, pg_user="app user")
    params = s.pg_params("mlflow")
    assert params == {"host": "127.0.0.1", "port": 5432, "dbname": "mlflow", "user": "app user", "password": password}
    assert parse_dsn(s.pg_dsn("mlflow")) == {k: str(v) for k, v in params.items()}
    assert parse_dsn(s.pg_dsn(connect_timeout=5))["connect_timeout"] == "5"
    url = make_url(s.pg_url("mlflow", driver="postgresql+psycopg2"))
    assert (url.username, url.password, url.host, url.port, url.database) == ("app user", password, "127.0.0.1", 5432, "mlflow")


def test_mlflow_credentials_reach_http_clients_and_the_mlflow_library():
    s = Settings(_env_file=None)
    assert s.mlflow_auth() is None and s.mlflow_env() == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    s = Settings(_env_file=None, mlflow_username="sfmlops", mlflow_password="Mf' 9\\x")
    assert s.mlflow_auth() == ("sfmlops", "Mf' 9\\x")
    assert s.mlflow_env()["MLFLOW_TRACKING_USERNAME"] == "sfmlops"
    assert s.mlflow_env()["MLFLOW_TRACKING_PASSWORD"] == "Mf' 9\\x"
    with pytest.raises(ValidationError, match="SFMLOPS_MLFLOW_PASSWORD must be set to a real secret"):
        Settings(_env_file=None, profile="aws", pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c",
                 mlflow_username="sfmlops", mlflow_password="changeme")
