"""Monitoring services of the local stack (`sfmlops up --with-monitoring`): Prometheus, Alertmanager and the
Pushgateway from Debian's packages, prometheus-postgres-exporter (Debian) and the sfmlops exporter.

Everything binds ``settings.bind_host``. Configuration is rendered from ``monitoring/*.yml`` (``${name}``
placeholders) into ``<state_dir>/monitoring/``; the rules are read from ``monitoring/rules/`` directly.
Data: ``<state_dir>/monitoring/{prometheus,alertmanager}/`` and the Pushgateway's persistence file there.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from app.config import PROJECT_ROOT
from app.stack.base import Service, StackError, http_ok

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

MONITORING_DIR = PROJECT_ROOT / "monitoring"
RULES_DIR = MONITORING_DIR / "rules"
#: Debian's package of each binary (``make system-deps`` installs them).
PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
}


def binary(name: str) -> str:
    """Path of a monitoring binary, or StackError naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} is not installed: run `make system-deps` (Debian package {PACKAGES[name]})")
    return path


def config_dir(settings: Settings) -> Path:
    return settings.state_dir / "monitoring"


def render(template: Path, target: Path, values: dict[str, str]) -> Path:
    """Fill ``template``'s ``${name}`` placeholders (every one must be given) into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    text = Template(template.read_text()).substitute(values)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target


def _host(settings: Settings, port: int) -> str:
    return f"{settings.bind_host}:{port}"


def _hostport(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def prometheus_values(settings: Settings) -> dict[str, str]:
    """The placeholders of ``monitoring/prometheus.yml``."""
    from app.stack.ray import RayHead

    s = settings
    interval = s.prometheus_scrape_interval_s
    return {
        "scrape_interval": f"{interval}s",
        "scrape_timeout": f"{max(1, min(interval, 10))}s",
        "rules_dir": str(RULES_DIR),
        "alertmanager": _host(s, s.alertmanager_port),
        "prometheus": _host(s, s.prometheus_port),
        "api": _hostport(s.api_base_url),
        "exporter": _host(s, s.exporter_port),
        "pushgateway": _host(s, s.pushgateway_port),
        "postgres_exporter": _host(s, s.postgres_exporter_port),
        "ray_sd_file": f"{RayHead(s).temp_dir}/prom_metrics_service_discovery.json",
    }


class Prometheus(Service):
    name = "prometheus"
    start_timeout = 60.0

    def ports(self) -> list[int]:
        return [self.settings.prometheus_port]

    @property
    def address(self) -> str:
        return self.settings.prometheus_base_url

    @property
    def config_file(self) -> Path:
        return config_dir(self.settings) / "prometheus.yml"

    def prepare(self) -> None:
        render(MONITORING_DIR / "prometheus.yml", self.config_file, prometheus_values(self.settings))
        (config_dir(self.settings) / "prometheus").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        s = self.settings
        return [
            binary("prometheus"),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={config_dir(s) / 'prometheus'}",
            "--storage.tsdb.retention.time=15d",
            f"--web.listen-address={_host(s, s.prometheus_port)}",
            "--web.enable-lifecycle",  # POST /-/reload after a rules change
            # POST /api/v1/write: what the API in Lambda writes its metrics to (app/monitoring/remote_write.py),
            # here as AMP on AWS; the loopback bind is its guard, as for the lifecycle routes
            "--web.enable-remote-write-receiver",
        ]

    def expected_cmd_fragment(self) -> str:
        return f"--web.listen-address={_host(self.settings, self.settings.prometheus_port)}"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/-/ready")


class Alertmanager(Service):
    name = "alertmanager"

    def ports(self) -> list[int]:
        return [self.settings.alertmanager_port]

    @property
    def address(self) -> str:
        return f"http://{_host(self.settings, self.settings.alertmanager_port)}"

    @property
    def config_file(self) -> Path:
        return config_dir(self.settings) / "alertmanager.yml"

    def prepare(self) -> None:
        s = self.settings
        folder = config_dir(s)
        folder.mkdir(parents=True, exist_ok=True)
        token = folder / "alert-webhook-token"
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the bearer token, never in argv
        with os.fdopen(fd, "w") as fh:
            fh.write(s.alert_webhook_token.get_secret_value())
        render(MONITORING_DIR / "alertmanager.yml", self.config_file, {
            "api": s.api_base_url.rstrip("/"),
            "token_file": str(token),
            "table_alerts": s.table_alerts,
            "group_wait": "10s",
            "group_interval": "1m",
        })
        (folder / "alertmanager").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        s = self.settings
        return [
            binary("prometheus-alertmanager"),
            f"--config.file={self.config_file}",
            f"--storage.path={config_dir(s) / 'alertmanager'}",
            f"--web.listen-address={_host(s, s.alertmanager_port)}",
            "--cluster.listen-address=",  # no HA gossip listener (it would bind 0.0.0.0:9094)
        ]

    def expected_cmd_fragment(self) -> str:
        return f"--web.listen-address={_host(self.settings, self.settings.alertmanager_port)}"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/-/ready")


class Pushgateway(Service):
    name = "pushgateway"

    def ports(self) -> list[int]:
        return [self.settings.pushgateway_port]

    @property
    def address(self) -> str:
        return f"http://{_host(self.settings, self.settings.pushgateway_port)}"

    def prepare(self) -> None:
        config_dir(self.settings).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        s = self.settings
        return [
            binary("prometheus-pushgateway"),
            f"--web.listen-address={_host(s, s.pushgateway_port)}",
            f"--persistence.file={config_dir(s) / 'pushgateway.db'}",  # pushes survive a restart
            "--persistence.interval=1m",
        ]

    def expected_cmd_fragment(self) -> str:
        return f"--web.listen-address={_host(self.settings, self.settings.pushgateway_port)}"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/-/ready")


class Exporter(Service):
    """The sfmlops exporter (:mod:`app.monitoring.exporter`): forecast freshness, ledger, jobs, accuracy, Kafka."""

    name = "exporter"

    def ports(self) -> list[int]:
        return [self.settings.exporter_port]

    @property
    def address(self) -> str:
        return f"http://{_host(self.settings, self.settings.exporter_port)}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app.monitoring.exporter"]

    def environment(self) -> dict[str, str]:
        return {"SFMLOPS_EXPORTER_PORT": str(self.settings.exporter_port), "SFMLOPS_BIND_HOST": self.settings.bind_host}

    def expected_cmd_fragment(self) -> str:
        return "app.monitoring.exporter"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/metrics", timeout=15)


class PostgresExporter(Service):
    """prometheus-postgres-exporter (Debian 0.11) as the application role; the DSN goes through the environment."""

    name = "postgres-exporter"

    def ports(self) -> list[int]:
        return [self.settings.postgres_exporter_port]

    @property
    def address(self) -> str:
        return f"http://{_host(self.settings, self.settings.postgres_exporter_port)}"

    def command(self) -> list[str]:
        s = self.settings
        return [binary("prometheus-postgres-exporter"), f"--web.listen-address={_host(s, s.postgres_exporter_port)}"]

    def environment(self) -> dict[str, str]:
        return {"DATA_SOURCE_NAME": self.settings.pg_url() + "?sslmode=disable"}

    def expected_cmd_fragment(self) -> str:
        return f"--web.listen-address={_host(self.settings, self.settings.postgres_exporter_port)}"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/metrics", timeout=10)


#: Start order within the monitoring wave does not matter (each only needs its config); Prometheus copes
#: with targets that come up later.
MONITORING: list[type[Service]] = [Pushgateway, Exporter, PostgresExporter, Alertmanager, Prometheus]
