"""Pure unit tests: entrypoints, job environment, key hashing, request validation (no services)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from app.api import auth, jobs_service
from app.api.routes.training_jobs import TRAINING_JOB_REQUEST, ForecastRequest, TrainAllRequest, _flat_error
from app.common.jobs import last_json_object
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
    assert entry == "python -m app.jobs.noop --seconds 3" and "working_dir" not in env
    _, env = jobs_service.build_submission(s.model_copy(update={"profile": "aws"}), {"kind": "noop"})
    assert env["working_dir"] == "s3://sfmlops-code/ray/job.zip"  # on AWS the module comes with the job zip
    entry, _ = jobs_service.build_submission(s, {"kind": "forecast", "days": 5, "stores": [2, 3]})
    assert entry == "python ray_cluster/jobs/forecast.py --days 5 --stores 2,3"
    entry, _ = jobs_service.build_submission(s, {"kind": "all", "stores": [1, 2], "neural": False})
    assert entry == "python ray_cluster/jobs/train_all.py --stores 1,2 --no-neural"


def test_working_dir_override_and_job_env_without_secrets() -> None:
    s = settings(job_working_dir="/srv/sfmlops", pg_password=SecretStr("s3cret-value"), pg_port=5999)
    assert jobs_service.working_dir(s) == "/srv/sfmlops"
    assert jobs_service.working_dir(settings(job_working_dir="  ")) == "s3://sfmlops-code/ray/job.zip"
    env = jobs_service.job_env(s)
    assert env["SFMLOPS_PG_PORT"] == "5999" and env["SFMLOPS_MLFLOW_TRACKING_URI"] == s.mlflow_uri
    assert "s3cret-value" not in " ".join(env.values())
    assert not any("PASSWORD" in k or "SECRET" in k for k in env)
    # on AWS the job gets the database secret's ARN (its role may read it), never the password
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds-db-credentials-AbCdEf"
    env = jobs_service.job_env(s.model_copy(update={"pg_secret_arn": arn}))
    assert env["SFMLOPS_PG_SECRET_ARN"] == arn and "s3cret-value" not in " ".join(env.values())


def test_a_job_of_an_api_on_real_aws_talks_to_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """On AWS the API's SFMLOPS_AWS_ENDPOINT_URL is empty; its jobs must get that too, not the emulator's default."""
    env = jobs_service.job_env(settings(aws_endpoint_url=""))
    assert env["SFMLOPS_AWS_ENDPOINT_URL"] == "" and "AWS_ENDPOINT_URL" not in env and "MLFLOW_S3_ENDPOINT_URL" not in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert settings().aws_endpoint_url is None  # what the job's driver reads
    local = jobs_service.job_env(settings(aws_endpoint_url="http://127.0.0.1:4566"))
    assert local["SFMLOPS_AWS_ENDPOINT_URL"] == local["AWS_ENDPOINT_URL"] == local["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:4566"


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
        TRAINING_JOB_REQUEST.validate_python(body)


def test_result_is_the_last_json_line() -> None:
    logs = 'Running entrypoint\n{"not": "last"}\nsome text\n{"rmspe": 0.1, "model_version": "3"}\n'
    assert last_json_object(logs) == {"rmspe": 0.1, "model_version": "3"}
    assert last_json_object("no json here\n{broken") is None


def test_small_training_and_forecast_entrypoints() -> None:
    s = settings()
    entry, env = jobs_service.build_submission(s, {"kind": "all", "stores": [3, 1, 2], "neural": False, "lgbm_rounds": 40})
    assert entry == "python ray_cluster/jobs/train_all.py --stores 3,1,2 --lgbm-rounds 40 --no-neural"
    assert env["working_dir"] == "s3://sfmlops-code/ray/job.zip"
    entry, _ = jobs_service.build_submission(s, {"kind": "all", "neural": True})
    assert entry == "python ray_cluster/jobs/train_all.py"
    entry, env = jobs_service.build_submission(s, {"kind": "forecast", "days": 7, "stores": [5, 6]})
    assert entry == "python ray_cluster/jobs/forecast.py --days 7 --stores 5,6"
    assert env["env_vars"]["SFMLOPS_TABLE_FORECASTS"] == s.table_forecasts
    entry, _ = jobs_service.build_submission(settings(horizon_days=30), {"kind": "forecast"})
    assert entry == "python ray_cluster/jobs/forecast.py --days 30"


def test_entrypoint_options_match_the_job_scripts_arguments() -> None:
    """Every option build_submission emits is one the Ray job script's argparse accepts."""
    import importlib.util
    import sys

    from app.config import PROJECT_ROOT

    jobs = PROJECT_ROOT / "ray_cluster" / "jobs"
    sys.path.insert(0, str(jobs))
    try:
        for body in ({"kind": "all", "stores": [1, 2], "neural": False, "lgbm_rounds": 5, "max_steps": 3}, {"kind": "forecast", "days": 4, "stores": [9]}):
            entry, _ = jobs_service.build_submission(settings(), body)
            script, *args = entry.split()[1:]
            spec = importlib.util.spec_from_file_location(f"job_{body['kind']}", PROJECT_ROOT / script)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            with pytest.raises(SystemExit) as stop:
                module.main([*args, "--help"])
            assert stop.value.code == 0
    finally:
        sys.path.remove(str(jobs))


