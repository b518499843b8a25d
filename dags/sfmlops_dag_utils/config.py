"""Run-time configuration of the DAGs: environment first, then Airflow Variables, then the ``[sfmlops]``
section of Airflow's configuration, then defaults.

Each key ``name`` is looked up, in this order, as

1. the environment variable ``SFMLOPS_DAG_<NAME>`` (set by ``sfmlops up --with-airflow`` locally, or by
   the MWAA environment's startup script),
2. the Airflow Variable ``sfmlops_<name>`` (MWAA: the Variables UI or a Secrets Manager backend),
3. the option ``<name>`` of the Airflow configuration section ``[sfmlops]`` (``airflow.cfg``, or the environment
   variable ``AIRFLOW__SFMLOPS__<NAME>``): how Terraform's MWAA environment delivers what it knows, since MWAA
   sets its ``airflow_configuration_options`` (``sfmlops.pushgateway_url``, ``sfmlops.emr_job_environment``) as
   such variables and no others,
4. the default below.

An operator's explicit value (environment, Variable) wins over the deployment's (configuration section), which
wins over the built-in default. An empty value at any step counts as unset.

Connections (``sfmlops_postgres``, ``sfmlops_api``) come from Airflow's connection machinery: the
``AIRFLOW_CONN_*`` environment variables locally, Secrets Manager on MWAA.

Only call :func:`run_config` inside a task: reading Variables at parse time would hit the metadata
database every time the scheduler parses the file.
"""

from __future__ import annotations

import builtins
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "SFMLOPS_DAG_"
VARIABLE_PREFIX = "sfmlops_"
#: the Airflow configuration section of the DAG settings (MWAA: configuration options ``sfmlops.<name>``).
CONFIG_SECTION = "sfmlops"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
#: EMR Serverless takes at most 100 properties per configuration classification and 1,024 characters per value
#: (StartJobRun's ConfigurationOverrides); each job environment variable takes two properties (driver, executors).
EMR_MAX_ENVIRONMENT = 50
EMR_MAX_PROPERTY_VALUE = 1024
_JOB_ENV_NAME = re.compile(r"SFMLOPS_[A-Za-z0-9_]+")
#: names that look like secrets, refused unless they name an ARN (the rule of Terraform's app_environment).
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PEPPER|PRIVATE_KEY")

