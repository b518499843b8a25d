"""The embedded local stack: every AWS part's stand-in, started and stopped by the project itself.

Only the CLI and test fixtures import this package.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from app.stack.airflow import Airflow
from app.stack.api import ApiServer, UiServer
from app.stack.base import PortInUseError, Service, ServiceStatus, StackError
from app.stack.emulator import Emulator
from app.stack.kafka import Kafka
from app.stack.mlflow import MLflow
from app.stack.postgres import Postgres
from app.stack.prometheus import MONITORING
from app.stack.ray import RayHead

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

__all__ = ["PortInUseError", "Service", "ServiceStatus", "StackError", "services", "up", "down", "status"]

#: Start order; services in the same wave start in parallel.
WAVES: list[list[type[Service]]] = [[Emulator, Postgres, Kafka, RayHead], [MLflow]]


def _waves(settings: Settings, with_airflow: bool, with_monitoring: bool = False) -> list[list[type[Service]]]:
    """Start waves; Airflow joins as the last wave when asked for or already running."""
    waves = list(WAVES)
    # The API and UI servers join when `sfmlops demo` (or a user) started them, so `down` stops them too.
    for cls in (ApiServer, UiServer):
        if cls(settings).is_running():
            waves.append([cls])
    # Monitoring (Prometheus, Alertmanager, Pushgateway, exporters) when asked for, configured, or running.
    if with_monitoring or settings.monitoring or any(cls(settings).is_running() for cls in MONITORING):
        waves.append(list(MONITORING))
    if with_airflow or Airflow(settings).is_running():
        waves.append([Airflow])
    return waves


def services(settings: Settings, with_airflow: bool = False, with_monitoring: bool = False) -> list[Service]:
    """Every service of the stack, in start order."""
    return [cls(settings) for wave in _waves(settings, with_airflow, with_monitoring) for cls in wave]


def up(
    settings: Settings,
    on_event: Callable[[str, str, float], None] | None = None,
    with_airflow: bool = False,
    with_monitoring: bool = False,
) -> dict[str, str]:
    """Start (or reuse) every service and wait until all are healthy.

    Args:
        settings: The settings.
        on_event: Called as ``on_event(service, outcome, seconds)`` when a service is ready.
        with_airflow: Also start Airflow standalone (``.venv-airflow``) after the others.
        with_monitoring: Also start Prometheus, Alertmanager, the Pushgateway and the exporters
            (``app.stack.prometheus``; also when ``SFMLOPS_MONITORING=true``).

    Returns:
        ``{service: "started" | "reused"}``.

    Raises:
        StackError: naming the service and why (port taken, exited, unhealthy).
    """
    for folder in (settings.state_dir, settings.logs_dir, settings.run_dir, settings.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, str] = {}
    for wave in _waves(settings, with_airflow, with_monitoring):
        members = [cls(settings) for cls in wave]
        # Refuse early, before starting anything of this wave, if a port is held by a stranger.
        for svc in members:
            if not svc.is_running():
                svc.check_ports()

        def start(svc: Service) -> tuple[str, str, float]:
            t0 = time.monotonic()
            result = svc.start()
            return svc.name, result, time.monotonic() - t0

        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            futures = [pool.submit(start, svc) for svc in members]
            errors = []
            for fut in futures:
                try:
                    name, result, seconds = fut.result()
                    outcome[name] = result
                    if on_event:
                        on_event(name, result, seconds)
                except Exception as exc:  # noqa: BLE001 - collect every failure of the wave
                    errors.append(exc)
            if errors:
                if len(errors) == 1 and isinstance(errors[0], StackError):
                    raise errors[0]
                raise StackError("; ".join(str(e) for e in errors))
    return outcome


def down(settings: Settings) -> list[str]:
    """Stop, in reverse order, exactly the services this stack started. Returns their names."""
    stopped = []
    for svc in reversed(services(settings)):
        if svc.stop():
            stopped.append(svc.name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """Health, pid and resident memory of every service."""
    return [svc.status() for svc in services(settings)]
