"""The one API client (``app.common.api_client``, used by the UI, the demo and the DAGs) against the real app.

Every route the client calls is exercised on the real API (uvicorn over the real stack, seeded data); each
request it sent is matched to a path and method of the app's own OpenAPI schema, and the fields the client
reads from the answers are declared in that schema.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from uitest_support import FORECAST_STORES, HORIZON, LAST_DAY, PLAN_DAYS, PLAN_STORE, UiEnv

from app.api.main import create_app
from app.common.api_client import ApiClient, ApiProblem
from app.common.jobs import JobState

pytestmark = pytest.mark.integration

#: What the client itself reads from answers (the pages read more; these must never go missing).
READS: dict[tuple[str, str], set[str]] = {
    ("get", "/v1/stores"): {"items"},
    ("get", "/v1/stores/{store_id}/plan"): {"days"},
    ("get", "/v1/training-jobs"): {"items"},
    ("get", "/v1/training-jobs/{job_id}"): {"id", "state", "result", "message"},
    ("post", "/v1/training-jobs"): {"id", "state", "links"},
    ("get", "/v1/training-jobs/{job_id}/logs"): {"logs", "state"},
    ("post", "/v1/training-jobs/{job_id}/stop"): {"stopped", "job"},
}


def _schema(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _template(openapi: dict[str, Any], method: str, path: str) -> str | None:
    for template, ops in openapi["paths"].items():
        if method in ops and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return template
    return None


@pytest.fixture(scope="module")
def openapi(ui_api: UiEnv) -> dict[str, Any]:
    return create_app(ui_api.settings).openapi()


def test_every_call_of_the_client_is_in_the_openapi_schema(ui_api: UiEnv, openapi: dict[str, Any]) -> None:
    sent: list[tuple[str, str]] = []
    api = ApiClient(ui_api.api_url, ui_api.key, timeout_s=30)
    api._http.event_hooks["request"].append(lambda req: sent.append((req.method.lower(), req.url.path)))
    store = FORECAST_STORES[0]
    try:
        assert api.health()["status"] in ("ok", "degraded")
        assert {s["store"] for s in api.stores()} >= set(FORECAST_STORES)
        assert api.store_sales(store, 14)["store"] == store
        assert api.store_forecast(store, 7)["points"]
        assert api.store_plan(store)["days"] == []  # store 1 has no planning data
        assert len(api.store_plan(PLAN_STORE, start=LAST_DAY + timedelta(days=1), days=HORIZON)["days"]) == len(PLAN_DAYS) + 1
        assert api.chain_forecast(7)["stores"] >= 1
        assert "items" in api.backtest_errors(5)
        assert api.models()["exists"]
        job, replayed = api.submit_job({"kind": "noop"}, f"contract-{uuid.uuid4().hex}")
        assert not replayed and job["state"] in (JobState.PENDING, JobState.SUBMITTING)
        done = api.wait_for_job(job["id"], timeout_s=180, poll_s=1)
        assert done["state"] == JobState.SUCCEEDED and done["result"] == {"ok": True, "seconds": 0}
        assert "sfmlops noop job" in api.job_log_text(job["id"], tail=50)
        assert job["id"] in [j["id"] for j in api.jobs(limit=5, state=JobState.SUCCEEDED)]
        with pytest.raises(ApiProblem) as finished:
            api.stop_job(job["id"])
        assert finished.value.status == 409 and "already finished" in finished.value.message
    finally:
        api.close()
    for method, path in sent:
        template = _template(openapi, method, path)
        assert template is not None, f"the client calls {method.upper()} {path}, which the API does not serve"
        for field in READS.get((method, template), set()):
            responses = openapi["paths"][template][method]["responses"]
            ok = next(r for code, r in responses.items() if code.startswith("2"))
            props = _schema(openapi, ok["content"]["application/json"]["schema"]).get("properties", {})
            assert field in props, f"{method.upper()} {template}: the client reads {field!r}, not in the schema"
    assert {(m, _template(openapi, m, p)) for m, p in sent} >= set(READS)


def test_errors_are_parsed_from_the_apis_error_shape(ui_api: UiEnv, openapi: dict[str, Any]) -> None:
    """One parser: the 422 names the field; a bad key is 401 with the caller's hint; no answer is status 0."""
    body = openapi["paths"]["/v1/training-jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body.get("discriminator", {}).get("propertyName") == "kind" or "oneOf" in body, body
    with ApiClient(ui_api.api_url, ui_api.key) as api:
        with pytest.raises(ApiProblem) as bad:
            api.submit_job({"kind": "all", "days": 3}, "contract-bad-body")
    assert bad.value.status == 422 and not bad.value.retryable and bad.value.code == "validation_error"
    assert "body.days: days is not allowed when kind is 'all'" in bad.value.message
    with ApiClient(ui_api.api_url, "not-a-key", key_hint="Check the key.") as api:
        with pytest.raises(ApiProblem) as denied:
            api.models()
    assert denied.value.status == 401 and denied.value.message.endswith("Check the key.")
    with ApiClient("http://127.0.0.1:9", "k", timeout_s=2, unreachable_hint="Is it running?") as api:
        with pytest.raises(ApiProblem) as gone:
            api.models()
    assert gone.value.status == 0 and gone.value.retryable and "127.0.0.1:9" in gone.value.message
    assert isinstance(gone.value.__cause__, httpx.HTTPError)
