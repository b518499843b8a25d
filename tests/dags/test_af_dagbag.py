"""DagBag tests: every file parses, no lookups at parse time, ids, schedules and retries as documented,
Airflow 3 only (Task SDK imports, no metadata-database access, nothing from the ``app`` package)."""

from __future__ import annotations

import ast
import re
import socket
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import sfmlops_dag_utils

DAGS_DIR = Path(sfmlops_dag_utils.__file__).resolve().parents[1]  # the bundle's root (pytest's pythonpath)

EXPECTED = {
    # dag id: (schedule, retries, retry_delay, wording in the DAG doc) - as documented in dags/README.md and the DAG docstrings
    "sales_ingest_daily": ("0 2 * * *", 2, timedelta(minutes=5), "daily at 02:00 UTC"),
    "sales_train_weekly": ("0 4 * * 0", 1, timedelta(minutes=10), "Sundays at 04:00 UTC"),
}


def test_every_file_parses_without_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set(EXPECTED)


def test_file_name_equals_dag_id(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id
    on_disk = {p.stem for p in DAGS_DIR.glob("*.py")}
    assert on_disk == set(EXPECTED), "every top-level .py file in dags/ is a DAG named after its file"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_schedule_retries_and_concurrency(dagbag, dag_id: str) -> None:
    schedule, retries, delay, documented = EXPECTED[dag_id]
    dag = dagbag.dags.__getitem__(dag_id)
    assert dag.schedule == schedule
    assert type(dag.timetable).__name__ == "CronTriggerTimetable" and dag.timetable.expression == schedule
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.default_args["retries"] == retries
    assert dag.default_args["retry_delay"] == delay
    assert documented in dag.doc_md
    for task in dag.tasks:
        assert task.retries in (0, retries), f"{dag_id}.{task.task_id} retries={task.retries}"


def test_no_variable_connection_or_network_use_at_parse_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models import Connection as ConnectionModel
    from airflow.models import Variable as VariableModel
    from airflow.sdk import BaseHook, Connection, Variable

    from sfmlops_dag_utils import config as dag_config

    calls: list[str] = []

    def forbid(name):
        def _raise(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called while parsing the DAG files")

        return _raise

    monkeypatch.setattr(Variable, "get", forbid("Variable.get"))
    monkeypatch.setattr(VariableModel, "get", forbid("models.Variable.get"))
    monkeypatch.setattr(Connection, "get", forbid("Connection.get"))
    monkeypatch.setattr(ConnectionModel, "get_connection_from_secrets", forbid("models.Connection.get_connection_from_secrets"))
    monkeypatch.setattr(BaseHook, "get_connection", forbid("BaseHook.get_connection"))
    monkeypatch.setattr(socket.socket, "connect", forbid("socket.connect"))
    monkeypatch.setattr(dag_config, "_config_option", forbid("config._config_option"))  # the [sfmlops] section
    bag = BundleDagBag(dag_folder=str(DAGS_DIR), bundle_path=DAGS_DIR, bundle_name="dags-folder")
    assert bag.import_errors == {}
    assert calls == []


#: Modules a DAG-bundle file may import (MWAA ships the bundle with Airflow, the providers of
#: dags/requirements.txt and their dependencies; the ``app`` package is not there).
_ALLOWED_ROOTS = {"airflow", "sfmlops_dag_utils", "pendulum", "requests", "httpx"}
#: Airflow modules that reach the metadata database (or are Airflow 2 paths the Task SDK replaces).
_FORBIDDEN = ("airflow.models", "airflow.settings", "airflow.utils.session", "airflow.utils.db", "airflow.api",
              "airflow.hooks.base", "airflow.decorators", "airflow.sensors.base", "airflow.exceptions", "sqlalchemy")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_dag_bundle_imports_only_airflow_its_providers_and_its_helpers() -> None:
    """Every import in dags/ (module level and inside tasks): no ``app`` package (absent on MWAA), no
    metadata-database access (``airflow.models``, sessions, SQLAlchemy), Airflow 3's ``airflow.sdk`` for
    DAG, task, hooks, sensors, Variables and exceptions."""
    files = sorted(DAGS_DIR.rglob("*.py"))
    assert len(files) >= 8, files
    bad = []
    for path in files:
        for name in _imports(path):
            root = name.split(".")[0]
            if name.startswith(_FORBIDDEN) or not (root in _ALLOWED_ROOTS or root in sys.stdlib_module_names or root == "__future__"):
                bad.append(f"{path.relative_to(DAGS_DIR)}: {name}")
    assert bad == [], "DAG-bundle imports outside Airflow 3's SDK, the providers and the helpers: " + "; ".join(bad)
    for dag_file in ("sales_ingest_daily.py", "sales_train_weekly.py"):
        assert "airflow.sdk" in _imports(DAGS_DIR / dag_file), f"{dag_file} does not import airflow.sdk"


def test_the_daily_ingest_produces_the_asset_the_weekly_training_consumes(dagbag) -> None:
    from sfmlops_dag_utils.assets import FORECASTS, SALES

    daily = dagbag.dags["sales_ingest_daily"]
    weekly = dagbag.dags["sales_train_weekly"]
    assert daily.get_task("data_quality").outlets == [SALES]
    assert weekly.get_task("submit_training").inlets == [SALES]
    assert weekly.get_task("check_forecasts").outlets == [FORECASTS]
    # the weekly DAG stays on its cron schedule: not re-run by each daily asset event
    assert weekly.schedule == "0 4 * * 0" and not weekly.timetable.asset_condition


def test_branches_and_sensor_modes(dagbag) -> None:
    daily = dagbag.dags.__getitem__("sales_ingest_daily")
    assert daily.get_task("choose_backend").downstream_task_ids == {"ingest_local", "emr_job_spec"}
    assert daily.get_task("ingest_aws").deferrable is True
    assert daily.get_task("data_quality").trigger_rule == "none_failed_min_one_success"
    weekly = dagbag.dags.__getitem__("sales_train_weekly")
    for sensor_id in ("wait_for_training", "wait_for_forecast"):
        assert weekly.get_task(sensor_id).mode == "reschedule"
    assert weekly.get_task("check_forecasts").upstream_task_ids == {"batch_forecast", "wait_for_forecast"}


def test_requirements_match_the_installed_airflow() -> None:
    """dags/requirements.txt pins the constraints of the Airflow version this venv runs (= the MWAA target)."""
    from importlib.metadata import version

    import airflow

    text = (DAGS_DIR / "requirements.txt").read_text()
    constraint = re.search(r"constraints-(\d+\.\d+\.\d+)/constraints-(\d+\.\d+)\.txt", text)
    assert constraint, "dags/requirements.txt must start with the --constraint of the MWAA Airflow version"
    assert constraint.group(1) == airflow.__version__
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+)$", text, flags=re.M))
    assert {"apache-airflow-providers-amazon", "apache-airflow-providers-postgres", "apache-airflow-providers-http"} <= set(pins)
    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name}: requirements.txt pins {pinned}, .venv-airflow has {version(name)}"


