"""Property-based run of schemathesis over the OpenAPI schema against the real app, Postgres and Ray.

Checks: no 5xx server errors, and every response conforms to the schema (status code documented, content
type, body schema, headers). Fuzzing starts no real work: the server accepts only kind=noop jobs
(``SFMLOPS_API_JOB_KINDS`` empty), at most a handful of them, and stops them afterwards; every other kind
is answered 422, which the run checks like any other answer.
"""

from __future__ import annotations

import uuid

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.main import create_app
from app.config import Settings
from app.db import transaction

pytestmark = pytest.mark.integration
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzz_settings(registry: Settings) -> Settings:
    # A real (tiny) champion is registered, so on-demand forecasts answer 200 rather than 503. Only noop jobs
    # are accepted; the per-minute limits are out of the way so that the routes themselves are exercised.
    return registry.model_copy(
        update={
            "api_max_jobs_per_hour": 4, "api_max_concurrent_jobs": 1, "api_job_kinds": "",
            "api_rate_limit_per_minute": 100_000, "api_heavy_rate_limit_per_minute": 100_000,
        }
    )


@pytest.fixture(scope="module")
def fuzz_client(fuzz_settings: Settings) -> tuple[str, str]:
    """(client name, key) of the fuzzing client; its unfinished jobs are stopped afterwards."""
    from app.api.auth import issue_key
    from app.api.ray_jobs import RayJobsClient

    name = f"test-fuzz-{uuid.uuid4().hex[:8]}"
    yield name, issue_key(fuzz_settings, name)
    ray = RayJobsClient(fuzz_settings.ray_jobs_url, 30)
    try:
        for job in ray.jobs():
            if (job.get("metadata") or {}).get("client") == name and job.get("status") in ("PENDING", "RUNNING"):
                ray.stop(job["submission_id"])
    finally:
        ray.close()


@pytest.fixture(scope="module")
def fuzz_key(fuzz_client: tuple[str, str]) -> str:
    return fuzz_client[1]


@pytest.fixture(scope="module")
def api_schema(fuzz_settings: Settings):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_settings))


def test_api_conforms_to_its_schema(api_schema, fuzz_key: str, fuzz_settings: Settings, fuzz_client: tuple[str, str]) -> None:
    failures: dict[str, str] = {}
    tested = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        tested.append(label)

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
        )
        def run(case) -> None:
            case.call_and_validate(headers={"X-API-Key": fuzz_key}, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report all
            failures[label] = f"{type(exc).__name__}: {exc}"[:3000]
    expected = {
        "GET /healthz", "POST /v1/training-jobs", "GET /v1/training-jobs", "GET /v1/training-jobs/{job_id}",
        "GET /v1/training-jobs/{job_id}/logs", "POST /v1/training-jobs/{job_id}/stop",
        "GET /v1/stores/{store_id}/forecast", "POST /v1/forecasts", "GET /v1/models", "GET /v1/stores/{store_id}/plan",
    }
    assert expected <= set(tested), tested
    _assert_no_real_work(fuzz_settings, fuzz_client[0])
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def _assert_no_real_work(fuzz_settings: Settings, name: str) -> None:
    """The fuzz client's jobs are noop jobs only, on Ray and in the table."""
    from app.api.ray_jobs import RayJobsClient

    with transaction(fuzz_settings) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT j.kind, count(*) FROM {fuzz_settings.table_training_jobs} j JOIN {fuzz_settings.table_api_clients} c"
            " ON c.id = j.client_id WHERE c.name = %s GROUP BY j.kind",
            (name,),
        )
        kinds = dict(cur.fetchall())
    ray = RayJobsClient(fuzz_settings.ray_jobs_url, 30)
    try:
        on_ray = [j["entrypoint"] for j in ray.jobs() if (j.get("metadata") or {}).get("client") == name]
    finally:
        ray.close()
    assert set(kinds) <= {"noop"}, kinds
    assert all(e.startswith("python -m app.jobs.noop --seconds ") for e in on_ray), on_ray
    assert sum(kinds.values()) == len(on_ray)