#: every key with its default and meaning (also rendered into dags/README.md).
DEFAULTS: dict[str, tuple[str, str]] = {
    "backend": ("local", "local = spark-submit / sfmlops CLI on this machine; aws = EMR Serverless and Ray via the API"),
    "project_dir": ("", "Repository root for the local backend (default: the parent of the DAGs folder)"),
    "postgres_conn_id": ("sfmlops_postgres", "Airflow connection of the sales database (local Postgres or RDS)"),
    "api_conn_id": ("sfmlops_api", "Airflow HTTP connection of the API: host = base URL, password = API key"),
    "table_sales": ("sales", "Sales table"),
    "table_dead_letter": ("sales_dead_letter", "Dead-letter table of the streaming job"),
    "table_forecasts": ("forecasts", "Batch forecast table"),
    "table_stores": ("stores", "Store metadata table"),
    "max_dead_letters": ("100", "Dead letters allowed per ingest run before the data-quality task fails"),
    "min_rows": ("0", "Fewest sales rows an ingest run must upsert (0 = no minimum)"),
    "ingest_timeout_s": ("3600", "Local spark-submit run limit in seconds"),
    "ingest_extra_args": ("", "Extra options of `sfmlops ingest` (e.g. --max-offsets-per-trigger 500000)"),
    "training_kind": ("all", "Body `kind` of POST /v1/training-jobs (all | noop for tests)"),
    "retrain_on_drift": ("true", "Daily run: submit a training (the weekly request) when the served model's live accuracy drifts (true | false)"),
    "retrain_cooldown_days": ("7", "Daily run: no early retraining while a same-scope training started within this many days and did not fail (0 = none)"),
    "table_training_jobs": ("training_jobs", "The API's jobs table (read for the retraining cool-down over postgres_conn_id)"),
    "stores": ("", "Comma-separated store ids to train on, forecast and check (kind=all; empty = every store in sales)"),
    "training_neural": ("true", "Also train the neuralforecast candidate (true | false; false = LightGBM only, much faster)"),
    "training_lgbm_rounds": ("", "Boosting rounds of LightGBM (empty = the model's default)"),
    "training_max_steps": ("", "Training steps of the neural candidate (empty = the model's default)"),
    "forecast_days": ("48", "Days every store must have forecasts for after the weekly run"),
    "forecast_timeout_s": ("3600", "Local batch forecast run limit in seconds"),
    "api_timeout_s": ("30", "HTTP timeout of each API call"),
    "emr_application_id": ("", "aws: EMR Serverless application id (Terraform output)"),
    "emr_execution_role_arn": ("", "aws: job execution role ARN (Terraform output)"),
    "code_bucket": ("sfmlops-code", "aws: bucket with spark/sales_stream.py and spark/app.zip"),
    "emr_spark_submit_parameters": ("", "aws: sparkSubmitParameters (default: --packages <Kafka source, PgJDBC> --py-files s3://<code_bucket>/spark/app.zip)"),
    "aws_conn_id": ("aws_default", "aws: Airflow AWS connection"),
    "emr_job_environment": (
        "{}",
        "aws: JSON object of SFMLOPS_* name -> value, the streaming job's settings, given to each EMR job run as driver and"
        " executor environment (spark-defaults spark.emr-serverless.driverEnv.* / spark.executorEnv.*); non-secret only"
        " (secret ARNs); MWAA: Terraform's [sfmlops] option",
    ),
    "pushgateway_url": ("", "Pushgateway the tasks push their outcome to (job sfmlops_dag; empty or off = no pushing; MWAA: Terraform's [sfmlops] option)"),
    "metrics_push_timeout_s": ("2", "Timeout in seconds of one metrics push (a failed push is logged, never fails the task)"),
}


def _variable(name: str) -> str | None:
    """The Airflow Variable ``sfmlops_<name>`` through the Task SDK (inside a task: secrets backend, then the
    Execution API of the api-server; never the metadata database), or ``None``."""
    try:
        from airflow.sdk import Variable

        value = Variable.get(VARIABLE_PREFIX + name, default=None)
    except Exception:  # noqa: BLE001 - outside a task (unit use) there is no Execution API: no Variables
        return None
    return None if value is None else str(value)


def _config_option(name: str) -> str | None:
    """The option ``name`` of the Airflow configuration section ``[sfmlops]`` (``airflow.cfg`` or
    ``AIRFLOW__SFMLOPS__<NAME>``), or ``None``. The Task SDK's parser (``airflow.sdk.conf``), else, with a Task SDK
    that has none, airflow-core's; either reads the file and the environment, never the metadata database."""
    try:
        try:
            from airflow.sdk import conf
        except ImportError:  # an older Task SDK without a conf of its own: airflow-core's (on every MWAA worker)
            from airflow.configuration import conf

        value = conf.get(CONFIG_SECTION, name, fallback=None)
    except Exception:  # noqa: BLE001 - an unreadable configuration leaves the setting to its default
        return None
    return None if value is None else str(value)


