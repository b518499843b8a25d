"""Prometheus remote write (protocol 1.0) of a prometheus-client registry: how the API in AWS Lambda reports.

Nothing can scrape a Lambda function, so the API's handler (``lambda/handler.py``) writes its default registry
(the request histogram, auth failures, rate-limit refusals, Ray submission failures of
:mod:`app.monitoring.metrics`) to ``SFMLOPS_METRICS_REMOTE_WRITE_URL`` itself: on AWS, the Amazon Managed Service
for Prometheus workspace's ``.../api/v1/remote_write`` (Terraform sets it; the request is SigV4-signed for the
service ``aps`` with the function role's credentials); anywhere else, any remote-write receiver, for example a
Prometheus started with ``--web.enable-remote-write-receiver`` (``.../api/v1/write``; the local stack's is).

What is sent: a ``WriteRequest`` (the protocol's protobuf, its three messages built here from a descriptor rather
than generated code), snappy-compressed in the block format (cramjam), one sample per series at the time of the
write, labelled ``job="sfmlops_api"`` (the local scrape job's name, so the same rules apply) and
``instance="lambda/<function>/<container>"``: each execution environment has its own cumulative counters, and
``sum(rate(...))`` across instances is what the rules compute. Writes happen at the end of an invocation when
``SFMLOPS_METRICS_REMOTE_WRITE_INTERVAL_S`` has passed since the last one (and on a container's first
invocation), so an invocation pays for at most one write every interval; the figures of a container's last
interval before Lambda reclaims it are not written. A failed write is logged and never fails the request.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry

    from app.config import Settings

log = logging.getLogger(__name__)

#: The headers remote write 1.0 requires.
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "User-Agent": "sfmlops-remote-write/1.0",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@lru_cache(maxsize=1)
def message_classes() -> dict[str, Any]:
    """The protocol's ``WriteRequest``, ``TimeSeries``, ``Label`` and ``Sample`` (prometheus/prompb types.proto and
    remote.proto, the fields a writer uses), in a descriptor pool of their own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    fields: dict[str, list[tuple[str, int, Any, Any, str | None]]] = {
        "Label": [("name", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, None), ("value", 2, f.TYPE_STRING, f.LABEL_OPTIONAL, None)],
        "Sample": [("value", 1, f.TYPE_DOUBLE, f.LABEL_OPTIONAL, None), ("timestamp", 2, f.TYPE_INT64, f.LABEL_OPTIONAL, None)],
        "TimeSeries": [
            ("labels", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".prometheus.Label"),
            ("samples", 2, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".prometheus.Sample"),
        ],
        "WriteRequest": [("timeseries", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".prometheus.TimeSeries")],
    }
    proto = descriptor_pb2.FileDescriptorProto(name="sfmlops/prometheus_remote_write.proto", package="prometheus", syntax="proto3")
    for message, specs in fields.items():
        msg = proto.message_type.add(name=message)
        for name, number, kind, label, type_name in specs:
            msg.field.add(name=name, number=number, type=kind, label=label, **({"type_name": type_name} if type_name else {}))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}")) for name in fields}


def encode(registry: CollectorRegistry, labels: dict[str, str], timestamp_ms: int) -> tuple[bytes, int]:
    """``registry``'s samples as a serialized ``WriteRequest`` (every series with ``labels`` added, one sample at
    ``timestamp_ms``; NaN values are left out) and the number of series."""
    classes = message_classes()
    request = classes["WriteRequest"]()
    for family in registry.collect():
        for sample in family.samples:
            if math.isnan(sample.value):
                continue
            series = request.timeseries.add()
            every = {**sample.labels, **labels, "__name__": sample.name}
            for name in sorted(every):  # the protocol wants the labels sorted by name
                series.labels.add(name=name, value=str(every[name]))
            series.samples.add(value=float(sample.value), timestamp=timestamp_ms)
    return request.SerializeToString(), len(request.timeseries)


def compress(body: bytes) -> bytes:
    """Snappy's block format (what remote write 1.0 sends; not the framed stream format)."""
    import cramjam

    return bytes(cramjam.snappy.compress_raw(body))


def signs_sigv4(settings: Settings) -> bool:
    """Whether writes are SigV4-signed: the setting, else when the URL is an AWS endpoint (AMP)."""
    if settings.metrics_remote_write_sigv4 is not None:
        return settings.metrics_remote_write_sigv4
    host = urlsplit(settings.metrics_remote_write_url or "").hostname or ""
    return host.endswith(".amazonaws.com")


def sigv4_headers(url: str, body: bytes, headers: dict[str, str], region: str) -> dict[str, str]:
    """``headers`` plus the SigV4 ``Authorization`` (service ``aps``) from botocore's default credentials (the
    function role's, in Lambda)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import get_session

    credentials = get_session().get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials to sign the remote write with")
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "aps", region).add_auth(request)
    return dict(request.headers.items())


def container_instance() -> str:
    """The ``instance`` label of this process: the function's name and an id of this execution environment."""
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "local"
    return f"lambda/{function}/{uuid.uuid4().hex[:12]}"


class RemoteWriter:
    """Writes a registry (default: prometheus-client's, the API's) to the remote-write URL; the caller writes when
    :meth:`due` (see the module docstring). ``None`` from :meth:`from_settings` when no URL is configured."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None, job: str = "sfmlops_api") -> None:
        from prometheus_client import REGISTRY

        if not settings.metrics_remote_write_url:
            raise ValueError("RemoteWriter needs SFMLOPS_METRICS_REMOTE_WRITE_URL")
        self.settings = settings
        self.url = settings.metrics_remote_write_url
        self.registry = registry if registry is not None else REGISTRY
        self.labels = {"job": job, "instance": container_instance()}
        self.sign = signs_sigv4(settings)
        self.interval_s = settings.metrics_remote_write_interval_s
        self._last: float | None = None  # monotonic time of the last write (None: not yet written)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteWriter | None:
        return cls(settings) if settings.metrics_remote_write_url else None

    def due(self) -> bool:
        """Whether the next write is due: none yet in this container, or the interval has passed."""
        return self._last is None or time.monotonic() - self._last >= self.interval_s

    def write(self) -> bool:
        """Write the registry now; False (logged) when the receiver refuses or cannot be reached."""
        import httpx

        with self._lock:
            self._last = time.monotonic()
            try:
                body, series = encode(self.registry, self.labels, int(time.time() * 1000))
                payload = compress(body)
                headers = dict(HEADERS)
                if self.sign:
                    headers = sigv4_headers(self.url, payload, headers, self.settings.aws_region)
                resp = httpx.post(self.url, content=payload, headers=headers, timeout=self.settings.metrics_push_timeout_s)
                if resp.status_code // 100 != 2:
                    raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - network, signing, HTTP errors: report, never fail the request
                log.warning("metrics remote write to %s failed: %s", self.url, exc)
                return False
            log.debug("metrics remote write: %d series to %s", series, self.url)
            return True