def _errors(body: dict) -> list[dict]:
    """The errors the API reports for a body (as the route's validation handler rewrites them)."""
    with pytest.raises(ValidationError) as info:
        TRAINING_JOB_REQUEST.validate_python(body)
    return [_flat_error({**e, "loc": ("body", *e["loc"])}) for e in info.value.errors()]


def test_unknown_kind_is_named() -> None:
    assert [(e["loc"], e["msg"]) for e in _errors({"kind": "weekly"})] == [
        (("body", "kind"), "kind must be one of 'all', 'store', 'forecast', 'noop'")
    ]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"kind": "store", "store": 1, "stores": [1, 2]},
            "stores",
            "stores is not allowed when kind is 'store' (allowed: store, lgbm_rounds); kinds that take it: 'all', 'forecast'",
        ),
        ({"kind": "all", "stores": []}, "stores", "at least 1 item"),
        ({"kind": "all", "stores": list(range(1, 202))}, "stores", "at most 200 items"),
        ({"kind": "all", "stores": [4, 4, 5]}, "stores", "stores must be distinct; repeated: [4]"),
        ({"kind": "all", "stores": [0]}, "stores.0", "greater than or equal to 1"),
        ({"kind": "store", "store": 1, "neural": False}, "neural", "neural is not allowed when kind is 'store'"),
        ({"kind": "forecast", "max_steps": 3}, "max_steps", "max_steps is not allowed when kind is 'forecast'"),
        ({"kind": "forecast", "lgbm_rounds": 3}, "lgbm_rounds", "lgbm_rounds is not allowed when kind is 'forecast'"),
        ({"kind": "all", "days": 7}, "days", "days is not allowed when kind is 'all'"),
        ({"kind": "forecast", "days": 0}, "days", "greater than or equal to 1"),
        ({"kind": "forecast", "store": 3}, "store", "store is not allowed when kind is 'forecast'"),
        ({"kind": "all", "neural": "maybe"}, "neural", "valid boolean"),
    ],
)
def test_new_fields_are_refused_with_the_field_and_reason(body: dict, field: str, message: str) -> None:
    errors = _errors(body)
    assert [".".join(str(x) for x in e["loc"]) for e in errors] == [f"body.{field}"], errors
    assert message in errors[0]["msg"]


def test_new_fields_accepted_where_they_apply() -> None:
    req = TRAINING_JOB_REQUEST.validate_python({"kind": "all", "stores": [1, 2, 3], "neural": False, "lgbm_rounds": 50})
    assert req.stores == [1, 2, 3] and req.neural is False
    req = TRAINING_JOB_REQUEST.validate_python({"kind": "forecast", "days": 14, "stores": [7]})
    assert isinstance(req, ForecastRequest) and req.days == 14
    assert TRAINING_JOB_REQUEST.validate_python({"kind": "forecast"}).days is None
    assert isinstance(TRAINING_JOB_REQUEST.validate_python({}), TrainAllRequest)  # kind defaults to all


