"""Training jobs against real Postgres and a real local Ray head (Ray Jobs REST API)."""

from __future__ import annotations

import time
import uuid

import pytest
from apitest_support import assert_error_shape, h, invoke, load_lambda_handler, make_event, wait_for
from fastapi.testclient import TestClient
from isolated_support import table_env

from app.api.main import create_app
from app.common.jobs import FINISHED_STATES
from app.config import Settings
from app.db import transaction
from app.stack.base import free_port

pytestmark = pytest.mark.integration
TERMINAL = set(FINISHED_STATES)


@pytest.fixture(scope="module")
def api(api_settings: Settings) -> TestClient:
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as client:
        yield client


def test_submit_status_logs_and_result(api: TestClient, keys: dict[str, str]) -> None:
    resp = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"]))
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["state"] == "PENDING" and job["ray_submission_id"] == job["id"]
    assert resp.headers["location"] == job["links"]["self"] == f"/v1/training-jobs/{job['id']}"
    done = wait_for(api, keys["alice"], job["id"], TERMINAL)
    assert done["state"] == "SUCCEEDED", done
    assert done["result"] == {"ok": True, "seconds": 0}
    assert done["started_at"] and done["finished_at"] and done["refreshed_at"]
    logs = api.get(job["links"]["logs"], headers=h(keys["alice"]))
    assert logs.status_code == 200 and "sfmlops noop job" in logs.json()["logs"]
    assert logs.json()["state"] == "SUCCEEDED" and logs.json()["offset"] == 0 and not logs.json()["truncated"]
    listed = api.get("/v1/training-jobs", params={"state": "SUCCEEDED"}, headers=h(keys["alice"])).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    stop = api.post(job["links"]["stop"], headers=h(keys["alice"]))
    assert stop.status_code == 409
    assert "already finished" in assert_error_shape(stop.json(), 409)["message"]


def test_idempotent_retry_is_one_job(api: TestClient, keys: dict[str, str], api_settings: Settings) -> None:
    idem = f"retry-{uuid.uuid4().hex}"
    first = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"], idem))
    second = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"], idem))
    assert first.status_code == 202 and second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    with transaction(api_settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {api_settings.table_training_jobs} WHERE idempotency_key = %s", (idem,))
        assert cur.fetchone()[0] == 1
    clash = api.post("/v1/training-jobs", json={"kind": "noop", "noop_seconds": 1}, headers=h(keys["alice"], idem))
    assert clash.status_code == 409
    assert assert_error_shape(clash.json(), 409)["details"][0]["field"] == "header.idempotency-key"
    # The same key from another client is that client's own, separate job.
    other = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["bob"], idem))
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    for key, job in ((keys["alice"], first.json()), (keys["bob"], other.json())):
        assert wait_for(api, key, job["id"], TERMINAL)["state"] == "SUCCEEDED"


def test_another_clients_job_is_404(api: TestClient, keys: dict[str, str]) -> None:
    job = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"])).json()
    for method, path in (("GET", ""), ("GET", "/logs"), ("POST", "/stop")):
        resp = api.request(method, f"/v1/training-jobs/{job['id']}{path}", headers=h(keys["bob"]))
        assert resp.status_code == 404, (method, path, resp.text)
        assert job["id"] in assert_error_shape(resp.json(), 404)["message"]
    bobs = api.get("/v1/training-jobs", params={"limit": 100}, headers=h(keys["bob"])).json()
    assert job["id"] not in [j["id"] for j in bobs["items"]]
    assert wait_for(api, keys["alice"], job["id"], TERMINAL)["state"] == "SUCCEEDED"


def test_missing_and_invalid_keys_are_401(api: TestClient) -> None:
    for headers in ({}, {"X-API-Key": "sfm_deadbeef_not-a-real-key"}, {"X-API-Key": ""}):
        resp = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=headers)
        assert resp.status_code == 401, headers
        assert resp.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
        assert_error_shape(resp.json(), 401)


def test_stop_a_running_job(api: TestClient, keys: dict[str, str]) -> None:
    job = api.post("/v1/training-jobs", json={"kind": "noop", "noop_seconds": 300}, headers=h(keys["bob"])).json()
    assert wait_for(api, keys["bob"], job["id"], {"RUNNING"} | TERMINAL)["state"] == "RUNNING"
    stop = api.post(f"/v1/training-jobs/{job['id']}/stop", headers=h(keys["bob"]))
    assert stop.status_code == 200 and stop.json()["stopped"] is True
    assert wait_for(api, keys["bob"], job["id"], TERMINAL, timeout_s=60)["state"] == "STOPPED"


