"""sales_train_weekly: retrain through the API, forecast every store, check the forecasts, report the champion.

1. `submit_training` - `POST /v1/training-jobs` on the sfmlops API (never Ray directly), with an
   Idempotency-Key unique to the DAG run, so a retried task cannot start a second job.
2. `wait_for_training` - a sensor in **reschedule** mode polls `GET /v1/training-jobs/{id}`; a FAILED,
   STOPPED or LOST job fails the run with Ray's message and the end of the job's log.
3. `batch_forecast` - forecasts for every store (or the `stores` setting) for the next `forecast_days` days
   into `forecasts`: locally `sfmlops forecast --days N`; on AWS a Ray job submitted through the API
   (`{"kind": "forecast", "days": N}`) and awaited by the same sensor.
4. `check_forecasts` - every expected store (`stores`, else every store in `sales`) has `forecast_days`
   forecast days after its last sales day, for the model version the forecast step reported.
5. `report_champion` - the champion gate's decision of the new model (champion or challenger, both RMSPEs)
   and the registry's aliases from `GET /v1/models`.

Assets (`sfmlops_dag_utils/assets.py`): `submit_training` names `sfmlops_sales` (the daily ingest's outlet)
as its inlet and `check_forecasts` has `sfmlops_forecasts` as its outlet. The schedule stays weekly (cron),
not asset-triggered: an asset schedule would retrain after every daily ingest.

Written for Airflow 3 (Task SDK, `airflow.sdk`): no task reads the metadata database. Backend, API connection
(`sfmlops_api`: host = base URL, password = API key), the training options
(`stores`, `training_neural`, `training_lgbm_rounds`, `training_max_steps`) and thresholds are read at
run time (`SFMLOPS_DAG_*` environment or `sfmlops_*` Variables), see dags/README.md.

Schedule: Sundays at 04:00 UTC (after the daily ingest), no catch-up, one run at a time; tasks retry
once after 10 minutes; the training sensor gives up after 6 hours.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, TriggerRule, chain, task

from sfmlops_dag_utils.assets import FORECASTS, SALES
from sfmlops_dag_utils.sensors import TrainingJobSensor

DAG_ID = "sales_train_weekly"
SCHEDULE = "0 4 * * 0"
RETRIES = 1
RETRY_DELAY = timedelta(minutes=10)
POKE_INTERVAL_S = 120
TRAINING_TIMEOUT = timedelta(hours=6)
API_CONN_ID = "{{ ti.xcom_pull(task_ids='submit_training', key='api_conn_id') }}"


def _api():  # SfmlopsApi, imported lazily
    from sfmlops_dag_utils.api import SfmlopsApi
    from sfmlops_dag_utils.config import run_config

    cfg = run_config()
    return cfg, SfmlopsApi.from_connection(cfg["api_conn_id"], timeout_s=cfg.int("api_timeout_s", 1))


with DAG(
    dag_id=DAG_ID,
    description="Train on Ray through the API, batch forecast, check coverage, report the champion decision",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=10),
    default_args={"owner": "sfmlops", "retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["sfmlops", "training", "forecast"],
    doc_md=__doc__,
) as dag:

    @task(inlets=[SALES])
    def submit_training(**context: Any) -> str:
        """Submit the weekly training job through the API; returns its job id."""
        from sfmlops_dag_utils.api import idempotency_key

        cfg, api = _api()
        ti = context["ti"]
        ti.xcom_push(key="api_conn_id", value=cfg["api_conn_id"])
        key = idempotency_key(DAG_ID, context["run_id"], ti.task_id)
        body = cfg.training_request()
        job = api.submit_training(body, key)
        print(f"training job {job['id']} {body} is {job.get('state')}; Idempotency-Key {key}")
        return str(job["id"])

    wait_for_training = TrainingJobSensor(
        task_id="wait_for_training",
        job_id="{{ ti.xcom_pull(task_ids='submit_training') }}",
        api_conn_id=API_CONN_ID,
        mode="reschedule",
        poke_interval=POKE_INTERVAL_S,
        timeout=TRAINING_TIMEOUT.total_seconds(),
        retries=0,
    )

    @task.branch(retries=0)
    def forecast_backend() -> str:
        """Pick the batch-forecast task of the configured backend."""
        from sfmlops_dag_utils.config import run_config

        return "batch_forecast" if run_config().backend == "local" else "submit_forecast"

    @task(execution_timeout=timedelta(hours=2))
    def batch_forecast() -> dict[str, Any]:
        """local: `sfmlops forecast --days N [--stores ...]` writes the champion's forecasts of the stores."""
        from sfmlops_dag_utils.config import run_config
        from sfmlops_dag_utils.local import forecast_command, last_json, run_logged
        from sfmlops_dag_utils.metrics import job_rows, task_metrics

        with task_metrics(DAG_ID, "batch_forecast", "forecast") as rows:  # outcome, seconds, rows -> Pushgateway
            cfg = run_config()
            argv, env = forecast_command(cfg.project_dir, cfg.int("forecast_days", 1), cfg.stores())
            lines = run_logged(argv, env, cfg.project_dir, cfg.int("forecast_timeout_s", 1), print, "batch forecast")
            summary = last_json(lines) or {}
            rows.update(job_rows(summary))
        return summary

    @task
    def submit_forecast(**context: Any) -> str:
        """aws: the batch forecast as a Ray job through the API (same sensor as training)."""
        from sfmlops_dag_utils.api import idempotency_key

        cfg, api = _api()
        key = idempotency_key(DAG_ID, context["run_id"], context["ti"].task_id)
        body = cfg.forecast_request()
        job = api.submit_training(body, key)
        print(f"forecast job {job['id']} {body} is {job.get('state')}; Idempotency-Key {key}")
        return str(job["id"])

    wait_for_forecast = TrainingJobSensor(
        task_id="wait_for_forecast",
        job_id="{{ ti.xcom_pull(task_ids='submit_forecast') }}",
        api_conn_id=API_CONN_ID,
        mode="reschedule",
        poke_interval=POKE_INTERVAL_S,
        timeout=timedelta(hours=2).total_seconds(),
        retries=0,
        metrics_kind="forecast",
    )

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, retries=0, outlets=[FORECASTS])
    def check_forecasts(**context: Any) -> dict[str, Any]:
        """Every expected store has `forecast_days` forecast days after its last sales day, for the model
        version the batch forecast reported (expected stores: the `stores` setting, else all in sales)."""
        from contextlib import closing

        from airflow.providers.postgres.hooks.postgres import PostgresHook

        from sfmlops_dag_utils.config import run_config
        from sfmlops_dag_utils.quality import check_forecasts as check
        from sfmlops_dag_utils.quality import forecast_report

        cfg = run_config()
        ti = context["ti"]
        written = ti.xcom_pull(task_ids="batch_forecast") or (ti.xcom_pull(task_ids="wait_for_forecast", key="job") or {}).get("result") or {}
        print(f"batch forecast reported: {written}")
        with closing(PostgresHook(postgres_conn_id=cfg["postgres_conn_id"]).get_conn()) as conn:
            report = forecast_report(
                conn, cfg.values, cfg.int("forecast_days", 1), model_version=written.get("model_version"),
                model_name=written.get("model_name"), stores=cfg.stores(),
            )
        print(f"forecast coverage: {report}")
        check(report)
        return report

    @task(retries=0)
    def report_champion(**context: Any) -> dict[str, Any]:
        """Log the champion gate's decision for the new model and the registry's aliases."""
        from sfmlops_dag_utils.reporting import champion_decision

        _, api = _api()
        job = context["ti"].xcom_pull(task_ids="wait_for_training", key="job") or {}
        decision = champion_decision(job.get("result") or {}, api.models())
        print(decision["summary"])
        return decision

    local_forecast = batch_forecast()
    aws_forecast = submit_forecast()
    checked = check_forecasts()
    chain(submit_training(), wait_for_training, forecast_backend(), [local_forecast, aws_forecast])
    chain(aws_forecast, wait_for_forecast, checked)
    chain(local_forecast, checked, report_champion())