def test_terraform_creates_the_mwaa_environment_on_the_airflow_version_of_this_venv() -> None:
    """The root variable and the orchestration module's default name the version .venv-airflow runs."""
    import airflow

    terraform = DAGS_DIR.parent / "terraform"
    for path, variable in ((terraform / "variables.tf", "mwaa_airflow_version"),
                           (terraform / "modules" / "orchestration" / "variables.tf", "airflow_version")):
        block = re.search(r'variable "' + variable + r'" \{(.*?)\n\}', path.read_text(), flags=re.S)
        assert block, f"{path}: no variable {variable}"
        default = re.search(r'default\s*=\s*"([^"]+)"', block.group(1))
        assert default and default.group(1) == airflow.__version__, f"{path}: {variable} default {default and default.group(1)}"


def test_run_config_names_a_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import run_config

    monkeypatch.setenv("SFMLOPS_DAG_BACKEND", "gcp")
    with pytest.raises(ValueError, match="SFMLOPS_DAG_BACKEND"):
        run_config()
    monkeypatch.setenv("SFMLOPS_DAG_BACKEND", "local")
    monkeypatch.setenv("SFMLOPS_DAG_MAX_DEAD_LETTERS", "many")
    with pytest.raises(ValueError, match="SFMLOPS_DAG_MAX_DEAD_LETTERS"):
        run_config()


def test_champion_report_wording() -> None:
    from sfmlops_dag_utils.reporting import champion_decision

    models = {"name": "sales-forecaster", "aliases": {"champion": "3", "challenger": "4"}}
    gate = {"decision": "challenger", "version": "4", "new_rmspe": 0.15, "champion_rmspe": 0.12, "previous_champion": "3"}
    lost = champion_decision({"gate": gate}, models)
    assert lost["decision"] == "challenger"
    assert "v4 stays challenger" in lost["summary"] and "0.1200" in lost["summary"]
    gate = {"decision": "champion", "version": "5", "new_rmspe": 0.11, "champion_rmspe": None, "previous_champion": None}
    won = champion_decision({"gate": gate}, models)
    assert "first champion" in won["summary"]
    assert champion_decision({}, models)["decision"] == "unknown"
    scoped = champion_decision({"gate": {"decision": "scope_champion", "alias": "champion-stores-abc", "scope": "stores-abc", "version": "6",
                                         "new_rmspe": 0.09, "champion_rmspe": None, "previous_champion": None}}, models)
    assert scoped["alias"] == "champion-stores-abc"
    assert scoped["summary"].startswith("new model v6 is the champion of scope stores-abc (alias champion-stores-abc) (RMSPE 0.0900, first champion)")


