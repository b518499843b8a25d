"""MLflow basic auth (issue 13, item 15): every MLflow client of the project sends the configured credentials.

MLflow's own basic-auth app needs Flask-WTF, which is not part of the locked environment, so the server here
is a stand-in with the same contract on the wire: 401 without the right ``Authorization: Basic`` header,
MLflow's REST answers with it. Everything on the client side is real (httpx clients of the API, the
``mlflow`` library as training and the batch forecast use it, a Ray job's environment).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.config import Settings

USER, PASSWORD = "sfmlops-api", "Mf' 9\\x \"q\":z"


@pytest.fixture
def auth_server():  # noqa: ANN201
    """An HTTP server that demands MLflow basic auth and records what it was sent."""
    seen: list[tuple[str, str | None]] = []
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            header = self.headers.get("Authorization")
            seen.append((self.path.split("?")[0], header))
            if header != expected:
                body, code = b"You are not authenticated.", 401
            elif self.path.startswith("/api/2.0/mlflow/registered-models/get"):
                body, code = json.dumps({"registered_model": {"name": "m", "aliases": []}}).encode(), 200
            elif self.path.startswith("/api/2.0/mlflow/registered-models/search"):
                body, code = json.dumps({"registered_models": [{"name": "m"}]}).encode(), 200
            else:
                body, code = b"{}", 200
            self.send_response(code)
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen, expected
    server.shutdown()
    server.server_close()


def _settings(url: str, **values) -> Settings:  # noqa: ANN003
    return Settings(_env_file=None, mlflow_tracking_uri=url, **values)


def test_api_registry_client_sends_the_credentials(auth_server) -> None:  # noqa: ANN001
    from app.api.errors import ApiError
    from app.api.mlflow_rest import MlflowRest

    url, seen, expected = auth_server
    client = MlflowRest(_settings(url, mlflow_username=USER, mlflow_password=PASSWORD))
    try:
        assert client.registered_model("m") == {"name": "m", "aliases": []}
    finally:
        client.close()
    assert seen[-1] == ("/api/2.0/mlflow/registered-models/get", expected)
    # without credentials the server refuses, and the API reports MLflow's error instead of data
    anonymous = MlflowRest(_settings(url))
    try:
        with pytest.raises(ApiError):
            anonymous.registered_model("m")
    finally:
        anonymous.close()
    assert seen[-1][1] is None


def test_mlflow_library_sends_the_credentials_after_configure_mlflow(auth_server, monkeypatch) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    from app.forecasting.tracking import configure_mlflow

    url, seen, expected = auth_server
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    configure_mlflow(_settings(url, mlflow_username=USER, mlflow_password=PASSWORD))
    assert [m.name for m in MlflowClient().search_registered_models()] == ["m"]
    assert seen[-1] == ("/api/2.0/mlflow/registered-models/search", expected)


@pytest.mark.integration
def test_credentials_come_from_secrets_manager_and_reach_ray_jobs(stack, monkeypatch) -> None:  # noqa: ANN001
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