def test_concurrent_limit_is_429_with_retry_after(api: TestClient, keys: dict[str, str]) -> None:
    key = keys["carol"]
    running = [
        api.post("/v1/training-jobs", json={"kind": "noop", "noop_seconds": 300}, headers=h(key)).json()
        for _ in range(2)
    ]
    try:
        over = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(key))
        assert over.status_code == 429
        assert int(over.headers["retry-after"]) > 0
        assert "SFMLOPS_API_MAX_CONCURRENT_JOBS" in assert_error_shape(over.json(), 429)["message"]
    finally:
        for job in running:
            api.post(f"/v1/training-jobs/{job['id']}/stop", headers=h(key))
    for job in running:
        assert wait_for(api, key, job["id"], TERMINAL, timeout_s=60)["state"] == "STOPPED"
    # Stopped jobs no longer count: carol may submit again.
    again = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(key))
    assert again.status_code == 202
    wait_for(api, key, again.json()["id"], TERMINAL)


def test_hourly_limit_is_429_with_retry_after(api_settings: Settings) -> None:
    from app.api.auth import issue_key

    key = issue_key(api_settings, f"test-hourly-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(api_settings.model_copy(update={"api_max_jobs_per_hour": 1}))) as api:
        first = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(key))
        assert first.status_code == 202
        wait_for(api, key, first.json()["id"], TERMINAL)
        over = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(key))
        assert over.status_code == 429
        assert 1 <= int(over.headers["retry-after"]) <= 3601
        assert "SFMLOPS_API_MAX_JOBS_PER_HOUR" in assert_error_shape(over.json(), 429)["message"]


def test_oversized_body_is_413(api: TestClient, keys: dict[str, str]) -> None:
    resp = api.post(
        "/v1/training-jobs",
        content=b'{"kind": "noop", "pad": "' + b"x" * 5000 + b'"}',
        headers={**h(keys["alice"]), "content-type": "application/json"},
    )
    assert resp.status_code == 413
    assert_error_shape(resp.json(), 413)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "store", "store": 0}, "body.store"),
        ({"kind": "weekly"}, "body.kind"),
        ({"kind": "all", "extra": 1}, "body.extra"),
        ({"kind": "store"}, "body.store"),
        ({"kind": "forecast", "store": 3}, "body.store"),
        ({"kind": "all", "stores": [2, 2]}, "body.stores"),
        ({"kind": "store", "store": 1, "stores": [1]}, "body.stores"),
        ({"kind": "all", "stores": list(range(1, 202))}, "body.stores"),
        ({"kind": "store", "store": 1, "neural": False}, "body.neural"),
        ({"kind": "all", "days": 7}, "body.days"),
        ({"kind": "forecast", "lgbm_rounds": 5}, "body.lgbm_rounds"),
    ],
)
def test_validation_is_422_naming_the_field(api: TestClient, keys: dict[str, str], body: dict, field: str) -> None:
    resp = api.post("/v1/training-jobs", json=body, headers=h(keys["alice"]))
    assert resp.status_code == 422
    err = assert_error_shape(resp.json(), 422)
    assert field in [d["field"] for d in err["details"]]
    assert field in err["message"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"kind": "all", "store": 3},
            "body.store",
            "store is not allowed when kind is 'all' (allowed: stores, neural, lgbm_rounds, max_steps); kinds that take it: 'store'",
        ),
        ({"kind": "weekly"}, "body.kind", "kind must be one of 'all', 'store', 'forecast', 'noop'"),
        ({"kind": "store"}, "body.store", "Field required"),
        ({"kind": "noop", "noop_seconds": 601}, "body.noop_seconds", "Input should be less than or equal to 600"),
    ],
)
def test_union_errors_name_the_field_as_sent(api: TestClient, keys: dict[str, str], body: dict, field: str, message: str) -> None:
    """The request is a union on kind; its errors name the client's field (never the union's tag) and say why."""
    resp = api.post("/v1/training-jobs", json=body, headers=h(keys["alice"]))
    assert resp.status_code == 422
    err = assert_error_shape(resp.json(), 422)
    assert [(d["field"], message in d["message"]) for d in err["details"]] == [(field, True)], err
    assert err["message"] == f"Invalid request: {field}"


def test_bad_idempotency_key_and_job_id_are_422(api: TestClient, keys: dict[str, str]) -> None:
    resp = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"], "has space"))
    assert resp.status_code == 422
    assert assert_error_shape(resp.json(), 422)["details"][0]["field"] == "header.idempotency-key"
    resp = api.get("/v1/training-jobs/bad%20id", headers=h(keys["alice"]))
    assert resp.status_code == 422


def test_noop_kind_is_refused_unless_enabled(api_settings: Settings, keys: dict[str, str]) -> None:
    with TestClient(create_app(api_settings.model_copy(update={"api_test_jobs": False}))) as api:
        resp = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"]))
    assert resp.status_code == 422
    assert assert_error_shape(resp.json(), 422)["details"][0]["field"] == "body.kind"