def lookup(name: str) -> str:
    """The value of one key (environment, then Variable, then the ``[sfmlops]`` configuration section, then
    default)."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown sfmlops DAG setting {name!r}; known: {', '.join(sorted(DEFAULTS))}")
    env = os.environ.get(ENV_PREFIX + name.upper())
    if env is not None and env.strip() != "":
        return env.strip()
    var = _variable(name)
    if var is not None and var.strip() != "":
        return var.strip()
    option = _config_option(name)
    if option is not None and option.strip() != "":
        return option.strip()
    return DEFAULTS[name][0]


def _int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()} (or Variable {VARIABLE_PREFIX}{name}) must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{ENV_PREFIX}{name.upper()} (or Variable {VARIABLE_PREFIX}{name}) must be >= {minimum}, got {number}")
    return number


def _sources(name: str) -> str:
    """Where a setting comes from, for error messages: its environment variable, Variable and configuration option."""
    return f"{ENV_PREFIX}{name.upper()} (or Variable {VARIABLE_PREFIX}{name}, or option {name} of the [{CONFIG_SECTION}] section)"


def job_environment(raw: str, name: str = "emr_job_environment") -> dict[str, str]:
    """The ``SFMLOPS_*`` environment of the streaming job from the JSON object ``raw`` (setting ``name``).

    Raises:
        ValueError: naming the setting, when ``raw`` is not a JSON object of ``SFMLOPS_*`` names to strings, a name
            looks like a secret (PASSWORD, SECRET, TOKEN, PEPPER, PRIVATE_KEY, unless it ends in ``_ARN``: the value
            would travel in the job run's configuration and in XCom), or EMR Serverless's limits are exceeded.
    """
    where = _sources(name)
    try:
        env = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{where} must be a JSON object of SFMLOPS_* names to strings: {exc}") from None
    if not isinstance(env, dict):
        raise ValueError(f"{where} must be a JSON object of SFMLOPS_* names to strings, got {type(env).__name__}")
    bad_names = sorted(k for k in env if not _JOB_ENV_NAME.fullmatch(k))
    if bad_names:
        raise ValueError(f"{where}: every name must be SFMLOPS_ followed by letters, digits or underscores, got {bad_names}")
    secrets = sorted(k for k in env if _SECRET_NAME.search(k.upper()) and not k.upper().endswith("_ARN"))
    if secrets:
        raise ValueError(f"{where} must not carry secrets ({secrets}); pass a Secrets Manager ARN (..._ARN) instead")
    not_strings = sorted(k for k, v in env.items() if not isinstance(v, str))
    if not_strings:
        raise ValueError(f"{where}: every value must be a JSON string, not for {not_strings}")
    if len(env) > EMR_MAX_ENVIRONMENT:
        raise ValueError(f"{where} holds {len(env)} names; EMR Serverless takes at most {EMR_MAX_ENVIRONMENT} (two properties each)")
    too_long = sorted(k for k, v in env.items() if len(v) > EMR_MAX_PROPERTY_VALUE)
    if too_long:
        raise ValueError(f"{where}: values longer than {EMR_MAX_PROPERTY_VALUE} characters (EMR Serverless's limit): {too_long}")
    return env


def emr_configuration_overrides(env: dict[str, str]) -> dict[str, Any]:
    """StartJobRun's ``configurationOverrides`` that give ``env`` to the job's driver
    (``spark.emr-serverless.driverEnv.<NAME>``) and executors (``spark.executorEnv.<NAME>``) through the
    ``spark-defaults`` classification; ``{}`` (no ``applicationConfiguration``) for an empty ``env``."""
    if not env:
        return {}
    properties: dict[str, str] = {}
    for key in sorted(env):
        properties[f"spark.emr-serverless.driverEnv.{key}"] = env[key]
        properties[f"spark.executorEnv.{key}"] = env[key]
    return {"applicationConfiguration": [{"classification": "spark-defaults", "properties": properties}]}


@dataclass(frozen=True)
class DagConfig:
    """The resolved configuration of one task run."""

    values: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    @property
    def backend(self) -> str:
        return self.values["backend"]

    @property
    def project_dir(self) -> Path:
        raw = self.values["project_dir"]
        return Path(raw) if raw else Path(__file__).resolve().parents[2]

    # `int` and `bool` below name methods: later annotations in this class say `builtins.int` / `builtins.bool`.
    def int(self, name: str, minimum: int = 0) -> int:
        return _int(name, self.values[name], minimum)

    def optional_int(self, name: str, minimum: builtins.int = 1) -> builtins.int | None:
        """An integer setting that may be left empty (``None``)."""
        return None if self.values[name] == "" else _int(name, self.values[name], minimum)

    def bool(self, name: str) -> builtins.bool:
        """A true/false setting (true, false, 1, 0, yes, no)."""
        value = self.values[name].lower()
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        raise ValueError(
            f"{ENV_PREFIX}{name.upper()} (or Variable {VARIABLE_PREFIX}{name}) must be true or false, got {self.values[name]!r}"
        )

    def stores(self) -> list[builtins.int] | None:
        """The ``stores`` setting as a list of distinct ids (``None`` = every store)."""
        raw = self.values["stores"]
        if not raw:
            return None
        ids = [_int("stores", part.strip(), minimum=1) for part in raw.split(",") if part.strip()]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{ENV_PREFIX}STORES (or Variable {VARIABLE_PREFIX}stores) repeats a store id: {raw!r}")
        return ids or None

    def training_request(self) -> dict[str, Any]:
        """The body of ``POST /v1/training-jobs`` for the weekly training (only the options that are set)."""
        body: dict[str, Any] = {"kind": self.values["training_kind"]}
        stores = self.stores()
        if stores:
            body["stores"] = stores
        if not self.bool("training_neural"):
            body["neural"] = False
        for name, key in (("training_lgbm_rounds", "lgbm_rounds"), ("training_max_steps", "max_steps")):
            value = self.optional_int(name)
            if value is not None:
                body[key] = value
        return body

    def forecast_request(self) -> dict[str, Any]:
        """The body of ``POST /v1/training-jobs`` for the batch forecast on AWS (a Ray job)."""
        body: dict[str, Any] = {"kind": "forecast", "days": self.int("forecast_days", 1)}
        stores = self.stores()
        if stores:
            body["stores"] = stores
        return body

    def emr_job_environment(self) -> dict[str, str]:
        """The ``emr_job_environment`` setting: the ``SFMLOPS_*`` settings each EMR job run gets (validated)."""
        return job_environment(self.values["emr_job_environment"])

    def emr_job_spec(self) -> dict[str, Any]:
        """The EMR Serverless job run of the streaming job (application, role, code location, submit parameters,
        configuration overrides).

        The default ``sparkSubmitParameters`` carry the same ``--packages`` (Kafka source, PgJDBC) as
        ``make spark-package``'s spark-submit line, from the one definition in ``common/spark.py``.
        ``configuration_overrides`` gives the job its ``SFMLOPS_*`` settings (``emr_job_environment``) as
        ``spark-defaults`` of this run: driver and executor environment variables. A ``--conf`` of the same property
        in ``emr_spark_submit_parameters`` wins over them (EMR Serverless: sparkSubmitParameters, then the run's
        configuration overrides, then the application's configuration).

        Raises:
            ValueError: naming the missing settings.
        """
        from sfmlops_dag_utils.common.spark import emr_submit_parameters

        missing = [k for k in ("emr_application_id", "emr_execution_role_arn") if not self.values[k]]
        if missing:
            raise ValueError(
                "backend=aws needs " + ", ".join(f"{ENV_PREFIX}{k.upper()} (or Variable {VARIABLE_PREFIX}{k})" for k in missing)
                + " (Terraform outputs of the spark module)"
            )
        code = f"s3://{self.values['code_bucket']}/spark"
        return {
            "application_id": self.values["emr_application_id"],
            "execution_role_arn": self.values["emr_execution_role_arn"],
            "entry_point": f"{code}/sales_stream.py",
            "spark_submit_parameters": self.values["emr_spark_submit_parameters"] or emr_submit_parameters(code),
            "configuration_overrides": emr_configuration_overrides(self.emr_job_environment()),
            "aws_conn_id": self.values["aws_conn_id"],
        }

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def run_config() -> DagConfig:
    """Resolve every key now (inside a task). Raises ``ValueError`` naming a bad setting."""
    values = {name: lookup(name) for name in DEFAULTS}
    if values["backend"] not in ("local", "aws"):
        raise ValueError(
            f"{ENV_PREFIX}BACKEND (or Variable {VARIABLE_PREFIX}backend) must be 'local' or 'aws', got {values['backend']!r}"
        )
    cfg = DagConfig(values)
    for name in ("max_dead_letters", "min_rows", "retrain_cooldown_days", "ingest_timeout_s", "forecast_days", "forecast_timeout_s", "api_timeout_s"):
        cfg.int(name, minimum=1 if name.endswith(("_s", "_days")) else 0)
    cfg.bool("retrain_on_drift")
    cfg.training_request()  # validates stores, training_neural, training_lgbm_rounds, training_max_steps
    cfg.emr_job_environment()
    return cfg
