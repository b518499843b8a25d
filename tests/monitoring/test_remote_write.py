"""The remote write of a registry (app/monitoring/remote_write.py): what goes on the wire, decoded back with the
protocol's own messages and snappy; when writes are signed; the setting's check. The write to a real Prometheus
is in tests/api/test_api_lambda_remote_write.py."""

from __future__ import annotations

import math

import cramjam
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from app.config import Settings
from app.monitoring import remote_write as rw


def _decoded(body: bytes) -> dict[str, tuple[dict[str, str], float, int]]:
    request = rw.message_classes()["WriteRequest"]()
    request.ParseFromString(body)
    out = {}
    for series in request.timeseries:
        names = [label.name for label in series.labels]
        assert names == sorted(names), names  # the protocol wants them sorted
        labels = {label.name: label.value for label in series.labels}
        assert len(series.samples) == 1
        key = labels["__name__"] + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") + "}"
        out[key] = (labels, series.samples[0].value, series.samples[0].timestamp)
    return out


def test_every_sample_becomes_one_series_with_the_extra_labels_and_nan_is_left_out() -> None:
    r = CollectorRegistry()
    Counter("t_requests_total", "h", ["route"], registry=r).labels("/a").inc(3)
    Histogram("t_seconds", "h", buckets=(0.1, 1.0), registry=r).observe(0.5)
    Gauge("t_broken", "h", registry=r).set(math.nan)
    body, n = rw.encode(r, {"job": "sfmlops_api", "instance": "lambda/f/1"}, 1_700_000_000_123)
    series = _decoded(body)
    assert n == len(series)
    extra = "instance=lambda/f/1,job=sfmlops_api"
    assert series[f"t_requests_total{{{extra},route=/a}}"][1:] == (3.0, 1_700_000_000_123)
    assert series[f"t_seconds_bucket{{{extra},le=0.1}}"][1] == 0.0
    assert series[f"t_seconds_bucket{{{extra},le=1.0}}"][1] == 1.0
    assert series[f"t_seconds_bucket{{{extra},le=+Inf}}"][1] == 1.0
    assert series[f"t_seconds_count{{{extra}}}"][1] == 1.0 and series[f"t_seconds_sum{{{extra}}}"][1] == 0.5
    assert not any(k.startswith("t_broken") for k in series)
    # 6 series (+ a *_created per counter and histogram unless app.monitoring.metrics disabled them, as the API does)
    assert len([k for k in series if "_created{" not in k]) == 6


def test_the_body_is_snappy_block_format() -> None:
    body = b"x" * 1000 + bytes(range(256))
    packed = rw.compress(body)
    assert len(packed) < len(body) and bytes(cramjam.snappy.decompress_raw(packed)) == body


@pytest.mark.parametrize(
    ("url", "setting", "signed"),
    [
        ("https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write", None, True),
        ("http://127.0.0.1:9090/api/v1/write", None, False),
        ("http://127.0.0.1:9090/api/v1/write", True, True),
        ("https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write", False, False),
    ],
)
def test_writes_are_signed_for_aws_endpoints_unless_told(url: str, setting: bool | None, signed: bool) -> None:
    s = Settings(metrics_remote_write_url=url, metrics_remote_write_sigv4=setting)
    assert rw.signs_sigv4(s) is signed


def test_sigv4_signs_for_the_aps_service_with_the_default_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDREMOTEWRITE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-of-the-test")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    url = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
    headers = rw.sigv4_headers(url, b"payload", dict(rw.HEADERS), "eu-west-1")
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDREMOTEWRITE/") and "/eu-west-1/aps/aws4_request" in auth
    assert "content-encoding" in auth.split("SignedHeaders=")[1] and "X-Amz-Date" in headers
    other = rw.sigv4_headers(url, b"another payload", dict(rw.HEADERS), "eu-west-1")
    assert other["Authorization"] != auth  # the payload is signed


@pytest.mark.parametrize("url", ["ftp://prometheus/api/v1/write", "prometheus:9090/api/v1/write", "http:///api/v1/write"])
def test_a_remote_write_url_that_is_not_http_fails_naming_the_setting(url: str) -> None:
    with pytest.raises(ValidationError, match="metrics_remote_write_url"):
        Settings(metrics_remote_write_url=url)


def test_no_url_no_writer_and_blank_is_none() -> None:
    assert rw.RemoteWriter.from_settings(Settings(metrics_remote_write_url="  ")) is None
