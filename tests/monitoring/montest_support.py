"""A private monitoring stack for the tests: the project's own Prometheus, Alertmanager, Pushgateway and exporter
services (``app.stack.prometheus``) under a tmp ``SFMLOPS_STATE_DIR`` on free loopback ports, the real API in
uvicorn (thread) on a free port, and tables of their own (``m<tag>_*``) on the running stack's Postgres.

The user's stack is left as it was: nothing of theirs is read for assertions or written; the tables, the
Kafka topic and the processes are removed afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from isolated_support import drop_isolated, isolated_names

from app.config import Settings
from app.stack.base import free_port


def running_base() -> Settings:
    """Settings of the running local stack; these tests need only its Postgres and Kafka (not MiniStack, MLflow or
    Ray), so they check those two instead of starting the whole stack."""
    from app.config import get_settings
    from app.db import connect
    from app.stack.base import tcp_open

    get_settings.cache_clear()
    s = get_settings()
    try:
        connect(s, connect_timeout=5).close()
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        pytest.fail(f"PostgreSQL of the local stack is not reachable ({exc}); run `sfmlops up`")
    if not tcp_open(s.bind_host, s.kafka_port):
        pytest.fail(f"Kafka of the local stack is not reachable on port {s.kafka_port}; run `sfmlops up`")
    return s


def isolated_settings(base: Settings, state_dir: Path, **extra: Any) -> tuple[Settings, dict[str, str]]:
    """Settings whose every table, the model name, the topic, the state dir and the monitoring/API ports are
    this run's own; and the ``SFMLOPS_*`` variables that give a child process the same settings."""
    tag = uuid.uuid4().hex[:8]
    update: dict[str, Any] = isolated_names("m")
    update.update(
        model_name=f"test-mon-{tag}",
        kafka_topic=f"mon_{tag}",
        state_dir=state_dir,
        api_port=free_port(),
        api_url=None,
        prometheus_port=free_port(),
        prometheus_url=None,
        alertmanager_port=free_port(),
        pushgateway_port=free_port(),
        pushgateway_url=None,
        exporter_port=free_port(),
        postgres_exporter_port=free_port(),
        prometheus_scrape_interval_s=1,
        forecast_coverage_days=7,
        **extra,
    )
    env = {f"SFMLOPS_{k.upper()}": str(v) for k, v in update.items() if v is not None}
    for k in ("api_url", "prometheus_url", "pushgateway_url"):
        env[f"SFMLOPS_{k.upper()}"] = ""
    return base.model_copy(update=update), env


