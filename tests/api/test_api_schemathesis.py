"""Property-based run of schemathesis over the OpenAPI schema against the real app, Postgres and Ray.

Checks: no 5xx server errors, and every response conforms to the schema (status code documented, content
type, body schema, headers). Limits are kept small so the run submits at most a handful of real Ray jobs.
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
    # A real (tiny) champion is registered, so on-demand forecasts answer 200 rather than 503.
    return registry.model_copy(update={"api_max_jobs_per_hour": 4, "api_max_concurrent_jobs": 1})


@pytest.fixture(scope="module")
def fuzz_key(fuzz_settings: Settings) -> str:
    from app.api.auth import issue_key

    return issue_key(fuzz_settings, f"test-fuzz-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def api_schema(fuzz_settings: Settings):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_settings))


def test_api_conforms_to_its_schema(api_schema, fuzz_key: str) -> None:
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
        def run(case) -> None:  # noqa: ANN001
            case.call_and_validate(headers={"X-API-Key": fuzz_key}, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report all
            failures[label] = f"{type(exc).__name__}: {exc}"[:3000]
    expected = {
        "GET /healthz", "POST /v1/training-jobs", "GET /v1/training-jobs", "GET /v1/training-jobs/{job_id}",
        "GET /v1/training-jobs/{job_id}/logs", "POST /v1/training-jobs/{job_id}/stop",
        "GET /v1/stores/{store_id}/forecast", "POST /v1/forecasts", "GET /v1/models",
    }
    assert expected <= set(tested), tested
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
