"""`sfmlops demo`: the main job end to end on the local stack, step by step, with a summary at the end.

stack up -> Terraform apply to the emulator (Lambda behind API Gateway) -> data -> Kafka replay ->
Spark ingestion into Postgres -> training submitted through the API as a Ray job -> batch forecast ->
a forecast chart, and where to look; with ``with_airflow`` then the weekly Airflow DAG once
(``airflow dags test sales_train_weekly``: retrain through the API, forecast, check, champion report).

Each step is a call into the module it demonstrates; this file only orders them and prints.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:  # pragma: no cover
    from app.common.api_client import ApiClient
    from app.config import Settings

console = Console(stderr=True)
WEEKLY_DAG = "sales_train_weekly"


def step(title: str, fn: Callable[[], Any]) -> Any:  # whatever the step returns
    console.rule(f"[b]{title}")
    t0 = time.monotonic()
    result = fn()
    console.print(f"[green]done[/green] {title} in {time.monotonic() - t0:.1f}s")
    return result


def terraform_outputs() -> dict[str, Any] | None:
    """Apply Terraform to the emulator and return its outputs; None (the demo goes on locally) when it fails."""
    from app.stack import terraform

    try:
        terraform.apply_to_emulator()
        return terraform.outputs()
    except terraform.TerraformFailed as exc:
        console.print(f"[yellow]Terraform failed; the demo goes on with the local API only:[/yellow]\n{exc}")
        return None


def api_client(settings: Settings, base_url: str) -> ApiClient:
    from app.common.api_client import ApiClient

    return ApiClient(base_url, settings.api_key.get_secret_value(), timeout_s=60, user_agent="sfmlops-demo")


def train_through_api(settings: Settings, base_url: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Submit a training job through the API, follow it (state, stage, tasks done) until it ends; the final record."""
    from app.common.jobs import JobState
    from app.forecasting.executor import parse_progress

    with api_client(settings, base_url) as api, console.status("training on Ray...") as status:
        job, _ = api.submit_job(body, f"demo-{int(time.time())}")
        console.print(f"training job {job['id']} submitted through {base_url}")
        t0 = time.monotonic()

        def show(job: dict[str, Any]) -> None:
            event = parse_progress(api.job_log_text(job["id"], tail=50))
            stage = f" - {event['stage']} {event['done']}/{event['total']} tasks" if event else ""
            status.update(f"training on Ray: {job['state']}{stage} ({time.monotonic() - t0:.0f}s)")

        job = api.wait_for_job(job["id"], timeout_s, poll_s=5, on_poll=show)
        if job["state"] != JobState.SUCCEEDED:
            raise RuntimeError(f"training job {job['id']} ended {job['state']}:\n{api.job_log_text(job['id'], tail=60)}")
    return job


def run_weekly_dag(settings: Settings, train_body: dict[str, Any] | None, days: int | None) -> dict[str, Any]:
    """Run the weekly DAG once with the demo's training options (``SFMLOPS_DAG_*`` already set win)."""
    from app.stack.airflow import dag_report, dags_test

    options = {"TRAINING_LGBM_ROUNDS": (train_body or {}).get("lgbm_rounds"),
               "TRAINING_MAX_STEPS": (train_body or {}).get("max_steps"), "FORECAST_DAYS": days}
    env = {f"SFMLOPS_DAG_{k}": str(v) for k, v in options.items() if v}
    env.update({k: v for k, v in os.environ.items() if k.startswith("SFMLOPS_DAG_")})
    log_path = settings.state_dir / "demo" / "airflow_weekly.log"
    t0 = time.monotonic()
    with console.status(f"Airflow: {WEEKLY_DAG} (log: {log_path})"):
        code = dags_test(settings, WEEKLY_DAG, log_path, env)
    text = log_path.read_text(errors="replace")
    outcome = {"dag": WEEKLY_DAG, "state": "success" if code == 0 else "failed", "exit_code": code,
               "seconds": round(time.monotonic() - t0, 1), **dag_report(text), "log": str(log_path)}
    colour = "green" if code == 0 else "red"
    console.print(f"[{colour}]{WEEKLY_DAG}: {outcome['state']}[/{colour}] in {outcome['seconds']}s; {outcome['champion'] or ''}")
    if code != 0:
        console.print("\n".join(text.strip().splitlines()[-40:]))
    return outcome