class ApiThread:
    """The real API (``create_app``) under uvicorn in a thread on ``settings.api_port``."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from app.api.main import create_app

        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail(f"uvicorn did not start on port {settings.api_port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Prom:
    """Prometheus' HTTP API."""

    url: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def query(self, promql: str) -> list[dict[str, Any]]:
        resp = self.client.get(f"{self.url}/api/v1/query", params={"query": promql})
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait(self, promql: str, timeout_s: float = 90) -> list[dict[str, Any]]:
        """The first non-empty result of ``promql`` (fails naming the query after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                targets = self.client.get(f"{self.url}/api/v1/targets").json()["data"]["activeTargets"]
                health = [(t["labels"].get("job"), t["health"], t.get("lastError")) for t in targets]
                pytest.fail(f"no series for {promql!r} after {timeout_s:.0f}s; targets: {json.dumps(health)}")
            time.sleep(0.5)


def value(result: list[dict[str, Any]]) -> float:
    """The value of a single-series query result."""
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def env_context(env: dict[str, str]) -> pytest.MonkeyPatch:
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])))
    return mp


LAST_DAY = dt.date(2015, 6, 13)


@dataclass
class Monitored:
    settings: Settings
    prom: Prom
    api_url: str
    key: str
    services: list = field(default_factory=list)


def _seed(settings: Settings) -> None:
    """Three stores with actuals to LAST_DAY; stores 1 and 2 forecast for the next 7 days, store 3 for only 3;
    two ledger batches (1,000 records in, 50 rejected); jobs: one FAILED, two SUCCEEDED; live accuracy of
    version 1 at twice its backtest RMSPE on its 3 newest days (drift)."""
    from app.db import transaction

    s = settings
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {s.table_stores} (store, store_type, assortment, promo2) VALUES (%s, 'a', 'a', 0)", [(1,), (2,), (3,)]
        )
        cur.executemany(
            f"INSERT INTO {s.table_sales} (store, date, day_of_week, sales, customers, open, promo, state_holiday,"
            " school_holiday) VALUES (%s, %s, %s, 5000, 500, 1, 0, '0', 0)",
            [(st, LAST_DAY, LAST_DAY.isoweekday()) for st in (1, 2, 3)],
        )
        rows = [
            (s.model_name, "1", st, LAST_DAY + dt.timedelta(days=k), 5000.0, 4000.0, 6000.0, "run-1")
            for st, days in ((1, 7), (2, 7), (3, 3)) for k in range(1, days + 1)
        ]
        cur.executemany(
            f"INSERT INTO {s.table_forecasts} (model_name, model_version, store, date, value, lower, upper, run_id, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now() - interval '2 hours')",
            rows,
        )
        cur.executemany(
            f"INSERT INTO {s.table_ledger} (query_id, batch_id, topic, rows_in, rows_valid, rows_rejected, rows_upserted,"
            " started_at) VALUES ('q', %s, %s, 500, 475, 25, 475, now())",
            [(0, s.kafka_topic), (1, s.kafka_topic)],
        )
        cur.executemany(  # version 1 scored 0.20 live on its last 3 days vs 0.10 backtested: drift
            f"INSERT INTO {s.table_accuracy} (model_name, model_version, date, bucket, rows, rows_scored, rmspe, backtest_rmspe)"
            " VALUES (%s, '1', %s, %s, 10, 10, %s, 0.10)",
            [(s.model_name, LAST_DAY - dt.timedelta(days=k), b, r) for k in range(3) for b, r in (("1-7", 0.2), ("8-14", 0.2))],
        )
        cur.execute(f"INSERT INTO {s.table_api_clients} (name) VALUES ('mon-jobs') RETURNING id")
        client = cur.fetchone()[0]
        cur.executemany(
            f"INSERT INTO {s.table_training_jobs} (id, client_id, kind, entrypoint, ray_submission_id, state, request_hash,"
            " started_at, finished_at) VALUES (%s, %s, 'all', 'x', %s, %s, repeat('0', 64), now() - interval '300 seconds', now())",
            [(f"j{i}", client, f"j{i}", state) for i, state in enumerate(("FAILED", "SUCCEEDED", "SUCCEEDED"))],
        )


@contextmanager
def monitoring_stack(base: Settings, state_dir: Path) -> Iterator[Monitored]:
    """The private monitoring stack over seeded tables of its own (see the module docstring); removed on exit."""
    from app.api import db as api_db
    from app.api.auth import issue_key
    from app.db import apply_migrations
    from app.produce import ensure_topic
    from app.stack.prometheus import MONITORING

    settings, env = isolated_settings(base, state_dir)
    mp = env_context(env)
    services = [cls(settings) for cls in MONITORING]
    api = None
    try:
        apply_migrations(settings)
        _seed(settings)
        ensure_topic(settings, settings.kafka_topic, partitions=2)
        key = issue_key(settings, "mon-test")
        api = ApiThread(settings)
        for svc in services:
            svc.start()
        yield Monitored(settings, Prom(settings.prometheus_base_url), settings.api_base_url, key, services)
    finally:
        for svc in reversed(services):
            svc.stop()
        if api is not None:
            api.stop()
        api_db.close_pools()
        mp.undo()
        drop_isolated(settings)
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
        try:
            admin.delete_topics([settings.kafka_topic])
        except Exception:  # noqa: BLE001 - never created
            pass
        admin.close()
