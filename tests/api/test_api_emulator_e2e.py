"""End to end on the emulator: the Lambda zip behind an API Gateway HTTP API (``$default`` stage) on
MiniStack, called over plain HTTP, submits a real Ray job to the local head and sees it finish.

The API is wired here with boto3 the way ``terraform/modules/api`` wires it (AWS_PROXY integration, payload
2.0, ``$default`` route and auto-deployed ``$default`` stage); the Terraform issue applies the same thing
with ``terraform apply``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from isolated_support import table_env

from app.common.jobs import FINISHED_STATES
from app.config import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def lambda_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lambda") / "lambda.zip"
    work = out.parent / "pkg"
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "lambda" / "build.py"), "--out", str(out), "--work", str(work)],
        capture_output=True, text=True, cwd=PROJECT_ROOT,
    )
    assert out.is_file(), proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["zipped_mb"] < 50 and figures["unzipped_mb"] < 250
    return out


@pytest.fixture(scope="module")
def gateway(api_settings: Settings, lambda_zip: Path) -> str:
    """Deploy the zip as a Lambda behind an HTTP API; yields the API's base URL (``$default`` stage)."""
    s = api_settings
    lam, gw, iam = s.boto3_client("lambda"), s.boto3_client("apigatewayv2"), s.boto3_client("iam")
    name = f"sfmlops-api-test-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    env = {
        "SFMLOPS_PG_HOST": s.pg_host,
        "SFMLOPS_PG_PORT": str(s.pg_port),
        "SFMLOPS_PG_DATABASE": s.pg_database,
        "SFMLOPS_PG_USER": s.pg_user,
        "SFMLOPS_PG_PASSWORD": s.pg_password.get_secret_value(),
        "SFMLOPS_API_KEY_PEPPER": s.api_key_pepper.get_secret_value(),
        "SFMLOPS_RAY_ADDRESS": s.ray_jobs_url,
        "SFMLOPS_MLFLOW_TRACKING_URI": s.mlflow_uri,
        "SFMLOPS_API_TEST_JOBS": "true",
        **table_env(s),  # the session's own tables
    }
    fn = lam.create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler", Timeout=30, MemorySize=512,
        Code={"ZipFile": lambda_zip.read_bytes()}, Environment={"Variables": env},
    )
    api = gw.create_api(Name=name, ProtocolType="HTTP")
    try:
        integ = gw.create_integration(
            ApiId=api["ApiId"], IntegrationType="AWS_PROXY", IntegrationUri=fn["FunctionArn"], PayloadFormatVersion="2.0"
        )
        gw.create_route(ApiId=api["ApiId"], RouteKey="$default", Target=f"integrations/{integ['IntegrationId']}")
        gw.create_stage(ApiId=api["ApiId"], StageName="$default", AutoDeploy=True)
        # MiniStack's path-style execute-api address (LocalStack compatible); on AWS: api["ApiEndpoint"].
        yield f"http://127.0.0.1:{s.emulator_port}/_aws/execute-api/{api['ApiId']}/$default"
    finally:
        gw.delete_api(ApiId=api["ApiId"])
        lam.delete_function(FunctionName=name)
        iam.delete_role(RoleName=name)


def call(url: str, method: str = "GET", key: str | None = None, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    hdrs = {"Accept": "application/json", **(headers or {})}
    if key:
        hdrs["X-API-Key"] = key
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url.replace("$", "%24"), data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read() or b"null")


def test_gateway_to_lambda_to_ray(gateway: str, keys: dict[str, str]) -> None:
    status, _, health = call(f"{gateway}/healthz")
    assert status == 200 and health["checks"]["database"]["ok"] and health["checks"]["ray"]["ok"]
    status, _, body = call(f"{gateway}/v1/training-jobs")
    assert status == 401 and body["error"]["code"] == "unauthorized"

    idem = f"e2e-{uuid.uuid4().hex}"
    status, headers, job = call(f"{gateway}/v1/training-jobs", "POST", keys["alice"], {"kind": "noop"}, {"Idempotency-Key": idem})
    assert status == 202, job
    assert headers["location"] == f"/v1/training-jobs/{job['id']}"
    status, _, again = call(f"{gateway}/v1/training-jobs", "POST", keys["alice"], {"kind": "noop"}, {"Idempotency-Key": idem})
    assert status == 200 and again["id"] == job["id"]

    deadline = time.monotonic() + 180
    while job["state"] not in FINISHED_STATES and time.monotonic() < deadline:
        time.sleep(2)
        status, _, job = call(f"{gateway}/v1/training-jobs/{job['id']}", key=keys["alice"])
        assert status == 200
    assert job["state"] == "SUCCEEDED", job
    status, _, logs = call(f"{gateway}/v1/training-jobs/{job['id']}/logs", key=keys["alice"])
    assert status == 200 and "sfmlops noop job" in logs["logs"]
    status, _, other = call(f"{gateway}/v1/training-jobs/{job['id']}", key=keys["bob"])
    assert status == 404


def test_docs_and_schema_through_the_gateway(gateway: str) -> None:
    status, _, schema = call(f"{gateway}/openapi.json")
    assert status == 200 and "/v1/training-jobs" in schema["paths"]
    req = urllib.request.Request(f"{gateway}/docs".replace("$", "%24"))
    with urllib.request.urlopen(req, timeout=60) as resp:
        html = resp.read().decode()
    assert "url: '/openapi.json'" in html
