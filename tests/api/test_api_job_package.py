"""The job-code zip on the emulator's S3 is a working Ray ``working_dir`` (real MiniStack + Ray head)."""

from __future__ import annotations

import time
import uuid
import zipfile

import pytest

from app.api import jobs_service
from app.api.ray_jobs import RayJobsClient
from app.common.jobs import RAY_FINISHED_STATES, last_json_object
from app.config import Settings
from app.jobs import package as job_package

pytestmark = pytest.mark.integration


def test_job_zip_runs_on_ray_from_s3(api_settings: Settings, tmp_path) -> None:
    path = job_package.build(tmp_path / "job.zip")
    names = zipfile.ZipFile(path).namelist()
    assert "sfmlops_job/ray_cluster/jobs/train_all.py" in names and "sfmlops_job/app/config.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    settings = api_settings.model_copy(update={"job_code_key": f"tests/{uuid.uuid4().hex}.zip"})
    uri = job_package.upload(settings, path)
    assert uri == jobs_service.working_dir(settings)

    ray = RayJobsClient(settings.ray_jobs_url)
    code = "import json, os, app.config; print(json.dumps({'jobs': sorted(os.listdir('ray_cluster/jobs')), 'pg_port': os.environ['SFMLOPS_PG_PORT']}))"
    sid = ray.submit(
        entrypoint=f"python -c \"{code}\"",
        submission_id=f"test-s3-{uuid.uuid4().hex[:12]}",
        runtime_env={"working_dir": uri, "env_vars": jobs_service.job_env(settings)},
    )
    deadline = time.monotonic() + 180
    while (info := ray.get(sid))["status"] not in RAY_FINISHED_STATES and time.monotonic() < deadline:
        time.sleep(1)
    logs = ray.logs(sid)
    assert info["status"] == "SUCCEEDED", (info.get("message"), logs[-2000:])
    result = last_json_object(logs)
    assert {"train_all.py", "train_store.py"} <= set(result["jobs"])
    assert result["pg_port"] == str(settings.pg_port)
    settings.boto3_client("s3").delete_object(Bucket=settings.bucket_code, Key=settings.job_code_key)
    ray.close()