def test_training_and_forecast_requests_follow_the_run_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfmlops_dag_utils.config import run_config

    for name in ("STORES", "TRAINING_NEURAL", "TRAINING_LGBM_ROUNDS", "TRAINING_MAX_STEPS", "TRAINING_KIND", "FORECAST_DAYS"):
        monkeypatch.delenv(f"SFMLOPS_DAG_{name}", raising=False)
    cfg = run_config()
    assert cfg.training_request() == {"kind": "all"}
    assert cfg.forecast_request() == {"kind": "forecast", "days": 48}
    assert cfg.stores() is None
    monkeypatch.setenv("SFMLOPS_DAG_STORES", " 3, 1,2 ")
    monkeypatch.setenv("SFMLOPS_DAG_TRAINING_NEURAL", "false")
    monkeypatch.setenv("SFMLOPS_DAG_TRAINING_LGBM_ROUNDS", "120")
    monkeypatch.setenv("SFMLOPS_DAG_FORECAST_DAYS", "14")
    cfg = run_config()
    assert cfg.training_request() == {"kind": "all", "stores": [3, 1, 2], "neural": False, "lgbm_rounds": 120}
    assert cfg.forecast_request() == {"kind": "forecast", "days": 14, "stores": [3, 1, 2]}
    monkeypatch.setenv("SFMLOPS_DAG_TRAINING_NEURAL", "yes")
    monkeypatch.setenv("SFMLOPS_DAG_TRAINING_MAX_STEPS", "50")
    assert run_config().training_request() == {"kind": "all", "stores": [3, 1, 2], "lgbm_rounds": 120, "max_steps": 50}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STORES", "1,x", "SFMLOPS_DAG_STORES (or Variable sfmlops_stores) must be an integer, got 'x'"),
        ("STORES", "0", "SFMLOPS_DAG_STORES (or Variable sfmlops_stores) must be >= 1, got 0"),
        ("STORES", "4,4", "SFMLOPS_DAG_STORES (or Variable sfmlops_stores) repeats a store id"),
        ("TRAINING_NEURAL", "maybe", "SFMLOPS_DAG_TRAINING_NEURAL (or Variable sfmlops_training_neural) must be true or false"),
        ("TRAINING_LGBM_ROUNDS", "0", "SFMLOPS_DAG_TRAINING_LGBM_ROUNDS (or Variable sfmlops_training_lgbm_rounds) must be >= 1"),
    ],
)
def test_bad_training_options_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    from sfmlops_dag_utils.config import run_config

    monkeypatch.setenv(f"SFMLOPS_DAG_{name}", value)
    with pytest.raises(ValueError) as info:
        run_config()
    assert message in str(info.value)


def test_local_forecast_command_is_limited_to_the_stores(tmp_path: Path) -> None:
    from sfmlops_dag_utils.local import forecast_command

    cli = tmp_path / ".venv" / "bin" / "sfmlops"
    cli.parent.mkdir(parents=True)
    cli.write_text("")
    assert forecast_command(tmp_path, 7)[0] == [str(cli), "forecast", "--days", "7"]
    assert forecast_command(tmp_path, 7, [5, 2])[0] == [str(cli), "forecast", "--days", "7", "--stores", "5,2"]


def test_local_ingest_is_the_projects_own_cli() -> None:
    """One spark-submit builder: the DAG runs `sfmlops ingest` (app.ingest.build_command), passing its extra options."""
    import subprocess

    from sfmlops_dag_utils.local import ingest_command, ingest_summary

    root = DAGS_DIR.parent
    argv, _ = ingest_command(root, "--max-offsets-per-trigger 500")
    assert argv == [str(root / ".venv" / "bin" / "sfmlops"), "ingest", "--trigger", "available-now", "--max-offsets-per-trigger", "500"]
    usage = subprocess.run([*argv[:2], "--help"], capture_output=True, text=True, check=True).stdout
    assert "--trigger" in usage and "--max-offsets-per-trigger" in usage
    assert ingest_summary(["batch 0: 5 rows", '{"rows": 5, "returncode": 0}']) == {"rows": 5, "returncode": 0}


def test_dags_package_is_a_self_contained_airflow_3_bundle(tmp_path: Path) -> None:
    """`make dags-package`'s zip, unpacked alone (as MWAA syncs it to s3://<bucket>/dags/), parses in a fresh
    interpreter where only the bundle root is importable: both DAGs, no import errors."""
    import json
    import shutil
    import subprocess
    import zipfile

    root = DAGS_DIR.parent
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    subprocess.run(["make", "-s", "dags-package"], cwd=root, check=True, capture_output=True, text=True)
    bundle = tmp_path / "dags"
    with zipfile.ZipFile(root / "build" / "dags.zip") as archive:
        archive.extractall(bundle)
    probe = (
        "import json, sys; from pathlib import Path; from airflow.dag_processing.dagbag import BundleDagBag; "
        "b = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]), bundle_name='dags-folder'); "
        "print(json.dumps({'dags': sorted(b.dag_ids), 'errors': {str(k): v for k, v in b.import_errors.items()}}))"
    )
    proc = subprocess.run([sys.executable, "-c", probe, str(bundle)], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"dags": sorted(EXPECTED), "errors": {}}, result
