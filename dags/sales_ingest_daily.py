"""sales_ingest_daily: move the day's new Kafka records into `sales`, then check what arrived.

Runs the streaming job `spark_jobs/sales_stream.py` with the `availableNow` trigger (it drains what is in
the topic since its checkpoint, then stops), followed by a data-quality check.

* **backend = local** (default): `spark-submit` of the job on this machine, against the embedded stack.
* **backend = aws**: an EMR Serverless job run of the same file and arguments
  (`EmrServerlessStartJobOperator`, deferrable: the wait happens in the triggerer, not a worker slot); the job's
  `SFMLOPS_*` settings (setting `emr_job_environment`, on MWAA from Terraform) travel with the run as its driver
  and executor environment.

The data-quality task's outlet is the asset `sfmlops_sales` (`sfmlops_dag_utils/assets.py`): every
successful run records an asset event that the weekly training names as its inlet.

Written for Airflow 3 (Task SDK, `airflow.sdk`): task code reads configuration, connections and XComs
through the SDK only, never the metadata database. The backend and every address are configuration read at run time (`SFMLOPS_DAG_*` environment variables
or `sfmlops_*` Airflow Variables; connections `sfmlops_postgres` and `aws_default`), see dags/README.md.

Then the live accuracy (``sfmlops_dag_utils/drift.py``): `score_accuracy` has the API score the stored forecasts
against the sales that just landed (`POST /v1/accuracy/score`), and `retrain_on_drift` submits a training (the
weekly request, `POST /v1/training-jobs`) when the served model version's live RMSPE has drifted above its
backtest (setting `retrain_on_drift`, default true), unless a training of the same scope started within the
cool-down (`retrain_cooldown_days`, default 7; read from the API's jobs table).

Schedule: daily at 02:00 UTC, no catch-up, one run at a time; tasks retry twice, 5 minutes apart.
The data-quality task fails without retrying when more records were dead-lettered than
`max_dead_letters` or fewer rows than `min_rows` arrived, and its message says which and why.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator
from airflow.sdk import DAG, TriggerRule, chain, task

from sfmlops_dag_utils.assets import SALES
from sfmlops_dag_utils.metrics import outcome_callbacks

DAG_ID = "sales_ingest_daily"
SCHEDULE = "0 2 * * *"
RETRIES = 2
RETRY_DELAY = timedelta(minutes=5)
_SPEC = "ti.xcom_pull(task_ids='emr_job_spec')"

with DAG(
    dag_id=DAG_ID,
    description="Kafka -> Spark (availableNow) -> Postgres, then a data-quality check",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=3),
    default_args={"owner": "sfmlops", "retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["sfmlops", "ingest"],
    doc_md=__doc__,
) as dag:

    @task.branch(retries=0)
    def choose_backend(**context: Any) -> str:
        """Pick the ingest task of the configured backend (local or aws); records when the ingest began."""
        from airflow.sdk import timezone

        from sfmlops_dag_utils.config import run_config

        cfg = run_config()
        context["ti"].xcom_push(key="started_at", value=timezone.utcnow().isoformat())
        print(f"backend: {cfg.backend}")
        return "ingest_local" if cfg.backend == "local" else "emr_job_spec"

    @task(execution_timeout=timedelta(hours=2))
    def ingest_local() -> dict[str, Any]:
        """spark-submit the streaming job (availableNow) on this machine; returns the job's summary."""
        from airflow.sdk.exceptions import AirflowException

        from sfmlops_dag_utils.config import run_config
        from sfmlops_dag_utils.local import ingest_command, ingest_summary, run_logged
        from sfmlops_dag_utils.metrics import task_metrics

        with task_metrics(DAG_ID, "ingest_local", "ingest") as rows:  # outcome, seconds, rows -> Pushgateway
            cfg = run_config()
            argv, env = ingest_command(cfg.project_dir, cfg["ingest_extra_args"])
            lines = run_logged(argv, env, cfg.project_dir, cfg.int("ingest_timeout_s", 1), print, "streaming job (sfmlops ingest)")
            summary = ingest_summary(lines)
            if summary is None:
                raise AirflowException("streaming job ended without its SFMLOPS_INGEST_SUMMARY line; see the log above")
            rows.update({k: float(summary[k]) for k in ("rows", "rejected", "upserted") if isinstance(summary.get(k), (int, float))})
            if summary.get("error"):
                raise AirflowException(f"streaming job reported an error: {summary['error']}")
        print(f"ingest summary: {summary}")
        return summary

    # a misconfigured EMR run is a failed ingest too; multiple_outputs: each key is an XCom of its own as well, so
    # ingest_aws takes configuration_overrides as a dict (an XComArg resolves natively; a Jinja template renders a str)
    @task(retries=0, multiple_outputs=True, **outcome_callbacks(DAG_ID, "ingest"))
    def emr_job_spec() -> dict[str, Any]:
        """Resolve the EMR Serverless job run (application, role, code location, packages, the job's SFMLOPS_*
        environment) from configuration."""
        from airflow.sdk.exceptions import AirflowFailException

        from sfmlops_dag_utils.config import run_config

        try:
            return run_config().emr_job_spec()  # --packages (Kafka source, PgJDBC) + --py-files app.zip by default
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    spec = emr_job_spec()
    ingest_aws = EmrServerlessStartJobOperator(
        task_id="ingest_aws",
        application_id="{{ " + _SPEC + "['application_id'] }}",
        execution_role_arn="{{ " + _SPEC + "['execution_role_arn'] }}",
        job_driver={
            "sparkSubmit": {
                "entryPoint": "{{ " + _SPEC + "['entry_point'] }}",
                "entryPointArguments": ["--trigger", "available-now"],
                "sparkSubmitParameters": "{{ " + _SPEC + "['spark_submit_parameters'] }}",
            }
        },
        # the job's SFMLOPS_* settings (emr_job_environment) as spark-defaults of this run: driver and executor env
        configuration_overrides=spec["configuration_overrides"],
        aws_conn_id="{{ " + _SPEC + "['aws_conn_id'] }}",
        name="sales_stream-{{ ds }}",
        wait_for_completion=True,
        deferrable=True,
        execution_timeout=timedelta(hours=2),
        # the job run's outcome -> Pushgateway (job sfmlops_dag): IngestionFailed fires on a failed run
        **outcome_callbacks(DAG_ID, "ingest"),
    )

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, retries=0, outlets=[SALES])
    def data_quality(**context: Any) -> dict[str, Any]:
        """Rows upserted per day and dead letters since this run began; fail on too many dead letters."""
        from contextlib import closing
        from datetime import datetime

        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from sfmlops_dag_utils.config import run_config
        from sfmlops_dag_utils.metrics import task_metrics
        from sfmlops_dag_utils.quality import check_ingest, ingest_report

        cfg = run_config()
        # when choose_backend ran (its XCom), else when the run started: no metadata-database query
        started = context["ti"].xcom_pull(task_ids="choose_backend", key="started_at")
        since = datetime.fromisoformat(started) if started else context["dag_run"].start_date
        # the whole ingest of this run (either backend) up to this check: outcome, seconds, rows -> Pushgateway
        with task_metrics(DAG_ID, "data_quality", "ingest", started=since.timestamp()) as rows:
            with closing(PostgresHook(postgres_conn_id=cfg["postgres_conn_id"]).get_conn()) as conn:
                report = ingest_report(conn, cfg["table_sales"], cfg["table_dead_letter"], since)
            rows.update({"upserted": report["rows"], "dead_letters": report["dead_letters"]})
            print(f"rows per day: {report['rows_per_day']}")
            print(f"{report['rows']} rows over {report['days']} days, {report['dead_letters']} dead letters {report['dead_letter_reasons']}")
            check_ingest(report, cfg.int("max_dead_letters"), cfg.int("min_rows"), cfg["table_dead_letter"])
        return report

    @task
    def score_accuracy() -> dict[str, Any]:
        """`POST /v1/accuracy/score`: the API scores the stored forecasts against the sales that just landed and
        answers the drift status (idempotent: a retry rescores the same days)."""
        from sfmlops_dag_utils.api import SfmlopsApi
        from sfmlops_dag_utils.config import run_config
        from sfmlops_dag_utils.drift import score_accuracy as score

        cfg = run_config()
        out = score(SfmlopsApi.from_connection(cfg["api_conn_id"], timeout_s=cfg.int("api_timeout_s", 1)))
        status = out["status"]
        print(f"live accuracy: {out['written']} scores of {out['scored_rows']} forecast rows ({out['first_date']}..{out['last_date']}),"
              f" versions {out['versions']}; drift={status['drift']}: {status['reason']}")
        return status

    @task
    def retrain_on_drift(**context: Any) -> dict[str, Any]:
        """Submit a training (the weekly request) through the API when the served model drifts; the
        Idempotency-Key of the run makes a retry reuse the job."""
        from sfmlops_dag_utils.api import SfmlopsApi, idempotency_key
        from sfmlops_dag_utils.config import run_config
        from sfmlops_dag_utils.drift import retrain_on_drift as retrain

        cfg = run_config()
        ti = context["ti"]
        api = SfmlopsApi.from_connection(cfg["api_conn_id"], timeout_s=cfg.int("api_timeout_s", 1))
        key = idempotency_key(DAG_ID, context["run_id"], ti.task_id)
        body, cooldown = cfg.training_request(), cfg.int("retrain_cooldown_days")

        def recent() -> dict[str, Any] | None:
            """The newest training of this scope in the cool-down (the API's jobs table, same database)."""
            from contextlib import closing

            from airflow.providers.postgres.hooks.postgres import PostgresHook

            from sfmlops_dag_utils.drift import recent_training

            with closing(PostgresHook(postgres_conn_id=cfg["postgres_conn_id"]).get_conn()) as conn:
                return recent_training(conn, cfg["table_training_jobs"], body, cooldown)

        decision = retrain(api, ti.xcom_pull(task_ids="score_accuracy") or {}, body, key, cfg.bool("retrain_on_drift"),
                           recent=recent, cooldown_days=cooldown)
        job = decision.get("job")
        print(f"early retraining: job {job['id']} {decision['request']} is {job.get('state')} ({decision['reason']})" if job
              else f"no early retraining: {decision['reason']}")
        return decision

    backend = choose_backend()
    quality = data_quality()
    chain(backend, [ingest_local(), spec], [quality, ingest_aws])
    chain(ingest_aws, quality)
    chain(quality, score_accuracy(), retrain_on_drift())