# --- log pages, rate limits, request ids (issue 13) ----------------------------------------------------------
def test_log_pages_are_bounded_and_join_up() -> None:
    text = "".join(f"line {i} é\n" for i in range(1000))
    data = text.encode()
    for max_bytes in (7, 100, 1024):
        pages, offset = [], 0
        while True:
            page, start, end, total = jobs_service.log_page(text, offset=offset, tail=None, max_bytes=max_bytes)
            assert start == offset and total == len(data) and len(page.encode()) <= max_bytes and end > start
            pages.append(page)
            if end >= total:
                break
            offset = end
        assert "".join(pages) == text
    tail, start, end, total = jobs_service.log_page(text, offset=None, tail=None, max_bytes=100)
    assert end == total and len(tail.encode()) <= 100 and text.endswith(tail) and start == total - len(tail.encode())
    last3, *_ = jobs_service.log_page(text, offset=None, tail=3, max_bytes=1 << 20)
    assert last3 == "line 997 é\nline 998 é\nline 999 é\n"
    # an offset inside a two-byte character moves to the next character; past the end gives an empty page
    inside = data.index("é".encode()) + 1
    page, start, *_ = jobs_service.log_page(text, offset=inside, tail=None, max_bytes=10)
    assert start == inside + 1 and page.startswith("\nline 1")
    assert jobs_service.log_page(text, offset=10**9, tail=None, max_bytes=10)[0] == ""


def test_rate_limiter_per_client_and_heavy_routes() -> None:
    from app.api.errors import ApiError
    from app.api.limits import RateLimiter

    limiter = RateLimiter(per_minute=3, heavy_per_minute=1)
    for _ in range(3):
        limiter.check(1, "GET", "/v1/stores")
    with pytest.raises(ApiError) as over:
        limiter.check(1, "GET", "/v1/stores")
    assert over.value.status == 429 and over.value.headers["Retry-After"] == "20"
    limiter.check(2, "POST", "/v1/forecasts")  # another client has its own buckets
    with pytest.raises(ApiError) as heavy:
        limiter.check(2, "POST", "/v1/forecasts")
    assert "SFMLOPS_API_HEAVY_RATE_LIMIT_PER_MINUTE" in heavy.value.message
    limiter.check(2, "GET", "/v1/stores")  # a refused heavy request took no token from the general bucket
    limiter.check(2, "GET", "/v1/stores")
    with pytest.raises(ApiError):
        limiter.check(2, "GET", "/v1/stores")


def test_chunked_oversized_body_is_413_before_auth_and_every_response_has_a_request_id() -> None:
    from fastapi.testclient import TestClient

    from app.api.main import create_app

    app = create_app(settings(api_max_body_bytes=2048, pg_port=1, ray_address="http://127.0.0.1:1"))

    def chunks():
        for _ in range(5):
            yield b"x" * 1000

    with TestClient(app, raise_server_exceptions=False) as api:
        resp = api.post("/v1/training-jobs", content=chunks(), headers={"content-type": "application/json"})
        missing = api.get("/v2/nothing", headers={"X-Request-ID": "abc-123"})
    assert resp.status_code == 413, resp.text
    body = resp.json()["error"]
    assert body["code"] == "payload_too_large" and body["request_id"] == resp.headers["x-request-id"]
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "abc-123"
    assert missing.json()["error"]["request_id"] == "abc-123"


def test_5xx_messages_hide_internals_unless_written_for_callers() -> None:
    from app.api.errors import ApiError, public_message

    leaky = ApiError(503, "Database unavailable at db.internal:5432: FATAL password authentication failed")
    assert "db.internal" not in public_message(leaky, "r1") and "r1" in public_message(leaky, "r1")
    split = ApiError(503, "MLflow is unavailable", internal="http://mlflow.internal:5000 ConnectError")
    assert public_message(split, "r2") == "MLflow is unavailable" and "mlflow.internal" in str(split)
    assert public_message(ApiError(503, "No champion model yet", expose=True), "r3") == "No champion model yet"
    assert public_message(ApiError(404, "No batch forecast for store 9"), "r4") == "No batch forecast for store 9"


def test_a_flood_of_unknown_keys_is_429_before_the_database() -> None:
    from fastapi.testclient import TestClient

    from app.api.main import create_app

    app = create_app(settings(api_rate_limit_per_minute=3, pg_port=1))
    with TestClient(app, raise_server_exceptions=False) as api:
        answers = [api.get("/v1/stores", headers={"X-API-Key": f"sfm_guess{i:04d}_xxxxxxxx"}).status_code for i in range(5)]
    assert answers == [503, 503, 503, 429, 429], answers  # three lookups reached the (absent) database
