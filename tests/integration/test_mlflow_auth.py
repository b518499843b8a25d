"""MLflow basic auth (issue 13, item 15): every MLflow client of the project sends the configured credentials.

Against a real tracking server with MLflow's basic-auth app (``mlflow server --app-name basic-auth``, sqlite
stores and local artifacts in a temporary folder): 401 without the right ``Authorization: Basic`` header, MLflow's
answers with it. The project's user is an ordinary (non-admin) user that may read what the admin created: the
registered model with its ``champion`` alias, the training run's per-store RMSPE artifact, the model's files.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow.pyfunc
import pandas as pd
import pytest

from app.config import Settings
from app.stack.base import free_port

USER, PASSWORD = "sfmlops-api", "Mf' 9\\x \"q\":z"
ADMIN = "admin"
MODEL = "sfmlops-auth-test"
STARTUP_S = 120.0


class _Constant(mlflow.pyfunc.PythonModel):
    """The smallest pyfunc model: what the on-demand route loads."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[float]:
        return [1.0] * len(model_input)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server's own process group (``mlflow server`` runs uvicorn as its child), wait, then kill
    what is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child, should it outlive its parent
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


def _seed(url: str, admin_password: str, root: Path) -> dict[str, str]:
    """As the admin: the project's user, an experiment with a run that logged the per-store RMSPE artifact
    and a pyfunc model, registered as ``MODEL`` version 1 with the ``champion`` alias."""
    from mlflow import MlflowClient

    resp = httpx.post(f"{url}/api/2.0/mlflow/users/create", auth=(ADMIN, admin_password),
                      json={"username": USER, "password": PASSWORD}, timeout=30)
    assert resp.status_code == 200, resp.text
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        mp.setenv("MLFLOW_TRACKING_URI", url)
        mlflow.set_tracking_uri(url)
        try:
            client = MlflowClient(url)
            experiment_id = client.create_experiment("sfmlops-auth-test")
            (root / "store_rmspe.csv").write_text("store,rmspe\n1,0.125\n2,0.25\n")
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_artifact(str(root / "store_rmspe.csv"), artifact_path="backtest")
                mlflow.pyfunc.log_model(name="model", python_model=_Constant(), pip_requirements=[],
                                        registered_model_name=MODEL)
            version = client.search_model_versions(f"name='{MODEL}'")[0].version
            client.set_registered_model_alias(MODEL, "champion", version)
        finally:
            mlflow.set_tracking_uri(None)
    return {"run_id": run.info.run_id, "version": str(version)}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """A private MLflow tracking server with basic auth on a free loopback port; yields (url, seeded ids)."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    admin_password = "admin-" + secrets.token_urlsafe(16)
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {admin_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "SFMLOPS_"))}
    env.update({
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no huey consumers (GenAI jobs)
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    })
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", (root / "artifacts").as_uri()],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (root / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"MLflow basic-auth server did not come up (exit {proc.poll()}):\n{tail}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url, _seed(url, admin_password, root)
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def clean_mlflow_env(monkeypatch) -> Iterator[None]:
    """No MLflow client settings from the environment; whatever the code under test sets is undone after."""
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN",
                 "SFMLOPS_MLFLOW_USERNAME", "SFMLOPS_MLFLOW_PASSWORD", "SFMLOPS_MLFLOW_AUTH_SECRET_ARN"):
        monkeypatch.setenv(name, "")  # recorded, so that the teardown restores the original (or its absence)
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    yield
    mlflow.set_tracking_uri(None)


def _settings(url: str, **values) -> Settings:
    return Settings(_env_file=None, mlflow_tracking_uri=url, model_name=MODEL, **values)


def _authed(url: str) -> Settings:
    return _settings(url, mlflow_username=USER, mlflow_password=PASSWORD)


def test_the_server_demands_the_credentials(mlflow_server) -> None:
    url, _ = mlflow_server
    path = f"{url}/api/2.0/mlflow/registered-models/get"
    assert httpx.get(path, params={"name": MODEL}, timeout=10).status_code == 401
    assert httpx.get(path, params={"name": MODEL}, auth=(USER, PASSWORD + "x"), timeout=10).status_code == 401
    assert httpx.get(path, params={"name": MODEL}, auth=(USER, PASSWORD), timeout=10).status_code == 200


def test_api_registry_client_sends_the_credentials(mlflow_server) -> None:
    from app.api.errors import ApiError
    from app.api.mlflow_rest import MlflowRest

    url, seeded = mlflow_server
    client = MlflowRest(_authed(url))
    try:
        model = client.registered_model(MODEL)
        assert model["name"] == MODEL
        assert {a["alias"]: a["version"] for a in model["aliases"]} == {"champion": seeded["version"]}
        assert [v["version"] for v in client.versions(MODEL)] == [seeded["version"]]
    finally:
        client.close()
    # without credentials the server refuses, and the API reports MLflow's error instead of data
    anonymous = MlflowRest(_settings(url))
    try:
        with pytest.raises(ApiError) as err:
            anonymous.registered_model(MODEL)
    finally:
        anonymous.close()
    assert err.value.status == 502 and "401" in str(err.value.internal)


def test_stores_ui_artifact_calls_send_the_credentials(mlflow_server) -> None:
    from app.api.errors import ApiError
    from app.api.routes.stores_ui import _store_rmspe

    url, seeded = mlflow_server
    assert _store_rmspe(_authed(url), seeded["run_id"]) == {1: 0.125, 2: 0.25}
    with pytest.raises(ApiError):  # refused: the listing answers 401
        _store_rmspe(_settings(url), seeded["run_id"])


def test_on_demand_model_loading_sends_the_credentials(mlflow_server, clean_mlflow_env) -> None:
    from app.api.routes import forecasts

    url, seeded = mlflow_server
    settings = _authed(url)
    version = forecasts._champion_version(settings)
    assert version == seeded["version"]
    model = forecasts._load_champion(settings, version)
    assert model.metadata.run_id == seeded["run_id"]
    assert list(model.predict(pd.DataFrame({"x": [1, 2]}))) == [1.0, 1.0]


def test_mlflow_library_sends_the_credentials_after_configure_mlflow(mlflow_server, clean_mlflow_env) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from app.forecasting.tracking import configure_mlflow

    url, seeded = mlflow_server
    configure_mlflow(_settings(url))
    with pytest.raises(MlflowException, match="401|authenticated"):
        MlflowClient().search_registered_models()
    configure_mlflow(_authed(url))
    assert [m.name for m in MlflowClient().search_registered_models()] == [MODEL]
    assert MlflowClient().get_run(seeded["run_id"]).info.run_id == seeded["run_id"]


def test_ray_job_environment_carries_the_credentials(mlflow_server, clean_mlflow_env, monkeypatch) -> None:
    """A local Ray job runs in the head's environment plus the job's runtime_env (no password there): with
    both, what the job does (settings from SFMLOPS_*, ``configure_mlflow``, the mlflow library) is let in."""
    from mlflow import MlflowClient

    from app.api.jobs_service import job_env
    from app.forecasting.tracking import configure_mlflow
    from app.stack.ray import RayHead

    url, _ = mlflow_server
    api = _authed(url)
    runtime_env = job_env(api)
    assert PASSWORD not in json.dumps(runtime_env)
    for name, value in {**RayHead(api).environment(), **runtime_env}.items():
        monkeypatch.setenv(name, value)
    configure_mlflow(Settings(_env_file=None))
    assert [m.name for m in MlflowClient().search_registered_models()] == [MODEL]


@pytest.mark.integration
def test_credentials_come_from_secrets_manager_and_reach_ray_jobs(stack, monkeypatch) -> None:
    """On AWS: the API Lambda and Ray jobs read the credentials from the secret named by
    SFMLOPS_MLFLOW_AUTH_SECRET_ARN; the job is given the ARN (never the password) and resolves it itself."""
    import uuid

    from app.api.jobs_service import job_env
    from app.stack.ray import RayHead

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.aws_secret_access_key.get_secret_value())
    client = stack.boto3_client("secretsmanager")
    arn = client.create_secret(Name=f"sfmlops-test-mlflow-{uuid.uuid4().hex[:8]}",
                               SecretString=json.dumps({"username": USER, "password": PASSWORD}))["ARN"]
    try:
        s = Settings(_env_file=None, profile="aws", aws_endpoint_url=stack.aws_endpoint_url,
                     pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c", mlflow_auth_secret_arn=arn)
        assert s.mlflow_auth() == (USER, PASSWORD)
        env = job_env(s)
        assert env["SFMLOPS_MLFLOW_AUTH_SECRET_ARN"] == arn
        assert PASSWORD not in json.dumps(env)
        # what the job process does with that environment (its own role reads the secret)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        job = Settings(_env_file=None, pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c")
        assert job.mlflow_env()["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
        # with per-component secrets (Terraform sets the JOB_* ARNs), the job gets its own, not the API's
        own = s.model_copy(update={"job_pg_secret_arn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:db/ray",
                                   "job_mlflow_auth_secret_arn": arn + "-ray", "pg_secret_arn": "arn:db/api"})
        assert job_env(own)["SFMLOPS_PG_SECRET_ARN"] == own.job_pg_secret_arn
        assert job_env(own)["SFMLOPS_MLFLOW_AUTH_SECRET_ARN"] == arn + "-ray"
        # the local Ray head passes configured credentials to its jobs' environment
        local = stack.model_copy(update={"mlflow_username": USER, "mlflow_password": s.mlflow_password})
        assert RayHead(local).environment()["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
    finally:
        client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
