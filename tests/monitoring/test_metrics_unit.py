"""The API's metrics middleware and /metrics route, the push helpers' contracts, the webhook route's refusals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from app.config import Settings
from app.monitoring import metrics


def _sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def client(tmp_path) -> TestClient:
    from app.api.main import create_app

    return TestClient(create_app(Settings(_env_file=None, state_dir=tmp_path)))


def test_middleware_labels_route_templates_not_paths(client: TestClient) -> None:
    before_unmatched = _sample("sfmlops_api_request_duration_seconds_count", route="unmatched", method="GET", status="404")
    before_401 = _sample("sfmlops_api_auth_failures_total", route="/v1/stores/{store_id}/forecast")
    for path in ("/nope-1", "/nope-2", "/wp-admin.php"):
        assert client.get(path).status_code == 404
    assert client.get("/v1/stores/17/forecast").status_code == 401
    assert client.get("/v1/stores/18/forecast").status_code == 401
    assert _sample("sfmlops_api_request_duration_seconds_count", route="unmatched", method="GET", status="404") == before_unmatched + 3
    assert _sample("sfmlops_api_auth_failures_total", route="/v1/stores/{store_id}/forecast") == before_401 + 2
    text = client.get("/metrics").text
    assert 'route="/v1/stores/{store_id}/forecast"' in text
    assert "/v1/stores/17/forecast" not in text and "wp-admin" not in text  # bounded label values
    assert "_created" not in text


def test_413_is_timed_under_its_route(client: TestClient) -> None:
    before = _sample("sfmlops_api_request_duration_seconds_count", route="unmatched", method="POST", status="413")
    resp = client.post("/v1/training-jobs", content=b"x" * (70 * 1024), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    # the body limit answers before routing: counted, under the bounded 'unmatched' label
    assert _sample("sfmlops_api_request_duration_seconds_count", route="unmatched", method="POST", status="413") == before + 1


def test_metrics_route_off_on_aws_profile_by_default() -> None:
    s = Settings(_env_file=None, profile="aws", pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c",
                 aws_access_key_id="AKIAREALKEY", aws_secret_access_key="real-secret-key-value")
    assert s.api_serves_metrics is False
    assert Settings(_env_file=None).api_serves_metrics is True
    assert Settings(_env_file=None, profile="aws", api_metrics_route=True, pg_password="Xk2-long-real-secret",
                    api_key_pepper="pepper-9f8e7d6c", aws_access_key_id="AKIAREALKEY",
                    aws_secret_access_key="real-secret-key-value").api_serves_metrics is True


def test_push_off_and_unreachable_never_fail(tmp_path) -> None:
    off = Settings(_env_file=None, pushgateway_url="off")
    assert off.pushgateway_base_url is None
    assert metrics.push_producer(off, {"topic": "t", "mode": "replay", "sent": 1}) is False
    from app.stack.base import free_port

    nowhere = Settings(_env_file=None, pushgateway_url=f"http://127.0.0.1:{free_port()}")
    assert metrics.push_training(nowhere, "all", None, error=RuntimeError("x")) is False
    ingest = metrics.IngestMetrics(nowhere, "t")
    assert ingest.batch(10, 1, 9, 0.1, 0.2, 0.3) is False


def test_ingest_offsets_and_lag() -> None:
    s = Settings(_env_file=None, pushgateway_url="off")
    m = metrics.IngestMetrics(s, "sales")
    m.progress('{"sales": {"0": 5, "1": 7}}', '{"sales": {"0": 9, "1": 7}}')
    assert m.registry.get_sample_value("sfmlops_ingest_committed_offset", {"topic": "sales", "partition": "0"}) == 5
    assert m.registry.get_sample_value("sfmlops_ingest_consumer_lag", {"topic": "sales", "partition": "0"}) == 4
    assert m.registry.get_sample_value("sfmlops_ingest_consumer_lag", {"topic": "sales", "partition": "1"}) == 0
    assert m.progress(None, None) is False and m.progress("not json", "{}") is False
    m.batch(100, 3, 97, 0.5, 1.5, 0.25)
    m.batch(50, 0, 50, 0.5, 1.0, 0.25)
    assert m.registry.get_sample_value("sfmlops_ingest_rows_total", {"topic": "sales", "kind": "valid"}) == 147
    assert m.registry.get_sample_value("sfmlops_ingest_batch_rows", {"topic": "sales", "kind": "in"}) == 50


@pytest.mark.parametrize(("gate", "promoted"), [
    ({"decision": "champion"}, True), ({"decision": "scope_champion"}, True), ({"decision": "challenger"}, False),
    ({"decision": "scope_challenger"}, False), ("champion", True), ({}, False),
])
def test_gate_decision(gate: object, promoted: bool) -> None:
    assert metrics._gate_promoted(gate) is promoted


def test_training_scope_is_bounded() -> None:
    assert metrics.training_scope(None) == "all"
    assert metrics.training_scope([3, 1]) == "3,1"
    assert metrics.training_scope(range(1, 101)) == "1,2,3,4,5,6,7,8+92"


def test_webhook_refuses_bad_token_and_bad_payload(client: TestClient) -> None:
    good = {"version": "4", "status": "firing", "receiver": "sfmlops-api", "alerts": [
        {"status": "firing", "labels": {"alertname": "X"}, "startsAt": "2026-01-01T00:00:00Z", "fingerprint": "ab12"}]}
    assert client.post("/v1/alerts/webhook", json=good).status_code == 401
    assert client.post("/v1/alerts/webhook", json=good, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": "Bearer local-dev-only"}
    for bad in ({**good, "version": "3"}, {**good, "alerts": []},
                {**good, "alerts": [{**good["alerts"][0], "fingerprint": "not-hex!"}]},
                {**good, "alerts": [{**good["alerts"][0], "labels": {"severity": "x"}}]}):
        resp = client.post("/v1/alerts/webhook", json=bad, headers=auth)
        assert resp.status_code == 422, (bad, resp.text)
    assert client.get("/v1/alerts").status_code == 401


def test_webhook_not_configured_on_aws_with_placeholder_token() -> None:
    from app.api.errors import ApiError
    from app.api.routes.alerts import _check_token

    s = Settings(_env_file=None, profile="aws", pg_password="Xk2-long-real-secret", api_key_pepper="pepper-9f8e7d6c",
                 aws_access_key_id="AKIAREALKEY", aws_secret_access_key="real-secret-key-value")
    with pytest.raises(ApiError) as err:
        _check_token(s, "Bearer local-dev-only")
    assert err.value.status == 503 and "SFMLOPS_ALERT_WEBHOOK_TOKEN" in err.value.message


def test_failed_ray_submission_is_counted_existing_id_is_not() -> None:
    from app.api.ray_jobs import RayJobsClient, RayUnreachable
    from app.stack.base import free_port

    ray = RayJobsClient(f"http://127.0.0.1:{free_port()}", 2.0)
    before = _sample("sfmlops_api_ray_submission_failures_total", reason="RayUnreachable")
    with pytest.raises(RayUnreachable):
        ray.submit(entrypoint="python -c 1", submission_id="x")
    assert _sample("sfmlops_api_ray_submission_failures_total", reason="RayUnreachable") == before + 1


def test_waves_include_monitoring_only_when_asked(tmp_path) -> None:
    from app.stack import services

    s = Settings(_env_file=None, state_dir=tmp_path)
    assert not {"prometheus", "alertmanager"} & {svc.name for svc in services(s)}
    names = {svc.name for svc in services(s, with_monitoring=True)}
    assert {"prometheus", "alertmanager", "pushgateway", "exporter", "postgres-exporter"} <= names
    assert {"prometheus", "exporter"} <= {svc.name for svc in services(Settings(_env_file=None, state_dir=tmp_path, monitoring=True))}


def test_kafka_offsets_reads_a_progress_json_text_or_its_parsed_form() -> None:
    """Query progress offsets arrive as JSON text (pyspark >= 4.1's SourceProgress) or already parsed (earlier
    versions, e.g. EMR's Spark 4.0): the driver's metrics and its consumer-group commits read both the same."""
    from app.common.spark import kafka_offsets

    expected = {"sales": {"0": 600, "1": 400}}
    assert kafka_offsets('{"sales": {"0": 600, "1": 400}}') == expected
    assert kafka_offsets({"sales": {"0": 600, "1": 400}}) == expected
    for bad in (None, "", "not json", '["sales"]', {"sales": {"0": "x"}}):
        assert kafka_offsets(bad) == {}
