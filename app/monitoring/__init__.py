"""Monitoring: every metric name (``metrics``) and the exporter reading Postgres and Kafka (``exporter``).

``monitoring/`` at the repository root holds the Prometheus / Alertmanager configuration and the alert rules;
``monitoring/README.md`` lists every metric with its meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


class _NoIngestMetrics:
    """Stand-in where prometheus-client is not installed (an EMR image without it): records nothing."""

    def batch(self, *args: Any) -> bool:
        return False

    def progress(self, *args: Any) -> bool:
        return False

    def push(self) -> bool:
        return False


def ingest_metrics(settings: Settings, topic: str) -> Any:
    """The streaming driver's :class:`app.monitoring.metrics.IngestMetrics` (a no-op without prometheus-client)."""
    try:
        from app.monitoring.metrics import IngestMetrics
    except ImportError:
        return _NoIngestMetrics()
    return IngestMetrics(settings, topic)