def test_history_survives_ray_going_away(api: TestClient, api_settings: Settings, keys: dict[str, str]) -> None:
    done = api.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"])).json()
    done = wait_for(api, keys["alice"], done["id"], TERMINAL)
    # A job Ray never heard of (as after a cluster restart) becomes LOST instead of hanging in PENDING.
    ghost = f"sfm-{uuid.uuid4().hex}"
    with transaction(api_settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT client_id FROM {api_settings.table_training_jobs} WHERE id = %s", (done["id"],))
        client_id = cur.fetchone()[0]
        cur.execute(
            f"INSERT INTO {api_settings.table_training_jobs} (id, client_id, kind, entrypoint, ray_submission_id,"
            " state, request_hash) VALUES (%s, %s, 'all', 'python x.py', %s, 'RUNNING', %s)",
            (ghost, client_id, ghost, "0" * 64),
        )
    lost = api.get(f"/v1/training-jobs/{ghost}", headers=h(keys["alice"])).json()
    assert lost["state"] == "LOST" and "no longer knows" in lost["message"]
    # With Ray unreachable, finished history is still served from Postgres; submitting says why it cannot.
    dead = api_settings.model_copy(update={"ray_address": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(dead)) as offline:
        again = offline.get(f"/v1/training-jobs/{done['id']}", headers=h(keys["alice"]))
        assert again.status_code == 200 and again.json()["state"] == "SUCCEEDED"
        refused = offline.post("/v1/training-jobs", json={"kind": "noop"}, headers=h(keys["alice"]))
        assert refused.status_code == 503
        assert "Ray Jobs API is unavailable" in assert_error_shape(refused.json(), 503)["message"]


def test_submit_through_the_lambda_handler(monkeypatch: pytest.MonkeyPatch, api_settings: Settings, keys: dict[str, str]) -> None:
    env = {
        "SFMLOPS_PG_HOST": api_settings.pg_host,
        "SFMLOPS_PG_PORT": str(api_settings.pg_port),
        "SFMLOPS_PG_DATABASE": api_settings.pg_database,
        "SFMLOPS_PG_USER": api_settings.pg_user,
        "SFMLOPS_PG_PASSWORD": api_settings.pg_password.get_secret_value(),
        "SFMLOPS_API_KEY_PEPPER": api_settings.api_key_pepper.get_secret_value(),
        "SFMLOPS_RAY_ADDRESS": api_settings.ray_jobs_url,
        "SFMLOPS_API_TEST_JOBS": "true",
        **table_env(api_settings),  # the session's own tables
    }
    handler = load_lambda_handler(monkeypatch, env)
    idem = f"lambda-{uuid.uuid4().hex}"
    event = make_event("submit_job", body={"kind": "noop"}, headers={"X-API-Key": keys["alice"], "Idempotency-Key": idem})
    status, headers, job = invoke(handler, event)
    assert status == 202, job
    assert headers["location"] == f"/v1/training-jobs/{job['id']}"
    status, _, replay = invoke(handler, event)
    assert status == 200 and replay["id"] == job["id"]
    deadline = time.monotonic() + 180
    while job["state"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(1)
        status, _, job = invoke(
            handler, make_event("healthz", path=f"/v1/training-jobs/{job['id']}", headers={"X-API-Key": keys["alice"]})
        )
        assert status == 200
    assert job["state"] == "SUCCEEDED"
    status, _, health = invoke(handler, make_event("healthz"))
    assert health["checks"]["database"]["ok"] and health["checks"]["ray"]["ok"]


def test_revoked_key_is_401(api_settings: Settings) -> None:
    from app.api.auth import issue_key, revoke_keys

    name = f"test-revoke-{uuid.uuid4().hex[:8]}"
    key = issue_key(api_settings, name)
    with TestClient(create_app(api_settings)) as api:
        assert api.get("/v1/training-jobs", headers=h(key)).status_code == 200
        assert revoke_keys(api_settings, name) == 1
        resp = api.get("/v1/training-jobs", headers=h(key))
    assert resp.status_code == 401
    assert "revoked" in assert_error_shape(resp.json(), 401)["message"]


def test_register_key_accepts_a_configured_key_idempotently(api_settings: Settings) -> None:
    from app.api.auth import authenticate, register_key

    name, key = f"test-local-{uuid.uuid4().hex[:8]}", f"configured-{uuid.uuid4().hex}"
    first = register_key(api_settings, name, key)
    assert register_key(api_settings, name, key) == first
    assert authenticate(api_settings, key) == first
    with pytest.raises(ValueError, match="another client"):
        register_key(api_settings, f"{name}-other", key)
