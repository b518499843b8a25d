"""Airflow (scheduler, triggerer, webserver, as standalone runs them) from its own virtualenv, against the local stack.

Airflow lives in ``.venv-airflow`` (``make airflow-setup``), never in ``.venv``: its pins come from
Airflow's constraints file and clash with the main environment. The metadata database is SQLite under
``<state_dir>/airflow`` (standalone's default; enough for one scheduler on one machine). The DAGs
folder is the repository's ``dags/``; the DAGs reach the stack through

* ``AIRFLOW_CONN_SFMLOPS_POSTGRES`` (the sales database) and ``AIRFLOW_CONN_SFMLOPS_API`` (the API base
  URL with the API key as password), rendered from the settings;
* ``SFMLOPS_DAG_*`` run-time settings (backend ``local``, project folder, table names) and every
  ``SFMLOPS_*`` setting, so that ``spark-submit`` and ``sfmlops forecast`` started by a task see the same
  stack as this process.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import TYPE_CHECKING

from app.config import PROJECT_ROOT, settings_env
from app.stack.base import Service, StackError

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

AIRFLOW_VENV = PROJECT_ROOT / ".venv-airflow"
DAGS_FOLDER = PROJECT_ROOT / "dags"
STANDALONE_SCRIPT = PROJECT_ROOT / "app" / "stack" / "scripts" / "airflow-standalone.sh"


def airflow_env(settings: "Settings", airflow_home: str | None = None) -> dict[str, str]:
    """Environment of Airflow processes (the service, and ``dag.test()`` runs in tests) for ``settings``.

    Args:
        settings: The stack's settings.
        airflow_home: ``AIRFLOW_HOME``; default ``<state_dir>/airflow``.
    """
    s = settings
    home = airflow_home or str(s.state_dir / "airflow")
    api_conn = {"conn_type": "http", "host": s.api_base_url, "password": s.api_key.get_secret_value()}
    return {
        **settings_env(s),
        **s.aws_env(),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__DATABASE_ACCESS_ISOLATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": s.bind_host,
        "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(s.airflow_port),
        "AIRFLOW__WEBSERVER__WORKERS": "1",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        # the REST API answers local scripts with the admin user's password (webserver on loopback only)
        "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(s.airflow_port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(s.airflow_port + 2),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(s.airflow_port + 3),
        "AIRFLOW_CONN_SFMLOPS_POSTGRES": s.pg_url(),
        "AIRFLOW_CONN_SFMLOPS_API": json.dumps(api_conn),
        "SFMLOPS_DAG_BACKEND": "local",
        "SFMLOPS_DAG_PROJECT_DIR": str(PROJECT_ROOT),
        "SFMLOPS_DAG_TABLE_SALES": s.table_sales,
        "SFMLOPS_DAG_TABLE_DEAD_LETTER": s.table_dead_letter,
        "SFMLOPS_DAG_TABLE_FORECASTS": s.table_forecasts,
        "SFMLOPS_DAG_TABLE_STORES": s.table_stores,
        "SFMLOPS_DAG_FORECAST_DAYS": str(s.horizon_days),
    }


class Airflow(Service):
    """Airflow's scheduler, triggerer and webserver (``bind_host:airflow_port``), as ``airflow standalone``
    runs them but without the log servers (``app/stack/scripts/airflow-standalone.sh``)."""

    name = "airflow"
    start_timeout = 300.0  # the first start migrates the metadata database
    stop_timeout = 30.0

    def ports(self) -> list[int]:
        return [self.settings.airflow_port]

    @property
    def address(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.airflow_port}"

    @property
    def airflow_home(self):  # noqa: ANN201 - Path
        return self.settings.state_dir / "airflow"

    def prepare(self) -> None:
        if not (AIRFLOW_VENV / "bin" / "airflow").exists():
            raise StackError(f"airflow: {AIRFLOW_VENV}/bin/airflow is missing; run `make airflow-setup` first")
        self.airflow_home.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        # standalone's components, but without the log servers that bind every interface (see the script)
        return ["bash", str(STANDALONE_SCRIPT)]

    def expected_cmd_fragment(self) -> str:
        return str(STANDALONE_SCRIPT)

    def environment(self) -> dict[str, str]:
        # standalone starts its components as `airflow <component>`: the venv's bin must come first on PATH
        path = os.pathsep.join([str(AIRFLOW_VENV / "bin"), os.environ.get("PATH", "")])
        return {**airflow_env(self.settings, str(self.airflow_home)), "PATH": path}

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.address}/health", timeout=3) as resp:  # noqa: S310 - loopback
            body = json.loads(resp.read())
        return all(body.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))
