"""The one settings object for sfmlops.

Every address, port, bucket, topic, table and credential lives here. Values come from
environment variables prefixed ``SFMLOPS_`` (and an optional ``.env`` file). The ``local``
profile has working defaults for the embedded stack; any other profile refuses missing or
placeholder secrets at start-up, naming the setting.

Nothing here touches the network or the file system at import time.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Values that are fine on a laptop and never acceptable anywhere else.
PLACEHOLDER_SECRETS = frozenset(
    {"", "test", "changeme", "change-me", "password", "secret", "sfmlops", "sfmlops-local", "local-dev-only"}
)

ENV_PREFIX = "SFMLOPS_"


class Settings(BaseSettings):
    """Configuration for every component; see ``.env.example`` for the documented list."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- profile and folders -------------------------------------------------------------
    profile: Literal["local", "aws"] = Field("local", description="local = embedded stack, aws = real account")
    state_dir: Path = Field(PROJECT_ROOT / ".local", description="Runtime state: data, logs, pidfiles, db files")
    cache_dir: Path = Field(PROJECT_ROOT / ".cache", description="Downloads: Maven jars, wheels")
    bind_host: str = Field("127.0.0.1", description="Interface every local service binds to")

    # --- data ------------------------------------------------------------------------------
    rossmann_dir: Path | None = Field(None, description="Folder with Kaggle train.csv(.gz) and store.csv")
    synthetic_seed: int = Field(42, description="Seed of the synthetic dataset when no Kaggle files are given")
    synthetic_stores: int = Field(1115, ge=1, description="Stores in the synthetic dataset")
    synthetic_start: str = Field("2013-01-01", description="First day of the synthetic dataset")
    synthetic_end: str = Field("2015-06-13", description="Last day of the synthetic dataset")

    # --- AWS / emulator ------------------------------------------------------------------
    aws_region: str = Field("us-east-1", description="AWS region")
    aws_endpoint_url: str | None = Field(
        "http://127.0.0.1:4566", description="Emulator edge URL; empty on real AWS"
    )
    aws_access_key_id: str = Field(
        "test", description="Access key (emulator accepts any); outside local, unset = the default credential chain (role)"
    )
    aws_secret_access_key: SecretStr = Field(SecretStr("test"), description="Secret key (emulator accepts any)")
    emulator_port: int = Field(4566, description="MiniStack edge port")
    bucket_raw: str = Field("sfmlops-raw", description="Raw data bucket")
    bucket_checkpoints: str = Field("sfmlops-checkpoints", description="Streaming checkpoints bucket")
    bucket_mlflow: str = Field("sfmlops-mlflow-artifacts", description="MLflow artifact bucket")
    bucket_code: str = Field("sfmlops-code", description="Job code bucket (Ray working_dir zips, Spark job)")

    # --- Kafka ---------------------------------------------------------------------------
    kafka_version: str = Field("4.1.1", description="Apache Kafka version of the local broker jars")
    kafka_port: int = Field(9092, description="Broker listener port")
    kafka_controller_port: int = Field(9093, description="KRaft controller listener port")
    kafka_bootstrap_servers: str | None = Field(None, description="Override; default bind_host:kafka_port")
    kafka_auth: Literal["none", "aws-msk-iam"] = Field(
        "none",
        description="How the kafka-python clients (producer, exporter, benchmarks) authenticate: none = plaintext (the local"
        " broker); aws-msk-iam = SASL_SSL + OAUTHBEARER with IAM tokens signed for aws_region (MSK's IAM listener,"
        " port 9098; Terraform sets it with MSK)",
    )
    kafka_heap_mb: int = Field(512, ge=128, description="Broker JVM heap (-Xms/-Xmx) in MB")
    kafka_topic: str = Field("sales", description="Topic of daily store rows")
    kafka_consumer_group: str = Field(
        "sfmlops-ingest",
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Consumer group the streaming job commits each micro-batch's end offsets for (monitoring only:"
        " MSK's per-group lag and alarm; Terraform's kafka_consumer_group)",
    )
    kafka_partitions: int = Field(4, ge=1, description="Partitions of the sales topic")
    kafka_retention_ms: int = Field(30 * 24 * 3600 * 1000, description="Retention of the sales topic")
    kafka_replication_factor: int = Field(1, ge=1, description="Replication factor of the sales topic (3 on MSK)")
    producer_processes: int = Field(
        0, ge=0, description="Replay producer processes, each owning a group of partitions (0 = one per core, at most one per partition)"
    )
    producer_compression: str = Field("lz4", description="Producer compression codec (lz4, zstd, gzip, snappy or none)")
    producer_linger_ms: int = Field(50, ge=0, description="Producer linger before a partition's batch is sent")
    producer_batch_bytes: int = Field(1024 * 1024, ge=1024, description="Producer batch size per partition in bytes")

    # --- streaming ingestion (spark_jobs/sales_stream.py) -----------------------------------
    ingest_checkpoint: str | None = Field(
        None, description="Checkpoint folder (s3a://, file path); default s3a://<bucket_checkpoints>/sales_stream"
    )
    ingest_max_offsets_per_trigger: int = Field(
        2_000_000, ge=1, description="Kafka records per micro-batch at most (big batches are faster)"
    )
    ingest_trigger_interval: str = Field("30 seconds", description="Processing-time trigger interval")
    ingest_max_message_bytes: int = Field(8192, ge=64, description="Larger Kafka records are dead-lettered")
    ingest_max_future_days: int = Field(1, ge=0, description="Dates later than today (UTC) + this are rejected")
    ingest_min_date: str = Field("2000-01-01", description="Dates before this are rejected")
    ingest_dead_letter_payload_bytes: int = Field(
        1024, ge=16, description="Dead letters keep this many bytes of a rejected payload/key (plus its full length and SHA-256)"
    )
    ingest_max_batch_bytes: int = Field(
        8 * 1024**3,
        ge=1,
        description="Bytes a micro-batch may hold at most (staged rows, worst case per record): caps its records too",
    )
    ingest_query_restarts: int = Field(
        5, ge=0, description="Restarts of a streaming query that failed because Kafka or PostgreSQL was unreachable"
    )
    ingest_commit_connections: int = Field(
        4, ge=1, description="Kafka partitions of a micro-batch committed at once, each on its own connection"
    )
    ingest_jdbc_batch_rows: int = Field(
        10_000, ge=1, description="Rows per JDBC batch of the executors' staging writer (reWriteBatchedInserts)"
    )
    ingest_shuffle_partitions: int = Field(
        4, ge=1, description="spark.sql.shuffle.partitions of the streaming job (a spark-submit --conf of it wins)"
    )
    spark_master: str = Field("local[*]", description="Spark master of `sfmlops ingest` (local runs)")
    spark_driver_memory: str = Field("1536m", description="Spark driver heap (-Xmx) of `sfmlops ingest`")

    # --- PostgreSQL ------------------------------------------------------------------------
    pg_host: str = Field("127.0.0.1", description="PostgreSQL host")
    pg_port: int = Field(5432, description="PostgreSQL port")
    pg_database: str = Field("sfmlops", description="Application database")
    pg_user: str = Field("sfmlops", description="Application role")
    pg_password: SecretStr = Field(SecretStr("sfmlops-local"), description="Application role password")
    pg_secret_arn: str | None = Field(
        None,
        description="Secrets Manager secret with the database credentials (JSON username/password, as RDS manages it);"
        " when set, user and password come from it at start-up",
    )
    job_pg_secret_arn: str | None = Field(
        None,
        description="Database secret the API hands to its Ray jobs as their SFMLOPS_PG_SECRET_ARN (their own role);"
        " default: pg_secret_arn",
    )
    pg_bin_dir: Path | None = Field(None, description="Folder with initdb/pg_ctl; found automatically if unset")
    mlflow_database: str = Field("mlflow", description="MLflow backend database (same server)")

    # --- MLflow ----------------------------------------------------------------------------
    mlflow_port: int = Field(5000, description="MLflow tracking server port")
    mlflow_tracking_uri: str | None = Field(None, description="Override; default http://bind_host:mlflow_port")
    mlflow_username: str | None = Field(None, description="MLflow basic-auth user (the tracking server's auth app); unset = no auth")
    mlflow_password: SecretStr | None = Field(None, description="MLflow basic-auth password of mlflow_username")
    mlflow_auth_secret_arn: str | None = Field(
        None,
        description="Secrets Manager secret with the MLflow basic-auth credentials (JSON username/password);"
        " when set, mlflow_username/mlflow_password come from it at start-up",
    )
    job_mlflow_auth_secret_arn: str | None = Field(
        None,
        description="MLflow credentials secret the API hands to its Ray jobs as their SFMLOPS_MLFLOW_AUTH_SECRET_ARN;"
        " default: mlflow_auth_secret_arn",
    )
    mlflow_experiment: str = Field("sales-forecasting", description="Experiment name")
    model_name: str = Field("sales-forecaster", description="Registered model name")

    # --- Ray -------------------------------------------------------------------------------
    ray_gcs_port: int = Field(6379, description="Ray GCS port")
    ray_dashboard_port: int = Field(8265, description="Ray dashboard / Jobs API port")
    ray_client_port: int = Field(10001, description="Ray client server port (outside Ray's worker port range 10002-19999)")
    ray_agent_port: int = Field(52365, description="Ray dashboard agent HTTP port")
    ray_agent_grpc_port: int = Field(52366, description="Ray dashboard agent gRPC port")
    ray_runtime_env_agent_port: int = Field(52367, description="Ray runtime-env agent port")
    ray_metrics_port: int = Field(52368, description="Ray metrics export port")
    ray_address: str | None = Field(None, description="Jobs API URL; default http://bind_host:ray_dashboard_port")
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs the local head offers (default: all)")
    ray_object_store_mb: int = Field(512, ge=78, description="Object store size of the local head in MB")
    train_task_memory_mb: int = Field(0, ge=0, description="Memory (MB) each training task declares to Ray (0: none declared)")
    train_lgbm_workers: int = Field(
        1, ge=1, description="Ray Train workers of the global LightGBM fit (1: one process; >1: data-parallel, app/forecasting/distributed.py)"
    )
    train_storage_path: str = Field(
        "", description="Ray Train run storage of distributed fits (empty: a temporary folder on the node; multi-node: shared, e.g. s3://...)"
    )
    train_read_shards: int = Field(
        1, ge=1, description="Parallel keyed reads (store shards) of the training data from PostgreSQL (1: one COPY)"
    )
    train_tune_trials: int = Field(
        0, ge=0, description="Ray Tune trials of each tuned candidate (LightGBM; NHITS via AutoNHITS) (0: no search; app/forecasting/tune.py)"
    )
    train_tune_time_budget_s: float = Field(
        0.0, ge=0, description="Time budget (s) of each search: Tune starts no trial after it (0: no budget)"
    )

    # --- API ---------------------------------------------------------------------------------
    api_port: int = Field(8000, description="Port of `sfmlops api` (uvicorn)")
    api_access_log: bool = Field(False, description="uvicorn's per-request access log of `sfmlops api` (errors are logged with their request id either way)")
    api_url: str | None = Field(None, description="Base URL clients use; default http://bind_host:api_port")
    api_key: SecretStr = Field(SecretStr("local-dev-only"), description="API key the UI and DAGs present")
    api_key_pepper: SecretStr = Field(SecretStr("local-dev-only"), description="Server-side pepper for key hashes")
    api_key_pepper_secret_arn: str | None = Field(
        None, description="Secrets Manager secret holding the pepper; when set, it replaces SFMLOPS_API_KEY_PEPPER at start-up"
    )
    api_root_path: str = Field("", description="Path prefix the API is mounted under (API Gateway named stage)")
    api_max_body_bytes: int = Field(64 * 1024, ge=1024, description="Largest request body the API accepts (413)")
    api_max_concurrent_jobs: int = Field(2, ge=1, description="Unfinished training jobs allowed per client (429)")
    api_max_jobs_per_hour: int = Field(10, ge=1, description="Training submissions allowed per client per hour")
    api_upstream_timeout_s: float = Field(10.0, gt=0, description="Timeout of API calls to Ray and MLflow")
    api_db_pool_max: int = Field(4, ge=1, description="Postgres connections per API process")
    api_test_jobs: bool = Field(False, description="Allow kind=noop training jobs (tests only; local profile only)")
    api_job_kinds: str = Field(
        "all,store,forecast", description="Comma-separated job kinds POST /v1/training-jobs accepts (noop also needs API_TEST_JOBS)"
    )
    api_ray_timeout_s: float = Field(10.0, gt=0, description="Timeout of one API call to the Ray Jobs API")
    api_rate_limit_per_minute: int = Field(600, ge=1, description="Requests per client per minute on every authenticated route, per API process (429)")
    api_heavy_rate_limit_per_minute: int = Field(
        60, ge=1, description="Requests per client per minute on the expensive routes (on-demand forecasts, models, chain), per API process"
    )
    api_auth_recheck_s: float = Field(
        1.0, gt=0, le=30, description="Seconds between checks of the key-set version: a revoked key stops working within this time"
    )
    api_max_log_page_bytes: int = Field(
        512 * 1024, ge=1024, le=4 * 1024 * 1024, description="Largest page of job logs one response carries (Lambda answers at most 6 MB)"
    )
    job_code_key: str = Field("ray/job.zip", description="Key of the Ray job-code zip in bucket_code")
    job_working_dir: str | None = Field(
        None, description="Ray working_dir override (local path or URI); default s3://bucket_code/job_code_key"
    )
    table_api_clients: str = Field("api_clients", description="API clients")
    table_api_keys: str = Field("api_keys", description="Hashed API keys of the clients")
    table_training_jobs: str = Field("training_jobs", description="Training jobs submitted through the API")

    # --- tables --------------------------------------------------------------------------
    table_sales: str = Field("sales", description="Daily sales per store")
    table_stores: str = Field("stores", description="Store metadata")
    table_dead_letter: str = Field("sales_dead_letter", description="Rejected records with reason")
    table_ledger: str = Field("ingest_batches", description="Committed (query id, batch id) pairs")
    table_forecasts: str = Field("forecasts", description="Batch forecasts")
    table_accuracy: str = Field("forecast_accuracy", description="Live accuracy of the stored forecasts per model version, day and horizon bucket")
    table_planning: str = Field(
        "planning", description="Planning data: known-future inputs (open, promo, holidays) per store and day, versioned uploads"
    )
    table_ingest_staging: str = Field(
        "sales_ingest_staging", description="UNLOGGED staging of streaming micro-batches"
    )

    # --- forecasting -------------------------------------------------------------------------
    horizon_days: int = Field(48, ge=1, le=366, description="Production forecast horizon")
    accuracy_drift_margin: float = Field(
        0.25, ge=0, description="Drift: a day's live RMSPE above the version's backtest RMSPE x (1 + this margin) is a bad day"
    )
    accuracy_drift_days: int = Field(3, ge=1, description="Drift: this many bad days in a row (the newest scored days) flag the version")

    # --- Airflow ---------------------------------------------------------------------------
    airflow_port: int = Field(8080, description="Airflow standalone web port")

    # --- operator UI (Streamlit; talks to the API only) --------------------------------------
    ui_port: int = Field(8501, description="Port of `sfmlops ui` (Streamlit, bound to bind_host)")
    ui_poll_seconds: float = Field(3.0, gt=0, description="How often the training view refreshes unfinished jobs")
    ui_api_timeout_s: float = Field(10.0, gt=0, description="Timeout of one UI request to the API")

    # --- monitoring (Prometheus, Alertmanager, Pushgateway, exporters; see monitoring/README.md) ----------
    monitoring: bool = Field(False, description="`sfmlops up` also starts Prometheus, Alertmanager, the Pushgateway and the exporters (= --with-monitoring)")
    prometheus_port: int = Field(9090, description="Prometheus web / HTTP API port")
    alertmanager_port: int = Field(9099, description="Alertmanager port (9093 is Kafka's controller)")
    pushgateway_port: int = Field(9091, description="Pushgateway port (short-lived jobs push their figures here)")
    exporter_port: int = Field(9188, description="Port of the sfmlops exporter (forecast freshness, ledger, jobs, from Postgres)")
    postgres_exporter_port: int = Field(9187, description="Port of prometheus-postgres-exporter")
    pushgateway_url: str | None = Field(
        None, description="Where jobs push metrics; default http://bind_host:pushgateway_port; 'off' disables pushing"
    )
    prometheus_url: str | None = Field(None, description="Prometheus HTTP API the health view reads; default http://bind_host:prometheus_port")
    metrics_push_timeout_s: float = Field(2.0, gt=0, description="Timeout of one metrics push (a failed push is logged, never fatal)")
    metrics_remote_write_url: str | None = Field(
        None,
        description="Prometheus remote-write endpoint the API in Lambda writes its metrics to (AMP's .../api/v1/remote_write,"
        " which Terraform sets; or a Prometheus' /api/v1/write); empty: no remote write (app/monitoring/remote_write.py)",
    )
    metrics_remote_write_interval_s: float = Field(
        30.0, ge=1, description="Least seconds between two remote writes of one Lambda container (one write at the end of an invocation)"
    )
    metrics_remote_write_sigv4: bool | None = Field(
        None, description="SigV4-sign remote writes (service aps, aws_region); default: when the URL's host is *.amazonaws.com"
    )
    alert_webhook_token: SecretStr = Field(
        SecretStr("local-dev-only"), description="Bearer token Alertmanager presents to POST /v1/alerts/webhook"
    )
    table_alerts: str = Field("alerts", description="Alerts received from Alertmanager")
    api_metrics_route: bool | None = Field(
        None, description="Serve GET /metrics (Prometheus text, no key) from the API; default: only with the local profile"
    )
    prometheus_scrape_interval_s: int = Field(15, ge=1, le=300, description="Prometheus scrape and rule evaluation interval")
    forecast_coverage_days: int = Field(
        7, ge=1, le=366,
        description="The exporter counts stores lacking a forecast for one of the next N days after the newest actuals (alert ForecastStoresMissing)",
    )

    @field_validator(
        "aws_endpoint_url", "kafka_bootstrap_servers", "mlflow_tracking_uri", "ray_address", "api_url", "pushgateway_url", "prometheus_url",
        "metrics_remote_write_url", mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("metrics_remote_write_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        parts = urlsplit(value) if value is not None else None
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("table_sales", "table_stores", "table_dead_letter", "table_ledger", "table_forecasts", "table_alerts", "table_accuracy",
                     "table_planning")
    @classmethod
    def _sql_identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError(f"{value!r} is not a plain lower-case SQL identifier")
        return value

    @model_validator(mode="after")
    def _resolve_secret_arns(self) -> Settings:
        """Read the secrets named by ``*_secret_arn`` settings (the only I/O here, and only when set)."""
        if self.pg_secret_arn:
            self.pg_user, self.pg_password = self._read_credentials("pg_secret_arn", self.pg_user)
        if self.mlflow_auth_secret_arn:
            self.mlflow_username, self.mlflow_password = self._read_credentials(
                "mlflow_auth_secret_arn", self.mlflow_username
            )
        if self.api_key_pepper_secret_arn:
            self.api_key_pepper = SecretStr(self._read_secret("api_key_pepper_secret_arn"))
        return self

    def _read_credentials(self, setting: str, user: str | None) -> tuple[str, SecretStr]:
        """(username, password) from the JSON secret named by ``setting`` (username defaults to ``user``)."""
        value = self._read_secret(setting)
        try:
            creds = json.loads(value)
            password = creds["password"]
            username = creds.get("username") or user
        except (ValueError, TypeError, KeyError, AttributeError):
            username = password = None
        if not isinstance(password, str) or not password or not isinstance(username, str) or not username:
            raise ValueError(
                f"{ENV_PREFIX}{setting.upper()}: secret {getattr(self, setting)} must be JSON with a 'password' (and"
                " optionally 'username'), as RDS-managed secrets are"
            )
        return username, SecretStr(password)

    def refresh_pg_secret(self) -> bool:
        """Re-read the database secret (after an authentication failure: the secret may have been rotated).

        Returns:
            True if the user or password changed (a retry may succeed), False without a secret or change.
        """
        if not self.pg_secret_arn:
            return False
        try:
            user, password = self._read_credentials("pg_secret_arn", self.pg_user)
        except ValueError:
            return False
        changed = (user, password.get_secret_value()) != (self.pg_user, self.pg_password.get_secret_value())
        self.pg_user, self.pg_password = user, password
        return changed

    def _read_secret(self, setting: str) -> str:
        arn = getattr(self, setting)
        try:
            value = self.boto3_client("secretsmanager").get_secret_value(SecretId=arn).get("SecretString")
        except Exception as exc:  # noqa: BLE001 - botocore errors vary by cause; the message names the setting
            raise ValueError(f"{ENV_PREFIX}{setting.upper()}: cannot read secret {arn}: {exc}") from None
        if not value:
            raise ValueError(f"{ENV_PREFIX}{setting.upper()}: secret {arn} has no string value yet (put-secret-value)")
        return value

    @model_validator(mode="after")
    def _refuse_placeholders_outside_local(self) -> Settings:
        if self.profile == "local":
            return self
        names = ["pg_password"]  # the API key pepper: require_api_key_pepper (only the API and the key commands hash keys)
        if self.mlflow_password is not None:
            names.append("mlflow_password")
        if self.explicit_aws_keys:
            names.append("aws_secret_access_key")  # a configured key pair must be complete and real
        for name in names:
            value = getattr(self, name).get_secret_value().strip()
            if value.lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()} must be set to a real secret when {ENV_PREFIX}PROFILE={self.profile}"
                    " (it is missing or a placeholder)"
                )
        return self

    def require_api_key_pepper(self) -> SecretStr:
        """The pepper of the API's key hashes; outside the local profile a missing or placeholder one is refused.

        Checked where keys are hashed - the API at start-up (:func:`app.api.main.create_app`, so also the Lambda's
        cold start) and the key commands - not for every process: Ray jobs, the exporter and DAG tasks share these
        settings but never hold the pepper (least privilege), and must start without it.

        Raises:
            ValueError: naming ``SFMLOPS_API_KEY_PEPPER``.
        """
        if self.profile != "local" and self.api_key_pepper.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                f"{ENV_PREFIX}API_KEY_PEPPER must be set to a real secret when {ENV_PREFIX}PROFILE={self.profile}"
                " (it is missing or a placeholder)"
            )
        return self.api_key_pepper

    # --- derived addresses -----------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"{self.bind_host}:{self.kafka_port}"

    @property
    def mlflow_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.bind_host}:{self.mlflow_port}"

    @property
    def ray_jobs_url(self) -> str:
        return self.ray_address or f"http://{self.bind_host}:{self.ray_dashboard_port}"

    @property
    def api_base_url(self) -> str:
        return self.api_url or f"http://{self.bind_host}:{self.api_port}"

    @property
    def pushgateway_base_url(self) -> str | None:
        """Where jobs push their metrics (None: pushing is off)."""
        if (self.pushgateway_url or "").lower() == "off":
            return None
        return self.pushgateway_url or f"http://{self.bind_host}:{self.pushgateway_port}"

    @property
    def api_serves_metrics(self) -> bool:
        """Whether the API serves ``GET /metrics`` (explicit setting, else only locally: behind a public API
        Gateway the figures go to Amazon Managed Prometheus instead)."""
        return self.profile == "local" if self.api_metrics_route is None else self.api_metrics_route

    @property
    def prometheus_base_url(self) -> str:
        return self.prometheus_url or f"http://{self.bind_host}:{self.prometheus_port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def pg_params(self, database: str | None = None) -> dict[str, str | int]:
        """Connection parameters of the application role, for ``psycopg2.connect(**params)``: no string to
        parse, so any password (spaces, quotes, backslashes) is passed as it is."""
        return {
            "host": self.pg_host,
            "port": self.pg_port,
            "dbname": database or self.pg_database,
            "user": self.pg_user,
            "password": self.pg_password.get_secret_value(),
        }

    def pg_dsn(self, database: str | None = None, **options: str | int) -> str:
        """libpq key/value DSN of :meth:`pg_params` (plus libpq ``options``), every value quoted by libpq's
        rules; only where a string is unavoidable (Spark executors, subprocesses), else use ``app.db.connect``."""
        from psycopg2.extensions import make_dsn

        return make_dsn(**self.pg_params(database), **options)

    def pg_url(self, database: str | None = None, driver: str = "postgresql") -> str:
        """SQLAlchemy-style URL of the application role (MLflow's backend store); user and password are
        percent-encoded, which SQLAlchemy decodes."""
        from urllib.parse import quote

        user = quote(self.pg_user, safe="")
        pw = quote(self.pg_password.get_secret_value(), safe="")
        return f"{driver}://{user}:{pw}@{self.pg_host}:{self.pg_port}/{quote(database or self.pg_database, safe='')}"

    def mlflow_auth(self) -> tuple[str, str] | None:
        """(user, password) of MLflow basic auth for HTTP clients, or None when no credentials are configured."""
        if not self.mlflow_username or self.mlflow_password is None:
            return None
        return self.mlflow_username, self.mlflow_password.get_secret_value()

    def mlflow_env(self) -> dict[str, str]:
        """Environment variables of the MLflow client library: tracking URI and basic-auth credentials."""
        env = {"MLFLOW_TRACKING_URI": self.mlflow_uri}
        auth = self.mlflow_auth()
        if auth:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = auth
        return env

    @property
    def explicit_aws_keys(self) -> bool:
        """Whether to pass the configured key pair to AWS SDKs: always locally (the emulator accepts any);
        elsewhere only when one is configured, otherwise the default chain (instance/Lambda role) applies."""
        return self.profile == "local" or self.aws_access_key_id.strip().lower() not in PLACEHOLDER_SECRETS

    def aws_env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs (boto3, s3a, MLflow) at the configured endpoint."""
        env = {"AWS_DEFAULT_REGION": self.aws_region, "AWS_REGION": self.aws_region}
        if self.explicit_aws_keys:
            env["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key.get_secret_value()
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
            env["MLFLOW_S3_ENDPOINT_URL"] = self.aws_endpoint_url
        return env

    def boto3_client(self, service: str):  # boto3 types are dynamic
        """A boto3 client for ``service`` at the configured endpoint and region."""
        import boto3

        keys = {}
        if self.explicit_aws_keys:
            keys = {
                "aws_access_key_id": self.aws_access_key_id,
                "aws_secret_access_key": self.aws_secret_access_key.get_secret_value(),
            }
        return boto3.client(service, region_name=self.aws_region, endpoint_url=self.aws_endpoint_url, **keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """``SFMLOPS_*`` variables that reproduce ``settings`` in a child process (secrets included)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"{ENV_PREFIX}{name.upper()}"] = str(value)
    return env


def render_env_example() -> str:
    """The text of ``.env.example``: every setting with its description and local default."""
    lines = [
        "# sfmlops settings: every variable, its local default and meaning. Copy to .env to override.",
        "# Outside SFMLOPS_PROFILE=local the secrets (PG_PASSWORD, API_KEY_PEPPER, AWS_SECRET_ACCESS_KEY) must be real.",
        "# Regenerate with `make env-example`.",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if isinstance(default, Path):
            default = "<repo>/" + str(default.relative_to(PROJECT_ROOT)) if default.is_relative_to(PROJECT_ROOT) else default
        lines += [f"# {field.description}", f"# {ENV_PREFIX}{name.upper()}={'' if default is None else default}"]
    return "\n".join(lines) + "\n"
