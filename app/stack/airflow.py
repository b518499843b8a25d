"""Airflow 3 (api-server, scheduler, dag-processor, triggerer, as standalone runs them) from its own
virtualenv, against the local stack.

Airflow lives in ``.venv-airflow`` (``make airflow-setup``), never in ``.venv``: its pins come from
Airflow's constraints and clash with the main environment. The metadata database is SQLite under
``<state_dir>/airflow`` (standalone's default; enough for one scheduler with the LocalExecutor on one
machine). The DAG bundle is the repository's ``dags/`` (the ``dags-folder`` bundle); the DAGs reach the
stack through

* ``AIRFLOW_CONN_SFMLOPS_POSTGRES`` (the sales database) and ``AIRFLOW_CONN_SFMLOPS_API`` (the API base
  URL with the API key as password), rendered from the settings;
* ``SFMLOPS_DAG_*`` run-time settings (backend ``local``, project folder, table names) and every
  ``SFMLOPS_*`` setting, so that ``spark-submit`` and ``sfmlops forecast`` started by a task see the same
  stack as this process.

The REST API (``/api/v2``) authenticates through Airflow 3's simple auth manager: :func:`api_token`
exchanges the ``admin`` password (``<airflow_home>/simple_auth_manager_passwords.json``) for a JWT at
``POST /auth/token``. The health probe (``/api/v2/monitor/health``) needs no token.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from app.config import PROJECT_ROOT, settings_env
from app.stack.base import Service, StackError

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

AIRFLOW_VENV = PROJECT_ROOT / ".venv-airflow"
DAGS_FOLDER = PROJECT_ROOT / "dags"
STANDALONE_SCRIPT = PROJECT_ROOT / "app" / "stack" / "scripts" / "airflow-standalone.sh"
ADMIN_USER = "admin"
PASSWORDS_FILE = "simple_auth_manager_passwords.json"
#: the components whose health the api-server reports (all four must be healthy)
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def airflow_env(settings: Settings, airflow_home: str | None = None) -> dict[str, str]:
    """Environment of Airflow processes (the service, and ``dag.test()`` runs in tests) for ``settings``.

    Args:
        settings: The stack's settings.
        airflow_home: ``AIRFLOW_HOME``; default ``<state_dir>/airflow``.
    """
    s = settings
    home = airflow_home or str(s.state_dir / "airflow")
    api_conn = {"conn_type": "http", "host": s.api_base_url, "password": s.api_key.get_secret_value()}
    base_url = f"http://{s.bind_host}:{s.airflow_port}"
    return {
        **settings_env(s),
        **s.aws_env(),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # the LocalExecutor starts this many worker processes up front (default 32): size it for one machine
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # api-server: UI, REST API and the Execution API the task processes call, on loopback only
        "AIRFLOW__API__HOST": s.bind_host,
        "AIRFLOW__API__PORT": str(s.airflow_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # simple auth manager (Airflow 3's default): one admin user, password file written by the start script
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(Path(home) / PASSWORDS_FILE),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(s.airflow_port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(s.airflow_port + 2),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": s.bind_host,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(s.airflow_port + 3),
        "AIRFLOW_CONN_SFMLOPS_POSTGRES": s.pg_url(),
        "AIRFLOW_CONN_SFMLOPS_API": json.dumps(api_conn),
        "SFMLOPS_DAG_BACKEND": "local",
        "SFMLOPS_DAG_PROJECT_DIR": str(PROJECT_ROOT),
        "SFMLOPS_DAG_TABLE_SALES": s.table_sales,
        "SFMLOPS_DAG_TABLE_DEAD_LETTER": s.table_dead_letter,
        "SFMLOPS_DAG_TABLE_FORECASTS": s.table_forecasts,
        "SFMLOPS_DAG_TABLE_STORES": s.table_stores,
        "SFMLOPS_DAG_TABLE_TRAINING_JOBS": s.table_training_jobs,
        "SFMLOPS_DAG_FORECAST_DAYS": str(s.horizon_days),
        # DAG tasks push their outcome where the stack's jobs push (sfmlops_dag_utils/metrics.py)
        "SFMLOPS_DAG_PUSHGATEWAY_URL": (s.pushgateway_base_url if s.monitoring else None) or "off",
    }


def api_token(address: str, password_file: Path, timeout_s: float = 30) -> str:
    """A JWT for Airflow 3's REST API: ``POST {address}/auth/token`` with the admin user's password.

    Send it as ``Authorization: Bearer <token>`` (Airflow 2's basic auth is gone in Airflow 3).

    Raises:
        StackError: the password file is missing or the api-server refused the password.
    """
    try:
        password = json.loads(password_file.read_text())[ADMIN_USER]
    except (OSError, ValueError, KeyError) as exc:
        raise StackError(f"airflow: no {ADMIN_USER} password in {password_file} ({exc}); start it with `sfmlops up --with-airflow`") from exc
    request = urllib.request.Request(
        f"{address}/auth/token", data=json.dumps({"username": ADMIN_USER, "password": password}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # loopback
            return str(json.loads(resp.read())["access_token"])
    except urllib.error.HTTPError as exc:
        raise StackError(f"airflow: {address}/auth/token refused user {ADMIN_USER}: {exc.code} {exc.read()[:200]!r}") from exc


class Airflow(Service):
    """Airflow 3's api-server (``bind_host:airflow_port``), scheduler, dag-processor and triggerer, as
    ``airflow standalone`` runs them but without the log servers (``app/stack/scripts/airflow-standalone.sh``)."""

    name = "airflow"
    start_timeout = 300.0  # the first start migrates the metadata database
    stop_timeout = 30.0

    def ports(self) -> list[int]:
        return [self.settings.airflow_port]

    @property
    def address(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.airflow_port}"

    @property
    def airflow_home(self):  # Path
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

    @property
    def password_file(self) -> Path:
        """The simple auth manager's passwords (``{"admin": "..."}``), written at the first start."""
        return self.airflow_home / PASSWORDS_FILE

    def token(self) -> str:
        """A REST API token of the admin user (see :func:`api_token`)."""
        return api_token(self.address, self.password_file)

    def healthy(self) -> bool:
        # Airflow 3: /api/v2/monitor/health (no auth) reports each component; all four must be healthy
        with urllib.request.urlopen(f"{self.address}/api/v2/monitor/health", timeout=3) as resp:  # loopback
            body = json.loads(resp.read())
        return all((body.get(part) or {}).get("status") == "healthy" for part in COMPONENTS)


#: Lines the weekly DAG's tasks print (``sales_train_weekly``): the champion report and the forecast check.
DAG_REPORT_PATTERNS = {
    "champion": r"(new model v\S+ (?:is the champion|stays challenger).*|the training job reported no champion.*)$",
    "forecast_coverage": r"forecast coverage: (.*)$",
}


def dag_report(log_text: str) -> dict[str, str | None]:
    """The report lines of a ``dags test`` log (each task's own print: later lines repeat it in return values)."""
    import re

    found = {name: re.findall(pattern, log_text, flags=re.M) for name, pattern in DAG_REPORT_PATTERNS.items()}
    return {name: (hits[0].strip() if hits else None) for name, hits in found.items()}


def dags_test(
    settings: Settings, dag_id: str, log_path: Path, env: dict[str, str] | None = None, timeout_s: float = 4 * 3600
) -> int:
    """Run one DAG once (``airflow db migrate`` then ``airflow dags test DAG_ID`` from ``.venv-airflow``); returns its
    exit code (124 on timeout). Airflow 3 runs ``dag.test()`` in-process against the metadata DB, needs no
    api-server, and exits non-zero when the run fails. Output goes to ``log_path``.

    Args:
        settings: The stack (connections, API, local backend: :func:`airflow_env`).
        dag_id: The DAG.
        log_path: Where the output goes.
        env: Extra variables over :func:`airflow_env` (e.g. ``SFMLOPS_DAG_*``).
        timeout_s: Stop the run after this long.

    Raises:
        StackError: ``.venv-airflow`` is missing.
    """
    import subprocess

    airflow = AIRFLOW_VENV / "bin" / "airflow"
    if not airflow.exists():
        raise StackError(f"{airflow} is missing: run `make airflow-setup` (or `make setup`)")
    run_env = {**os.environ, **airflow_env(settings), **(env or {})}
    run_env["PATH"] = os.pathsep.join([str(airflow.parent), os.environ.get("PATH", "")])
    Path(run_env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        subprocess.run([str(airflow), "db", "migrate"], env=run_env, cwd=PROJECT_ROOT, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
        try:
            return subprocess.run([str(airflow), "dags", "test", dag_id], env=run_env, cwd=PROJECT_ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout_s, check=False).returncode
        except subprocess.TimeoutExpired:
            return 124