def run(settings: Settings, rossmann_dir: Path | None, terraform: bool = True, train_body: dict[str, Any] | None = None,
        train_timeout_s: float = 3600, days: int | None = None, with_airflow: bool = False) -> dict[str, Any]:
    """Run the whole demo; returns the summary printed at the end."""
    from app import stack
    from app.api.auth import register_key
    from app.data import prepare
    from app.data.load import load_stores_table
    from app.forecasting.batch import forecast
    from app.forecasting.chart import forecast_chart
    from app.ingest import run as ingest
    from app.jobs.package import publish
    from app.produce import produce
    from app.stack.api import ApiServer, UiServer
    from app.stack.terraform import gateway_url

    # Model loads print one progress line per downloaded artifact without this (documented MLflow switch).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    summary: dict[str, Any] = {}
    step("local stack (with monitoring)", lambda: stack.up(settings, on_event=lambda n, r, s: console.print(f"  {n:<9} {r} ({s:.1f}s)"),
                                                           with_monitoring=True))
    register_key(settings, "local", settings.api_key.get_secret_value())
    outputs = step("terraform apply to the emulator (Lambda + API Gateway)", terraform_outputs) if terraform else None
    gw = gateway_url(settings, outputs["api_id"]) if outputs and outputs.get("api_id") else None
    if gw:
        summary["api_gateway_url"] = gw
    tf_code_bucket = ((outputs or {}).get("bucket_names") or {}).get("code")
    summary["job_code"] = step("job code zip for Ray (working_dir on S3)", lambda: publish(settings, [tf_code_bucket]))
    data = step("data", lambda: prepare(settings, rossmann_dir=rossmann_dir))
    load_stores_table(settings)
    summary["data"] = f"{data.source}: {data.rows:,} rows, {data.stores:,} stores"
    summary["produce"] = step("produce: replay the history into Kafka", lambda: produce(settings))
    summary["ingest"] = step("ingest: Spark Structured Streaming -> Postgres", lambda: ingest(settings, trigger="available-now", echo=True))
    step("API (uvicorn, for the UI and scripts)", lambda: ApiServer(settings).start())
    if gw:
        with api_client(settings, gw) as api:
            health = api.health()
        summary["api_gateway_healthz"] = health.get("status")
        console.print(f"API Gateway -> Lambda: GET {gw}/healthz -> {health.get('status')}")
    # Through API Gateway -> Lambda when Terraform applied, else through the local uvicorn API.
    base = gw or settings.api_base_url
    job = step(f"train through the API ({'API Gateway -> Lambda' if gw else 'uvicorn'}) as a Ray job",
               lambda: train_through_api(settings, base, train_body or {"kind": "all"}, train_timeout_s))
    summary["training"] = job.get("result") or job
    summary["forecast"] = step("batch forecast", lambda: forecast(settings, days=days or settings.horizon_days))
    summary["chart"] = str(forecast_chart(settings, 1, settings.state_dir / "demo" / "forecast_store_1.png"))
    summary["where"] = {"api": settings.api_base_url + "/docs", "mlflow": settings.mlflow_uri,
                        "ray_dashboard": settings.ray_jobs_url, "ui": UiServer(settings).address,
                        "prometheus": settings.prometheus_base_url, "health_view": UiServer(settings).address + " (view Health)"}
    step("operator UI (Streamlit)", lambda: UiServer(settings).start())
    if with_airflow:
        summary["airflow_weekly"] = step(f"Airflow: the weekly DAG ({WEEKLY_DAG}) through the API",
                                         lambda: run_weekly_dag(settings, train_body, days))
    console.rule("[b]where to look")
    for key, value in {**summary["where"], "chart": summary["chart"], "API Gateway": gw}.items():
        if value:
            console.print(f"  {key:<14} {value}")
    return json.loads(json.dumps(summary, default=str))
