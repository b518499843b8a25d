"""Pure unit tests: entrypoints, job environment, key hashing, request validation (no services)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.api import auth, jobs_service
from app.api.routes.training_jobs import TrainingJobRequest
from app.config import Settings


def settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def test_entrypoints_match_the_ray_job_scripts() -> None:
    s = settings()
    entry, env = jobs_service.build_submission(s, {"kind": "all", "max_steps": 50, "lgbm_rounds": 30})
    assert entry == "python ray_cluster/jobs/train_all.py --lgbm-rounds 30 --max-steps 50"
    assert env["working_dir"] == "s3://sfmlops-code/ray/job.zip"
    entry, _ = jobs_service.build_submission(s, {"kind": "store", "store": 17})
    assert entry == "python ray_cluster/jobs/train_store.py --store 17"
    entry, env = jobs_service.build_submission(s, {"kind": "noop", "noop_seconds": 3})
    assert entry.startswith("python -c ") and "time.sleep(3)" in entry and "working_dir" not in env


def test_working_dir_override_and_job_env_without_secrets() -> None:
    s = settings(job_working_dir="/srv/sfmlops", pg_password=SecretStr("s3cret-value"), pg_port=5999)
    assert jobs_service.working_dir(s) == "/srv/sfmlops"
    assert jobs_service.working_dir(settings(job_working_dir="  ")) == "s3://sfmlops-code/ray/job.zip"
    env = jobs_service.job_env(s)
    assert env["SFMLOPS_PG_PORT"] == "5999" and env["SFMLOPS_MLFLOW_TRACKING_URI"] == s.mlflow_uri
    assert "s3cret-value" not in " ".join(env.values())
    assert not any("PASSWORD" in k or "SECRET" in k for k in env)


def test_key_hash_depends_on_pepper_and_never_equals_key() -> None:
    a, b = settings(api_key_pepper=SecretStr("pepper-one")), settings(api_key_pepper=SecretStr("pepper-two"))
    key = "sfm_0011aabb_abcdefghijklmnopqrstuvwxyz"
    assert auth.hash_key(a, key) == auth.hash_key(a, key)
    assert auth.hash_key(a, key) != auth.hash_key(b, key)
    assert len(auth.hash_key(a, key)) == 64 and key not in auth.hash_key(a, key)


def test_request_hash_is_order_independent() -> None:
    assert jobs_service.request_hash({"kind": "store", "store": 1}) == jobs_service.request_hash({"store": 1, "kind": "store"})
    assert jobs_service.request_hash({"kind": "store", "store": 1}) != jobs_service.request_hash({"kind": "store", "store": 2})


@pytest.mark.parametrize(
    "body",
    [{"kind": "store"}, {"kind": "all", "store": 3}, {"kind": "all", "noop_seconds": 5}, {"kind": "store", "store": 1, "max_steps": 5}, {"kind": "nope"}],
)
def test_inconsistent_requests_are_refused(body: dict) -> None:
    with pytest.raises(ValidationError):
        TrainingJobRequest(**body)


def test_result_is_the_last_json_line() -> None:
    logs = 'Running entrypoint\n{"not": "last"}\nsome text\n{"rmspe": 0.1, "model_version": "3"}\n'
    assert jobs_service._result_from_logs(logs) == {"rmspe": 0.1, "model_version": "3"}
    assert jobs_service._result_from_logs("no json here\n{broken") is None
